"""Every setting of the server: one frozen value, read from the environment once, at start-up.

`VARIABLES` lists every environment variable the server reads, with the field it sets and what it means;
docs/app.md shows the same table (a test compares them). Modules below the serving layer read none of
them: they are handed the values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from pneumolens.errors import PneumoLensError
from pneumolens.explain.overlay import BLENDS, COLORMAP, DEFAULT_BLEND
from pneumolens.modeling import ModelSource, model_source_of

# (variable, field, what it sets). Variables that Hugging Face sets on a Space (SPACE_ID, SPACES_ZERO_GPU)
# and the Hub's own (HF_TOKEN, HF_HUB_OFFLINE) are read where they apply, and listed in docs/app.md too.
VARIABLES = (
    ("MODEL_ID", "model_id", "the model served: a Hub id or a local directory (default: the bundled model)"),
    ("MODEL_REVISION", "model_revision", "the model's Hub revision: a branch, tag or commit"),
    ("PNEUMOLENS_DEVICE", "device",
     "the device: cpu, cuda, cuda:1, mps (default: CUDA, MPS, the CPU, the first there)"),
    ("PNEUMOLENS_TRAINING_FILMS", "training_films",
     "where the similar training films' pictures are: a local copy of the data set (with train/) or a Hub data set id"),
    ("PNEUMOLENS_CASES", "cases", "the read-first mode's case set: a folder of class folders, or HUB_ID:SPLIT"),
    ("PNEUMOLENS_COLORMAP", "colormap", "the maps' colormap (default viridis; jet as before)"),
    ("PNEUMOLENS_OVERLAY", "blend", "value: a map's colour fades with its value (default); even: one opacity"),
    ("PNEUMOLENS_PREDICT_BATCH", "predict_batch_size",
     "how many waiting /predict requests share one forward pass (default 8; 1: one by one)"),
    ("PNEUMOLENS_CACHE_MAX_AGE_S", "cache_max_age_s",
     "seconds after which uploads, downloads and other temporary files are deleted (default 900)"),
    ("GRADIO_SERVER_NAME", "server_name", "the address the server listens on (default 127.0.0.1; 0.0.0.0 for all)"),
    ("GRADIO_MCP_SERVER", "mcp_server", "false (or 0, no, off) turns the MCP server off"),
)
FALSE_WORDS = ("false", "0", "no", "off")


@dataclass(frozen=True)
class ServingSettings:
    model_id: str | None = None
    model_revision: str | None = None
    device: str | None = None  # None: the first of CUDA, MPS and the CPU that is there
    training_films: str | None = None  # None: ids and labels only (on a Space, the indexed Hub data set)
    cases: str | None = None  # None: no case set (read-first mode on uploads only)
    # The maps' colormap (docs/explanations.md says why this one); PNEUMOLENS_COLORMAP=jet brings back the old.
    colormap: str = COLORMAP
    # A map's colour fades with its value so that the film shows through; PNEUMOLENS_OVERLAY=even brings
    # back the uniform blend.
    blend: str = DEFAULT_BLEND
    # /predict requests that arrive while the model is busy share its next forward pass, up to this many
    # (PNEUMOLENS_PREDICT_BATCH=1 serves them one by one; benchmarks/load_benchmark.py compares the two).
    predict_batch_size: int = 8
    # Uploads, downloads and other temporary files are deleted this long after they were written: an
    # uploaded DICOM header can carry patient data, and the disk of a Space is small (the soak benchmark
    # sets a short age).
    cache_max_age_s: int = 15 * 60
    server_name: str = "127.0.0.1"
    mcp_server: bool = True
    # Not from the environment: how the maps are drawn and sent.
    display_max_side: int = 1024  # the page's overlays; maps.npz keeps the full resolution
    preview_max_side: int = 640
    # What a program or an AI agent receives: maps this large keep a whole `explain` answer well under the
    # ~1 MiB that common MCP clients accept. JPEG at quality 85: 14 KB a map and 0.2 ms to encode, where WebP
    # took 7 ms for 5 KB (benchmarks/peer_demo.py, docs/performance.md).
    api_map_max_side: int = 384
    api_map_format: str = "jpeg"
    api_map_quality: int = 85

    def __post_init__(self):
        if self.blend not in BLENDS:
            raise PneumoLensError(f"PNEUMOLENS_OVERLAY={self.blend}: use one of {', '.join(BLENDS)}")
        if self.predict_batch_size < 1:
            raise PneumoLensError(f"PNEUMOLENS_PREDICT_BATCH={self.predict_batch_size}: use 1 or more")
        if self.cache_max_age_s < 1:
            raise PneumoLensError(f"PNEUMOLENS_CACHE_MAX_AGE_S={self.cache_max_age_s}: use 1 or more seconds")

    @classmethod
    def from_environment(cls, environ=os.environ) -> "ServingSettings":
        """The settings `environ` gives (an unset or empty variable keeps the default); a value of the wrong
        kind is refused in words that name the variable."""
        types = {field.name: field.type for field in fields(cls)}
        given = {}
        for variable, name, _ in VARIABLES:
            value = environ.get(variable, "").strip()
            if value:
                given[name] = _parsed(variable, value, types[name])
        return cls(**given)

    def model_source(self) -> ModelSource:
        return model_source_of(self.model_id, self.model_revision)

    @property
    def delete_cache(self) -> tuple[int, int]:
        """Gradio's (how often to check, how old a file may get), in seconds: checked every third of the age,
        at least every 5 minutes."""
        return max(1, min(5 * 60, self.cache_max_age_s // 3)), self.cache_max_age_s


def _parsed(variable: str, value: str, kind: str):
    if kind == "int":
        try:
            return int(value)
        except ValueError:
            raise PneumoLensError(f"{variable}={value!r} is not a whole number.") from None
    if kind == "bool":
        return value.lower() not in FALSE_WORDS
    return value
