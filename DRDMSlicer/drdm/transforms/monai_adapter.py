"""MONAI dictionary transform applying a DRDM deformation to images and labels of a sample."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform

from ..models import DRDMModel
from .core import deform_channels_first


class RandDRDMDeformd(RandomizableTransform, MapTransform):
    """Randomly deform ``keys`` (intensity images, linear) and ``label_keys`` (label maps, label values kept)
    with one DRDM deformation per call, computed on the first of ``keys``.

    Tensors are channel-first in MONAI's (nibabel) axis order; spacing is read from ``MetaTensor.pixdim``
    (1 mm when plain tensors are given). Use ``set_random_state`` / ``monai.utils.set_determinism`` for
    reproducible runs.

    Example::

        RandDRDMDeformd(keys="image", label_keys="label", model=load_checkpoint(path), levels=(48, 56), prob=0.8)
    """

    def __init__(self, keys: Sequence[Hashable] | Hashable, model: DRDMModel, label_keys: Sequence[Hashable] = (),
                 levels: Sequence[int] = (48,), prob: float = 1.0, mode: str = "diffeomorphic", speed: str = "fast",
                 label_method: str = "nearest", allow_missing_keys: bool = False) -> None:
        label_keys = [label_keys] if isinstance(label_keys, str) else list(label_keys)
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.label_keys = label_keys
        self.model, self.levels, self.mode, self.speed, self.label_method = model, tuple(levels), mode, speed, label_method
        self._seed, self._level = 0, self.levels[0]

    def randomize(self, data=None) -> None:
        super().randomize(None)
        self._seed = int(self.R.randint(0, 2**31 - 1))
        self._level = int(self.R.choice(self.levels))

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        image_keys = [k for k in self.key_iterator(d)]
        label_keys = [k for k in self.label_keys if k in d]
        if not image_keys:
            return d
        reference = torch.as_tensor(d[image_keys[0]])
        spacing = _spacing(d[image_keys[0]], reference.dim() - 1)
        images, labels, _ = deform_channels_first(
            self.model, reference[:1], spacing, level=self._level, generator=torch.Generator().manual_seed(self._seed),
            images=[torch.as_tensor(d[k]) for k in image_keys], labels=[torch.as_tensor(d[k]) for k in label_keys],
            mode=self.mode, speed=self.speed, label_method=self.label_method)
        for key, value in zip(image_keys + label_keys, images + labels):
            original = d[key]
            d[key] = MetaTensor(value, meta=original.meta) if isinstance(original, MetaTensor) else value
        return d


def _spacing(tensor: torch.Tensor, ndim: int) -> tuple[float, ...]:
    if isinstance(tensor, MetaTensor):
        return tuple(float(s) for s in tensor.pixdim[:ndim])
    return (1.0,) * ndim
