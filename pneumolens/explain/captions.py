"""What each map is called and how to read it: one text for the app, the figures and the docs."""

TITLES = {"rollout": "Attention rollout", "saliency": "Gradient saliency", "gradcam": "Grad-CAM"}
HOW_TO_READ = {
    "rollout": "Where the class token gathered information, through all layers. "
               "Broad, class-agnostic: shows what the transformer looked at.",
    "saliency": "Pixels whose small change would move the score most. "
                "Fine-grained and noisy: look for clusters, not single dots.",
    "gradcam": "Regions of the last feature map that raise the explained class. "
               "Coarse: read it as 'roughly here'.",
}
