"""PneumoLens: explainable pneumonia detection on chest X-rays, shared by the scripts and the app."""

from importlib.metadata import PackageNotFoundError, version

try:  # the one version, pyproject.toml's
    __version__ = version("pneumolens")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
