"""MONAI dictionary transforms: a random DRDM deformation that draws its parameters, and the deterministic one it
applies.

:class:`RandDRDMDeformd` draws (seed, level, model) and applies a :class:`DRDMDeformd` built from them, which
records its parameters in each deformed ``MetaTensor``'s ``applied_operations`` (``extra_info``);
:meth:`DRDMDeformd.from_operation` turns such a record back into the transform, so a sample can be reproduced
exactly.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform, TraceableTransform
from monai.utils import TraceKeys

from ..models import DRDMModel
from ..settings import DEFAULTS
from .core import as_models, check_model, deform_channels_first, model_identity


class DRDMDeformd(MapTransform, TraceableTransform):
    """One DRDM deformation fixed by its parameters, computed on the first of ``keys`` and applied to ``keys``
    (intensity images, linear) and ``label_keys`` (label maps, label values kept). The same parameters and input
    give the same output, bit for bit.

    Tensors are channel-first in MONAI's (nibabel) axis order; spacing is read from ``MetaTensor.pixdim`` (1 mm
    for plain tensors). Each deformed ``MetaTensor`` gets an ``applied_operations`` entry whose ``extra_info``
    holds ``seed``, ``level``, ``mode``, ``speed``, ``label_method``, ``model`` and ``model_sha256``.
    """

    def __init__(self, keys: Sequence[Hashable] | Hashable, model: DRDMModel, seed: int, level: int,
                 label_keys: Sequence[Hashable] | Hashable = (), mode: str = DEFAULTS.mode, speed: str = DEFAULTS.speed,
                 label_method: str = "nearest", allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.label_keys = [label_keys] if isinstance(label_keys, str) else list(label_keys)
        self.model, self.seed, self.level = model, int(seed), int(level)
        self.mode, self.speed, self.label_method = mode, speed, label_method

    def parameters(self) -> dict[str, object]:
        """The record kept in ``applied_operations`` (``extra_info``)."""
        return {"seed": self.seed, "level": self.level, "mode": self.mode, "speed": self.speed,
                "label_method": self.label_method, **model_identity(self.model)}

    @classmethod
    def from_operation(cls, operation: Mapping, keys: Sequence[Hashable] | Hashable, model: DRDMModel,
                       label_keys: Sequence[Hashable] | Hashable = (), allow_missing_keys: bool = False) -> DRDMDeformd:
        """The transform an ``applied_operations`` entry records (``model`` must be the one that made it)."""
        record = dict(operation[TraceKeys.EXTRA_INFO])
        check_model(record, model)
        return cls(keys, model, record["seed"], record["level"], label_keys=label_keys, mode=record["mode"],
                   speed=record["speed"], label_method=record["label_method"], allow_missing_keys=allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        image_keys = list(self.key_iterator(d))
        label_keys = [k for k in self.label_keys if k in d]
        if not image_keys:
            return d
        reference = torch.as_tensor(d[image_keys[0]])
        images, labels, _ = deform_channels_first(
            self.model, reference[:1], _spacing(d[image_keys[0]], reference.dim() - 1), level=self.level,
            generator=torch.Generator().manual_seed(self.seed), images=[torch.as_tensor(d[k]) for k in image_keys],
            labels=[torch.as_tensor(d[k]) for k in label_keys], mode=self.mode, speed=self.speed,
            label_method=self.label_method)
        for key, value in zip(image_keys + label_keys, images + labels):
            original = d[key]
            if isinstance(original, MetaTensor):
                d[key] = MetaTensor(value, meta=original.meta, applied_operations=list(original.applied_operations))
                d = self.push_transform(d, key, extra_info=self.parameters())
            else:
                d[key] = value
        return d


class RandDRDMDeformd(RandomizableTransform, MapTransform):
    """Randomly deform ``keys`` and ``label_keys`` with one DRDM deformation per call: draws a seed, a level from
    ``levels`` and a model from ``model`` (one or several) with the transform's random state, then applies
    :class:`DRDMDeformd` with them (which records them in ``applied_operations``). Use ``set_random_state`` /
    ``monai.utils.set_determinism`` for reproducible runs.

    Example::

        RandDRDMDeformd(keys="image", label_keys="label", model=load_checkpoint(path), levels=(48, 56), prob=0.8)
        replay = DRDMDeformd.from_operation(sample["image"].applied_operations[-1], "image", model, label_keys="label")
    """

    def __init__(self, keys: Sequence[Hashable] | Hashable, model: DRDMModel | Sequence[DRDMModel],
                 label_keys: Sequence[Hashable] | Hashable = (), levels: Sequence[int] = (48,), prob: float = 1.0,
                 mode: str = DEFAULTS.mode, speed: str = DEFAULTS.speed, label_method: str = "nearest",
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.label_keys = [label_keys] if isinstance(label_keys, str) else list(label_keys)
        self.models, self.levels = as_models(model), tuple(levels)
        self.mode, self.speed, self.label_method = mode, speed, label_method
        self._seed, self._level, self._model = 0, self.levels[0], self.models[0]

    def randomize(self, data=None) -> None:
        """Draw whether to deform, then ``(seed, level, model)``."""
        super().randomize(None)
        self._seed = int(self.R.randint(0, 2**31 - 1))
        self._level = int(self.R.choice(self.levels))
        self._model = self.models[int(self.R.randint(len(self.models)))] if len(self.models) > 1 else self.models[0]

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        self.randomize()
        if not self._do_transform:
            return dict(data)
        transform = DRDMDeformd(self.keys, self._model, self._seed, self._level, label_keys=self.label_keys,
                                mode=self.mode, speed=self.speed, label_method=self.label_method,
                                allow_missing_keys=self.allow_missing_keys)
        return transform(data)


def _spacing(tensor: torch.Tensor, ndim: int) -> tuple[float, ...]:
    if isinstance(tensor, MetaTensor):
        return tuple(float(s) for s in tensor.pixdim[:ndim])
    return (1.0,) * ndim
