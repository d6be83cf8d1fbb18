#!/usr/bin/env python
"""Deploy the PneumoLens demo as a Hugging Face Space (Gradio SDK), in one commit.

    python3 deploy_space.py --space_id you/pneumolens                       # with the bundled model
    python3 deploy_space.py --space_id you/pneumolens --model_id you/pneumolens-dinov2-small \\
        --model_revision <commit>                                           # serving a Hub model
    python3 deploy_space.py --space_id you/pneumolens --zero_gpu            # on ZeroGPU hardware

Needs a write token (HF_TOKEN or `hf auth login`). `HF_ENDPOINT` chooses the Hub, as for every client.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import HfArgumentParser

from pneumolens import cli
from pneumolens.hub import resolve_token
from pneumolens.space import ServedModel, deploy_space


@dataclass
class SpaceArguments:
    space_id: str = field(metadata={"help": "The Space to create or update, e.g. your-name/pneumolens."})
    model_id: str | None = field(
        default=None,
        metadata={"help": "Serve this Hub model (set as the Space variable MODEL_ID); default: upload the bundled "
                          "model with the app."},
    )
    model_revision: str | None = field(
        default=None,
        metadata={"help": "Branch, tag or commit of --model_id (default main), resolved to a commit now and set "
                          "as MODEL_REVISION, so the Space keeps serving what you checked."},
    )
    private: bool = field(default=False, metadata={"help": "Create the Space as private."})
    zero_gpu: bool = field(
        default=False,
        metadata={"help": "For a ZeroGPU Space: add the `spaces` package to its requirements (the app then runs "
                          "every model call under spaces.GPU) and suggest ZeroGPU hardware in its card. Choose "
                          "the hardware in the Space's settings."},
    )
    token: str | None = field(default=None, metadata={"help": "Write token; default HF_TOKEN or your login."})


def main(argv: list[str] | None = None) -> None:
    (args,) = HfArgumentParser(SpaceArguments).parse_args_into_dataclasses(args=argv)
    cli.setup_logging()
    url = deploy_space(args.space_id, ServedModel(args.model_id, args.model_revision), resolve_token(args.token),
                       private=args.private, zero_gpu=args.zero_gpu)
    print(url)


if __name__ == "__main__":
    cli.run(main)
