"""MONAI dictionary transforms: a random DRDM deformation that draws its parameters, and the deterministic one it
applies; both are invertible (diffeomorphic mode).

:class:`RandDRDMDeformd` draws (seed, level, model and, given a range, the size in mm) and applies a
:class:`DRDMDeformd` built from them, which records its parameters in each deformed ``MetaTensor``'s
``applied_operations`` (``extra_info``); :meth:`DRDMDeformd.from_operation` turns such a record back into the
transform, so a sample can be reproduced exactly. The record also holds the field that was applied, which is what
:meth:`DRDMDeformd.inverse` (``Compose.inverse``, ``Invertd``) undoes.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform, RandomizableTransform
from monai.utils import TraceKeys

from ..errors import DRDMError
from ..models import DRDMModel
from ..settings import DEFAULTS, DeformationSettings
from .core import (
    INVERSE_LABEL_METHOD,
    apply_field,
    as_models,
    check_model,
    deformation_field,
    inverse_field,
    model_identity,
    not_invertible,
    size_range,
    start_levels,
)


class DRDMDeformd(MapTransform, InvertibleTransform):
    """One DRDM deformation fixed by its parameters, computed on the first of ``keys`` and applied to ``keys``
    (intensity images, linear) and ``label_keys`` (label maps, label values kept). The same parameters and input
    give the same output, bit for bit.

    Tensors are channel-first in MONAI's (nibabel) axis order; spacing is read from ``MetaTensor.pixdim`` (1 mm
    for plain tensors). Each deformed ``MetaTensor`` gets an ``applied_operations`` entry whose ``extra_info``
    holds ``seed``, ``level``, ``magnitude``, ``keep_labels``, ``only_labels``, ``margin``, ``mode``, ``speed``,
    ``label_method``, ``model``, ``model_sha256`` and, in diffeomorphic mode, ``field``: the field applied,
    ``(ndim, *spatial)`` float32 in voxels (channel i along tensor axis i, pull; ndim × the image's voxels of memory,
    on the data's device).

    :meth:`inverse` pops that entry and warps with the field's numerical inverse
    (:func:`drdm.registration.inverse.invert_displacement`): ``keys`` linearly, ``label_keys`` as label maps (one-hot:
    each label's indicator linearly, then arg-max, whatever ``label_method``). The
    field cannot be recomputed at inverse time (the model saw the original image, the data now holds the deformed
    one), so it travels with the data: this works across ``DataLoader`` workers, collation and ``Invertd`` on a
    prediction (``Invertd(keys="pred", transform=pipeline, orig_keys="image")`` warps the prediction linearly, e.g.
    probabilities; ``orig_keys`` a label key: as a label map). Reference mode folds: its inverse raises a one-line
    :class:`drdm.errors.DRDMError`.

    Args:
        magnitude: the size, mean |u| in mm (over where the regions allow motion); None: the model's own size.
        keep_labels: label values (channel 0 of the first of ``label_keys``) of structures not deformed.
        only_labels: label values of the structures that alone deform, with ``margin`` mm around them.
        margin: the smooth transition around kept / only structures, mm (:mod:`drdm.physical.steering`).
    """

    def __init__(self, keys: Sequence[Hashable] | Hashable, model: DRDMModel, seed: int, level: int,
                 label_keys: Sequence[Hashable] | Hashable = (), mode: str = DEFAULTS.mode, speed: str = DEFAULTS.speed,
                 label_method: str = DEFAULTS.label_method, allow_missing_keys: bool = False,
                 magnitude: float | None = DEFAULTS.magnitude,
                 keep_labels: Sequence[int] = (), only_labels: Sequence[int] = (),
                 margin: float = DEFAULTS.margin) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.label_keys = [label_keys] if isinstance(label_keys, str) else list(label_keys)
        self.model, self.seed, self.level = model, int(seed), int(level)
        self.mode, self.speed, self.label_method = mode, speed, label_method
        self.magnitude = None if magnitude is None else float(magnitude)
        self.keep_labels, self.only_labels = tuple(int(v) for v in keep_labels), tuple(int(v) for v in only_labels)
        self.margin = float(margin)

    def deformation_settings(self) -> DeformationSettings:
        """This transform's settings, the one object the physical layer takes."""
        return DeformationSettings(level=self.level, seed=self.seed, mode=self.mode, speed=self.speed,
                                   label_method=self.label_method, magnitude=self.magnitude, keep=self.keep_labels,
                                   only=self.only_labels, margin=self.margin)

    def parameters(self) -> dict[str, object]:
        """The record kept in ``applied_operations`` (``extra_info``), without the field."""
        return {"seed": self.seed, "level": self.level, "magnitude": self.magnitude,
                "keep_labels": list(self.keep_labels), "only_labels": list(self.only_labels), "margin": self.margin,
                "mode": self.mode, "speed": self.speed, "label_method": self.label_method, **model_identity(self.model)}

    @classmethod
    def from_operation(cls, operation: Mapping, keys: Sequence[Hashable] | Hashable, model: DRDMModel,
                       label_keys: Sequence[Hashable] | Hashable = (), allow_missing_keys: bool = False) -> DRDMDeformd:
        """The transform an ``applied_operations`` entry records (``model`` must be the one that made it)."""
        record = dict(operation[TraceKeys.EXTRA_INFO])
        check_model(record, model)
        return cls(keys, model, record["seed"], record["level"], label_keys=label_keys, mode=record["mode"],
                   speed=record["speed"], label_method=record["label_method"], allow_missing_keys=allow_missing_keys,
                   magnitude=record.get("magnitude"), keep_labels=record.get("keep_labels", ()),
                   only_labels=record.get("only_labels", ()), margin=record.get("margin", DEFAULTS.margin))

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        image_keys = list(self.key_iterator(d))
        label_keys = [k for k in self.label_keys if k in d]
        if not image_keys:
            return d
        reference = _plain(d[image_keys[0]])
        field = deformation_field(
            self.model, reference[:1], _spacing(d[image_keys[0]], reference.dim() - 1), self.deformation_settings(),
            generator=torch.Generator().manual_seed(self.seed),
            region_labels=_plain(d[label_keys[0]]) if label_keys else None)
        images, labels = apply_field(field, [_plain(d[k]) for k in image_keys], [_plain(d[k]) for k in label_keys],
                                     self.label_method)
        record = self.parameters()
        if self.mode == "diffeomorphic":
            record["field"] = field
        for key, value in zip(image_keys + label_keys, images + labels):
            original = d[key]
            if isinstance(original, MetaTensor):
                d[key] = MetaTensor(value, meta=original.meta, applied_operations=list(original.applied_operations))
                d = self.push_transform(d, key, extra_info=dict(record))
            else:
                d[key] = value
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        """Undo the most recent application of this transform to each of ``keys`` and ``label_keys`` present in
        ``data`` (``MetaTensor`` values, whose ``applied_operations`` end with its entry)."""
        d = dict(data)
        inverses: dict[int, torch.Tensor] = {}
        for key in [k for k in self.keys if k in d] + [k for k in self.label_keys if k in d]:
            self._invert(d, key, inverses)
        return d

    def _invert(self, d: dict, key: Hashable, inverses: dict[int, torch.Tensor]) -> None:
        value = d[key]
        if not isinstance(value, MetaTensor) or not value.applied_operations:
            raise DRDMError(f"cannot invert {key!r}: the inverse needs a MetaTensor whose applied_operations record "
                            "the deformation")
        record = self.get_most_recent_transform(d, key)[TraceKeys.EXTRA_INFO]
        if record.get("mode") != "diffeomorphic" or "field" not in record:
            raise not_invertible(type(self).__name__)
        # pop from a copy of the record: the caller's MetaTensor keeps its applied_operations
        value = MetaTensor(value.as_tensor(), meta=value.meta, applied_operations=list(value.applied_operations))
        d[key] = value
        self.pop_transform(d, key)
        field = record["field"]
        if id(field) not in inverses:  # one inverse for all keys that share the field
            inverses[id(field)] = inverse_field(torch.as_tensor(field))
        inverse = inverses[id(field)]
        tensor = value.as_tensor()
        if key in self.label_keys:
            moved = apply_field(inverse, labels=[tensor], label_method=INVERSE_LABEL_METHOD)[1][0]
        else:
            moved = apply_field(inverse, images=[tensor])[0][0]
        d[key] = MetaTensor(moved, meta=value.meta, applied_operations=value.applied_operations)


class RandDRDMDeformd(RandomizableTransform, MapTransform, InvertibleTransform):
    """Randomly deform ``keys`` and ``label_keys`` with one DRDM deformation per call: draws a seed, a level from
    ``levels``, a model from ``model`` (one or several) and, given ``magnitudes``, a size uniformly in that range,
    with the transform's random state, then applies :class:`DRDMDeformd` with them (which records them, the drawn
    size included, and the field in ``applied_operations``). Use ``set_random_state`` /
    ``monai.utils.set_determinism`` for reproducible runs. A call that does not deform (``prob``) records a
    ``RandDRDMDeformd`` entry with ``do_transforms`` False, as MONAI's random transforms do, so :meth:`inverse`
    (``Compose.inverse``, ``Invertd``) knows what to undo.

    Args:
        magnitudes: the size in mm to draw from, ``(low, high)`` (or one number: always that size); None: the
            model's own size. A size must lie within what the model reaches on the image (0.5 mm up to 1.5 × its
            own size, :mod:`drdm.physical.steering`), else the call raises a one-line error naming that size.
        keep_labels, only_labels, margin: regions, as in :class:`DRDMDeformd`.

    Example::

        RandDRDMDeformd(keys="image", label_keys="label", model=load_checkpoint(path), levels=(48, 56), prob=0.8,
                        magnitudes=(2.0, 6.0))
        replay = DRDMDeformd.from_operation(sample["image"].applied_operations[-1], "image", model, label_keys="label")
        back = pipeline.inverse(sample)  # pipeline: the Compose that holds the transform
    """

    def __init__(self, keys: Sequence[Hashable] | Hashable, model: DRDMModel | Sequence[DRDMModel],
                 label_keys: Sequence[Hashable] | Hashable = (), levels: Sequence[int] | None = None, prob: float = 1.0,
                 mode: str = DEFAULTS.mode, speed: str = DEFAULTS.speed, label_method: str = DEFAULTS.label_method,
                 allow_missing_keys: bool = False, magnitudes: float | Sequence[float] | None = None,
                 keep_labels: Sequence[int] = (), only_labels: Sequence[int] = (),
                 margin: float = DEFAULTS.margin) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.label_keys = [label_keys] if isinstance(label_keys, str) else list(label_keys)
        self.models = as_models(model)
        self.levels = start_levels(levels, self.models)
        self.mode, self.speed, self.label_method = mode, speed, label_method
        self.magnitudes = size_range(magnitudes)
        self._seed, self._level, self._model, self._magnitude = 0, self.levels[0], self.models[0], None
        # one deterministic transform for every call: the entries it pushes carry its id, which its inverse checks
        self.deformer = DRDMDeformd(self.keys, self.models[0], 0, self.levels[0], label_keys=self.label_keys,
                                    mode=mode, speed=speed, label_method=label_method,
                                    allow_missing_keys=allow_missing_keys, keep_labels=keep_labels,
                                    only_labels=only_labels, margin=margin)

    def randomize(self, data=None) -> None:
        """Draw whether to deform, then ``(seed, level, model)`` and, given ``magnitudes``, the size (without it the
        draws are those of earlier versions)."""
        super().randomize(None)
        self._seed = int(self.R.randint(0, 2**31 - 1))
        self._level = int(self.R.choice(self.levels))
        self._model = self.models[int(self.R.randint(len(self.models)))] if len(self.models) > 1 else self.models[0]
        self._magnitude = None if self.magnitudes is None else float(self.R.uniform(*self.magnitudes))

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        self.randomize()
        d = dict(data)
        if not self._do_transform:
            for key in self._present(d):
                value = d[key]
                if isinstance(value, MetaTensor):  # a fresh MetaTensor (same storage): the input's record stays as is
                    d[key] = MetaTensor(value.as_tensor(), meta=value.meta,
                                        applied_operations=list(value.applied_operations))
                    d = self.push_transform(d, key)
            return d
        deformer = self.deformer
        deformer.model, deformer.seed, deformer.level, deformer.magnitude = (self._model, self._seed, self._level,
                                                                             self._magnitude)
        deformer.allow_missing_keys = self.allow_missing_keys
        return deformer(d)

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        """Undo this transform's most recent call on each of ``keys`` and ``label_keys`` present in ``data``."""
        d = dict(data)
        inverses: dict[int, torch.Tensor] = {}
        for key in self._present(d):
            value = d[key]
            operations = value.applied_operations if isinstance(value, MetaTensor) else []
            names = (type(self).__name__, type(self.deformer).__name__)
            latest = next((op[TraceKeys.CLASS_NAME] for op in reversed(operations)
                           if op.get(TraceKeys.CLASS_NAME) in names), None)
            if latest == names[0]:  # this call did not deform: pop its entry from a copy of the record
                d[key] = MetaTensor(value.as_tensor(), meta=value.meta, applied_operations=list(operations))
                self.pop_transform(d, key)
            else:
                self.deformer._invert(d, key, inverses)
        return d

    def _present(self, d: Mapping) -> list[Hashable]:
        return [k for k in self.keys if k in d] + [k for k in self.label_keys if k in d]


def _plain(value: torch.Tensor) -> torch.Tensor:
    return value.as_tensor() if isinstance(value, MetaTensor) else torch.as_tensor(value)


def _spacing(tensor: torch.Tensor, ndim: int) -> tuple[float, ...]:
    if isinstance(tensor, MetaTensor):
        return tuple(float(s) for s in tensor.pixdim[:ndim])
    return (1.0,) * ndim
