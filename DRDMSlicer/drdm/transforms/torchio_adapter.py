"""TorchIO transforms: a random DRDM deformation that draws its parameters, and the deterministic one it applies.

As with TorchIO's own random transforms, :class:`RandomDRDMDeformation` draws the parameters (seed, level, model and,
given a range, the size in mm) and applies a :class:`DRDMDeformation` built from them; TorchIO records that
deterministic transform and its arguments in the subject's history, so ``subject.get_composed_history()`` (or
``DRDMDeformation(**arguments)`` from ``subject.applied_transforms``) reproduces the sample exactly, and
``subject.apply_inverse_transform()`` undoes it (diffeomorphic mode).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchio as tio

from ..errors import DRDMError
from ..models import DRDMModel
from ..settings import DEFAULTS, DeformationSettings
from .core import (
    INVERSE_LABEL_METHOD,
    apply_field,
    as_models,
    deformation_field,
    inverse_field,
    not_invertible,
    size_range,
    start_levels,
)


class DRDMDeformation(tio.SpatialTransform):
    """One DRDM deformation fixed by its parameters, computed on the subject's first ``ScalarImage`` and applied to
    all its images (``ScalarImage``: linear; ``LabelMap``: label values kept). The same parameters and input give
    the same output, bit for bit.

    The subject's history records the arguments and ``field``, the field the call applied (``(ndim, W, H, D)``
    float32, voxels, channel i along tensor axis i, pull; it costs ndim × the image's voxels in memory). Replaying
    the history applies that field again (no model run); :meth:`inverse` (what ``subject.apply_inverse_transform()``
    and ``Compose.inverse`` call) warps with its numerical inverse
    (:func:`drdm.registration.inverse.invert_displacement`), so images (linear) and label maps (one-hot: each label's
    indicator linearly, then arg-max, whatever ``label_method``) come back on their grid. The
    field cannot be recomputed at inverse time: the model saw the original image, the subject now holds the
    deformed one. Only mode ``"diffeomorphic"`` is invertible (:meth:`is_invertible`): reference-mode fields fold.

    Args:
        model: the recovery model.
        seed: seed of the deformation's ``torch.Generator``.
        level: start noise level T'.
        mode, speed, label_method: as in :func:`drdm.transforms.deform_channels_first`.
        magnitude: the size, mean |u| in mm (over where the regions allow motion); None: the model's own size.
        keep_labels: label values (in the subject's first ``LabelMap``, channel 0) of structures not deformed.
        only_labels: label values of the structures that alone deform, with ``margin`` mm around them.
        margin: the smooth transition around kept / only structures, mm (:mod:`drdm.physical.steering`).
        field: the field to apply as it is instead of computing one (the history records it); None: compute it.
        invert_transform: apply the inverse of ``field`` (set by :meth:`inverse`).
    """

    def __init__(self, model: DRDMModel, seed: int, level: int, mode: str = DEFAULTS.mode, speed: str = DEFAULTS.speed,
                 label_method: str = DEFAULTS.label_method, magnitude: float | None = DEFAULTS.magnitude,
                 keep_labels: Sequence[int] = (),
                 only_labels: Sequence[int] = (), margin: float = DEFAULTS.margin, field: torch.Tensor | None = None,
                 invert_transform: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model, self.seed, self.level = model, int(seed), int(level)
        self.mode, self.speed, self.label_method = mode, speed, label_method
        self.magnitude = None if magnitude is None else float(magnitude)
        self.keep_labels, self.only_labels = tuple(int(v) for v in keep_labels), tuple(int(v) for v in only_labels)
        self.margin, self.field, self.invert_transform = float(margin), field, bool(invert_transform)
        self.args_names = ["model", "seed", "level", "mode", "speed", "label_method", "magnitude", "keep_labels",
                           "only_labels", "margin", "field", "invert_transform"]  # TorchIO records these
        self._applied: torch.Tensor | None = None  # the field of the last call, for the history

    def deformation_settings(self) -> DeformationSettings:
        """This transform's settings, the one object the physical layer takes."""
        return DeformationSettings(level=self.level, seed=self.seed, mode=self.mode, speed=self.speed,
                                   label_method=self.label_method, magnitude=self.magnitude, keep=self.keep_labels,
                                   only=self.only_labels, margin=self.margin)

    def is_invertible(self) -> bool:
        """True in diffeomorphic mode (the field has an inverse); reference-mode fields fold."""
        return self.mode == "diffeomorphic"

    def inverse(self) -> DRDMDeformation:
        """The transform that undoes this one: the same recorded ``field``, warped with its inverse."""
        if not self.is_invertible():
            raise not_invertible("DRDMDeformation")
        if self.field is None:
            raise DRDMError("DRDMDeformation.inverse needs the field it applied: invert through the deformed subject's "
                            "history (subject.apply_inverse_transform()), which records it")
        arguments = dict(self._get_named_arguments(), invert_transform=not self.invert_transform)
        return DRDMDeformation(**arguments, **self._get_base_args())

    def _get_reproducing_arguments(self) -> dict[str, object]:
        arguments = super()._get_reproducing_arguments()
        if self._applied is not None:
            arguments["field"] = self._applied
        return arguments

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        images = self.get_images(subject)
        scalars = [image for image in images if isinstance(image, tio.ScalarImage)]
        labels = [image for image in images if isinstance(image, tio.LabelMap)]
        if self.invert_transform:
            if self.field is None:
                raise DRDMError("an inverted DRDMDeformation needs the field to undo (field=)")
            field = inverse_field(self.field)
        elif self.field is not None:
            field = self.field
        elif not scalars:
            return subject
        else:
            field = deformation_field(
                self.model, scalars[0].data[:1], scalars[0].spacing, self.deformation_settings(),
                generator=torch.Generator().manual_seed(self.seed), region_labels=labels[0].data if labels else None)
        self._applied = self.field if self.field is not None else field
        label_method = INVERSE_LABEL_METHOD if self.invert_transform else self.label_method
        moved_images, moved_labels = apply_field(field, [image.data for image in scalars],
                                                 [image.data for image in labels], label_method)
        for image, data in zip(scalars + labels, moved_images + moved_labels):
            image.set_data(data)
        return subject

    def __repr__(self) -> str:
        sha = f", sha256 {self.model.sha256[:12]}" if self.model.sha256 else ""
        size = "" if self.magnitude is None else f", magnitude={self.magnitude:g}"
        regions = "".join(f", {name}={value}" for name, value in (("keep_labels", self.keep_labels),
                                                                   ("only_labels", self.only_labels)) if value)
        regions += f", margin={self.margin:g}" if regions else ""
        invert = ", invert=True" if self.invert_transform else ""
        return (f"{self.name}(model={self.model.name!r}{sha}, seed={self.seed}, level={self.level}{size}{regions}, "
                f"mode={self.mode!r}, speed={self.speed!r}, label_method={self.label_method!r}{invert})")


class RandomDRDMDeformation(tio.transforms.augmentation.RandomTransform, tio.SpatialTransform):
    """A random DRDM deformation per subject: draws a seed, a level from ``levels``, a model from ``model`` (one or
    several) and, given ``magnitudes``, a size uniformly in that range, with ``torch``'s global generator, as
    TorchIO's own random transforms do (``torch.manual_seed`` makes runs repeatable), then applies
    :class:`DRDMDeformation` with them (which the history records, with the drawn size).

    Args:
        magnitudes: the size in mm to draw from, ``(low, high)`` (or one number: always that size); None: the
            model's own size. A size must lie within what the model reaches on the image (0.5 mm up to 1.5 × its
            own size, :mod:`drdm.physical.steering`), else the call raises a one-line error naming that size.
        keep_labels, only_labels, margin: regions, as in :class:`DRDMDeformation`.

    Example::

        tio.Compose([tio.RandomFlip(), RandomDRDMDeformation(model, levels=(48, 56), magnitudes=(2.0, 6.0))])
        replayed = sample.get_composed_history()(subject)  # the same sample, bit for bit
        back = sample.apply_inverse_transform()            # undone (diffeomorphic mode)
    """

    def __init__(self, model: DRDMModel | Sequence[DRDMModel], levels: Sequence[int] | None = None,
                 mode: str = DEFAULTS.mode, speed: str = DEFAULTS.speed, label_method: str = DEFAULTS.label_method,
                 magnitudes: float | Sequence[float] | None = None, keep_labels: Sequence[int] = (),
                 only_labels: Sequence[int] = (), margin: float = DEFAULTS.margin, **kwargs) -> None:
        super().__init__(**kwargs)
        self.models = as_models(model)
        self.levels = start_levels(levels, self.models)
        self.mode, self.speed, self.label_method = mode, speed, label_method
        self.magnitudes = size_range(magnitudes)
        self.keep_labels, self.only_labels, self.margin = tuple(keep_labels), tuple(only_labels), float(margin)

    def get_params(self) -> tuple[int, int, DRDMModel, float | None]:
        """Draw ``(seed, level, model, magnitude)`` (the size only when ``magnitudes`` is set: without it the draws
        are those of earlier versions)."""
        seed = int(torch.randint(0, 2**31 - 1, (1,)))
        level = self.levels[int(torch.randint(0, len(self.levels), (1,)))]
        model = self.models[int(torch.randint(0, len(self.models), (1,)))] if len(self.models) > 1 else self.models[0]
        magnitude = None
        if self.magnitudes is not None:
            low, high = self.magnitudes
            magnitude = low + (high - low) * float(torch.rand(1, dtype=torch.float64))
        return seed, level, model, magnitude

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        seed, level, model, magnitude = self.get_params()
        transform = DRDMDeformation(model, seed, level, mode=self.mode, speed=self.speed, label_method=self.label_method,
                                    magnitude=magnitude, keep_labels=self.keep_labels, only_labels=self.only_labels,
                                    margin=self.margin, **self._get_base_args())
        return transform(subject)
