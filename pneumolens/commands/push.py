"""Publish a saved model folder to the Hub in one commit (`pneumolens.hub`) and print the commit to pin:
`from_pretrained(NAME, revision=COMMIT)`, `MODEL_REVISION=COMMIT python3 app.py`."""

from __future__ import annotations

from ..hub import push_model_dir, resolve_token


def add_arguments(parser) -> None:
    parser.add_argument("model_dir", help="The folder train_hf.py wrote (or models/pneumolens-dinov2-small).")
    parser.add_argument("--repo_id", required=True, help="The model repository, e.g. your-name/pneumolens-dinov2-small.")
    parser.add_argument("--private", action="store_true", help="Create the repository private (if it is new).")
    # Not --revision, which everywhere else names the model revision to read.
    parser.add_argument("--branch", help="The branch to commit to (made from main if new); default main.")
    parser.add_argument("--token", help="A write token; default HF_TOKEN, else the saved `hf auth login`.")


def run(args) -> None:
    commit = push_model_dir(args.model_dir, args.repo_id, resolve_token(args.token),
                            private=args.private or None, revision=args.branch)
    print(f"Pushed {args.model_dir} to {args.repo_id}: {commit.commit_url}")
    print(f'Pin this commit: revision="{commit.oid}"')
