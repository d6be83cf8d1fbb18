"""How the server draws and sends what it answers: one frozen value, read from the environment once."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pneumolens import presentation
from pneumolens.errors import PneumoLensError
from pneumolens.explain.overlay import BLENDS, DEFAULT_BLEND


@dataclass(frozen=True)
class ServingSettings:
    # The maps' colormap (docs/explanations.md says why this one); PNEUMOLENS_COLORMAP=jet brings back the old.
    colormap: str = presentation.COLORMAP
    # A map's colour fades with its value so that the film shows through; PNEUMOLENS_OVERLAY=even brings
    # back the uniform blend.
    blend: str = DEFAULT_BLEND
    display_max_side: int = 1024  # the page's overlays; maps.npz keeps the full resolution
    preview_max_side: int = 640
    # What a program or an AI agent receives: maps this large keep a whole `explain` answer well under the
    # ~1 MiB that common MCP clients accept. JPEG at quality 85: 14 KB a map and 0.2 ms to encode, where WebP
    # took 7 ms for 5 KB (benchmarks/peer_demo.py, docs/performance.md).
    api_map_max_side: int = 384
    api_map_format: str = "jpeg"
    api_map_quality: int = 85
    # /predict requests that arrive while the model is busy share its next forward pass, up to this many
    # (PNEUMOLENS_PREDICT_BATCH=1 serves them one by one; benchmarks/load_benchmark.py compares the two).
    predict_batch_size: int = 8

    def __post_init__(self):
        if self.blend not in BLENDS:
            raise PneumoLensError(f"PNEUMOLENS_OVERLAY={self.blend}: use one of {', '.join(BLENDS)}")
        if self.predict_batch_size < 1:
            raise PneumoLensError(f"PNEUMOLENS_PREDICT_BATCH={self.predict_batch_size}: use 1 or more")

    @classmethod
    def from_environment(cls, environ=os.environ) -> "ServingSettings":
        return cls(colormap=environ.get("PNEUMOLENS_COLORMAP", cls.colormap),
                   blend=environ.get("PNEUMOLENS_OVERLAY", cls.blend),
                   predict_batch_size=int(environ.get("PNEUMOLENS_PREDICT_BATCH", cls.predict_batch_size)))
