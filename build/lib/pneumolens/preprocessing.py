"""Model inputs, resolved from the model's saved image processor: one path for every entry point.

Training adds augmentation in front of it; evaluation, explanation and serving use it as is. So a
model behaves the same whichever of them feeds it.
"""

from __future__ import annotations

import torch
from PIL import Image

from .images import load_image, undecoded_source


def square_resize(processor):
    """Make a resize-then-centre-crop processor resize straight to its crop size instead.

    The Kermany images were stretched to squares, and a centre crop cuts off the lung apices and the
    costophrenic angles, where consolidation and effusion show; stretching a new image to the same
    square shows the model what it was trained on. Processors without a centre crop are kept.
    """
    if getattr(processor, "do_center_crop", False) and getattr(processor, "crop_size", None):
        crop = dict(processor.crop_size)
        processor.size = {"height": crop["height"], "width": crop["width"]}
        processor.do_center_crop = False
    return processor


def input_size(processor) -> tuple[int, int]:
    """(height, width) of the tensors the processor produces, read from a probe image."""
    probe = Image.new("RGB", (97, 61))
    return tuple(pixel_values(processor, [probe]).shape[-2:])


def pixel_values(processor, images) -> torch.Tensor:
    """A float batch (N, 3, H, W) from images in any form `load_image` accepts."""
    rgb = [load_image(image) for image in images]
    return processor(images=rgb, return_tensors="pt")["pixel_values"]


def radiograph_augmentation(rng=None, **probabilities):
    """Label-preserving variations of a chest radiograph (PIL in, PIL out): framing, burned-in text,
    exposure and detector changes drawn at random (see `augmentation.ShortcutAugmentation`).

    No horizontal flip: it would put the heart on the right (dextrocardia), a real finding, and teach
    the model that anatomy is symmetric when it is not. No hue or saturation: radiographs are grey.
    """
    from .augmentation import ShortcutAugmentation

    return ShortcutAugmentation(rng=rng, **probabilities)


def processed_batch(processor, images: list, labels) -> dict:
    """Decoded images and labels -> the model's `pixel_values` and `labels` tensors."""
    return {
        "pixel_values": processor(images=images, return_tensors="pt")["pixel_values"],
        "labels": torch.as_tensor(labels),
    }


# The batch key of the second view of each training image (for `training.consistency_loss`).
PAIRED_KEY = "paired_pixel_values"


def batch_transform(processor, augmentation=None, paired: bool = False):
    """A `Dataset.with_transform` function: undecoded images and labels -> pixel_values and labels.

    `paired`: also a second, independently augmented view of each image under `PAIRED_KEY`, for the
    consistency loss; each image is decoded once for both views.
    """

    def transform(batch: dict) -> dict:
        images = [load_image(undecoded_source(image)) for image in batch["image"]]
        views = images * 2 if paired else images
        if augmentation is not None:
            views = [augmentation(image) for image in views]
        processed = processed_batch(processor, views, batch["label"])
        if paired:
            processed["pixel_values"], processed[PAIRED_KEY] = processed["pixel_values"].chunk(2)
        return processed

    return transform
