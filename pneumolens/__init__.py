"""PneumoLens: explainable pneumonia detection on chest X-rays, shared by the scripts and the app."""

__version__ = "0.1.0"
