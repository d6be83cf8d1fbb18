"""Explanations of a prediction, one method per file, all in one registry (`method.REGISTRY`).

`Explainer.explain` gives probabilities and every method's map from one forward and one backward
pass; `Explainer.explain_separately` computes them the plain way and is the reference it is tested
against. The imports below register the methods, in the order the app shows them; a new method is a
new file with a `@register`ed `ExplanationMethod` and its line here.
"""

from . import rollout, attribution, saliency, gradcam  # noqa: F401  (registers the methods, in this order)
from .layout import layout_of
from .explainer import Explainer, Explanation
from .options import ExplanationOptions
from .method import REGISTRY, ExplanationMethod, MethodUnavailable, method
from .overlay import overlay

METHODS = tuple(REGISTRY)
TITLES = {name: m.title for name, m in REGISTRY.items()}
HOW_TO_READ = {name: m.how_to_read for name, m in REGISTRY.items()}

__all__ = ["HOW_TO_READ", "METHODS", "REGISTRY", "TITLES", "Explainer", "Explanation", "ExplanationMethod",
           "ExplanationOptions", "MethodUnavailable", "layout_of", "method", "overlay"]
