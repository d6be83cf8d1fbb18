"""Explanations of a prediction: attention rollout, gradient saliency and Grad-CAM.

`Explainer.explain` gives probabilities and all three maps from one forward and one backward pass;
`Explainer.explain_separately` computes them the plain way and is the reference it is tested against.
"""

from .anatomy import METHODS, MethodUnavailable, anatomy_of
from .explainer import Explainer, Explanation, ExplanationOptions
from .overlay import overlay

__all__ = ["METHODS", "Explainer", "Explanation", "ExplanationOptions", "MethodUnavailable", "anatomy_of", "overlay"]
