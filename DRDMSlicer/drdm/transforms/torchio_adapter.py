"""TorchIO transforms: a random DRDM deformation that draws its parameters, and the deterministic one it applies.

As with TorchIO's own random transforms, :class:`RandomDRDMDeformation` draws the parameters (seed, level, model)
and applies a :class:`DRDMDeformation` built from them; TorchIO records that deterministic transform and its
arguments in the subject's history, so ``subject.get_composed_history()`` (or ``DRDMDeformation(**arguments)``
from ``subject.applied_transforms``) reproduces the sample exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchio as tio

from ..models import DRDMModel
from ..settings import DEFAULTS
from .core import as_models, deform_channels_first


class DRDMDeformation(tio.SpatialTransform):
    """One DRDM deformation fixed by its parameters, computed on the subject's first ``ScalarImage`` and applied to
    all its images (``ScalarImage``: linear; ``LabelMap``: label values kept). The same parameters and input give
    the same output, bit for bit.

    Args:
        model: the recovery model.
        seed: seed of the deformation's ``torch.Generator``.
        level: start noise level T'.
        mode, speed, label_method: as in :func:`drdm.transforms.deform_channels_first`.
    """

    def __init__(self, model: DRDMModel, seed: int, level: int, mode: str = DEFAULTS.mode, speed: str = DEFAULTS.speed,
                 label_method: str = "nearest", **kwargs) -> None:
        super().__init__(**kwargs)
        self.model, self.seed, self.level = model, int(seed), int(level)
        self.mode, self.speed, self.label_method = mode, speed, label_method
        self.args_names = ["model", "seed", "level", "mode", "speed", "label_method"]  # TorchIO records these

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        images = list(subject.get_images_dict(intensity_only=False).items())
        scalars = [image for _, image in images if isinstance(image, tio.ScalarImage)]
        if not scalars:
            return subject
        labels = [image for _, image in images if isinstance(image, tio.LabelMap)]
        moved_images, moved_labels, _ = deform_channels_first(
            self.model, scalars[0].data[:1], scalars[0].spacing, level=self.level,
            generator=torch.Generator().manual_seed(self.seed), images=[image.data for image in scalars],
            labels=[image.data for image in labels], mode=self.mode, speed=self.speed, label_method=self.label_method)
        for image, data in zip(scalars + labels, moved_images + moved_labels):
            image.set_data(data)
        return subject

    def __repr__(self) -> str:
        sha = f", sha256 {self.model.sha256[:12]}" if self.model.sha256 else ""
        return (f"{self.name}(model={self.model.name!r}{sha}, seed={self.seed}, level={self.level}, mode={self.mode!r}, "
                f"speed={self.speed!r}, label_method={self.label_method!r})")


class RandomDRDMDeformation(tio.transforms.augmentation.RandomTransform, tio.SpatialTransform):
    """A random DRDM deformation per subject: draws a seed, a level from ``levels`` and a model from ``model`` (one
    or several) with ``torch``'s global generator, as TorchIO's own random transforms do (``torch.manual_seed``
    makes runs repeatable), then applies :class:`DRDMDeformation` with them.

    Example::

        tio.Compose([tio.RandomFlip(), RandomDRDMDeformation(model, levels=(48, 56))])
        replayed = sample.get_composed_history()(subject)  # the same sample, bit for bit
    """

    def __init__(self, model: DRDMModel | Sequence[DRDMModel], levels: Sequence[int] = (48,), mode: str = "diffeomorphic",
                 speed: str = DEFAULTS.speed, label_method: str = "nearest", **kwargs) -> None:
        super().__init__(**kwargs)
        self.models, self.levels = as_models(model), tuple(levels)
        self.mode, self.speed, self.label_method = mode, speed, label_method

    def get_params(self) -> tuple[int, int, DRDMModel]:
        """Draw ``(seed, level, model)``."""
        seed = int(torch.randint(0, 2**31 - 1, (1,)))
        level = self.levels[int(torch.randint(0, len(self.levels), (1,)))]
        model = self.models[int(torch.randint(0, len(self.models), (1,)))] if len(self.models) > 1 else self.models[0]
        return seed, level, model

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        seed, level, model = self.get_params()
        transform = DRDMDeformation(model, seed, level, mode=self.mode, speed=self.speed, label_method=self.label_method,
                                    **self._get_base_args())
        return transform(subject)
