"""TorchIO transform applying a DRDM deformation to every image of a subject."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchio as tio

from ..models import DRDMModel
from .core import deform_channels_first


class RandomDRDMDeformation(tio.transforms.augmentation.RandomTransform, tio.SpatialTransform):
    """One DRDM deformation per subject, computed on its first ``ScalarImage`` and applied to all its images
    (``ScalarImage``: linear; ``LabelMap``: label values kept). Randomness comes from ``torch``'s global
    generator, as for TorchIO's own random transforms (``torch.manual_seed`` makes runs repeatable).

    Example::

        tio.Compose([tio.RandomFlip(), RandomDRDMDeformation(model, levels=(48, 56))])
    """

    def __init__(self, model: DRDMModel, levels: Sequence[int] = (48,), mode: str = "diffeomorphic",
                 speed: str = "fast", label_method: str = "nearest", **kwargs) -> None:
        super().__init__(**kwargs)
        self.model, self.levels, self.mode, self.speed, self.label_method = model, tuple(levels), mode, speed, label_method

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        images = list(subject.get_images_dict(intensity_only=False).items())
        scalars = [(name, image) for name, image in images if isinstance(image, tio.ScalarImage)]
        if not scalars:
            return subject
        seed = int(torch.randint(0, 2**31 - 1, (1,)))
        level = self.levels[int(torch.randint(0, len(self.levels), (1,)))]
        reference = scalars[0][1]
        labels = [(name, image) for name, image in images if isinstance(image, tio.LabelMap)]
        moved_images, moved_labels, _ = deform_channels_first(
            self.model, reference.data[:1], reference.spacing, level=level, generator=torch.Generator().manual_seed(seed),
            images=[image.data for _, image in scalars], labels=[image.data for _, image in labels],
            mode=self.mode, speed=self.speed, label_method=self.label_method)
        for (_, image), data in zip(scalars + labels, moved_images + moved_labels):
            image.set_data(data)
        return subject
