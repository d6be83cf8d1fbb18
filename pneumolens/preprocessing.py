"""Model inputs, resolved from the model's saved image processor: one path for every entry point.

Training adds augmentation in front of it; evaluation, explanation and serving use it as is. So a
model behaves the same whichever of them feeds it.
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms import v2

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


def radiograph_augmentation() -> v2.Compose:
    """Label-preserving variations of a chest radiograph (PIL in, PIL out)."""
    return v2.Compose([
        # Patient position and detector placement vary by a few degrees and a few percent of the
        # field; larger rotations or zooms produce films no department would accept.
        v2.RandomAffine(degrees=7, translate=(0.05, 0.05), scale=(0.92, 1.08)),
        # Exposure and post-processing differ between machines: mild brightness/contrast changes.
        # No hue/saturation: radiographs are grayscale.
        v2.ColorJitter(brightness=0.15, contrast=0.15),
        # No horizontal flip: it would put the heart on the right (dextrocardia), a real finding,
        # and teach the model that anatomy is symmetric when it is not.
    ])


def batch_transform(processor, augmentation=None):
    """A `Dataset.with_transform` function: undecoded images and labels -> pixel_values and labels."""

    def transform(batch: dict) -> dict:
        images = [load_image(undecoded_source(image)) for image in batch["image"]]
        if augmentation is not None:
            images = [augmentation(image) for image in images]
        return {
            "pixel_values": processor(images=images, return_tensors="pt")["pixel_values"],
            "labels": torch.as_tensor(batch["label"]),
        }

    return transform
