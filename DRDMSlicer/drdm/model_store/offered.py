"""What the front ends offer (the Slicer module, the web app, ``drdm models list``): :func:`offered_models`.

A model whose measured recovery error is 1 or more recovers nothing and is not offered as a DRDM model; the
random-field-only choices are offered as what they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models import RANDOM_FIELD_MODELS, CheckpointError, random_field_model
from .download import cache_folder, cached_path, verify
from .files import read_metadata, recovery_error_summary
from .registry import BUNDLED_MODELS, DEFAULT_BUNDLED_MODEL, REGISTRY, bundled_model_path

MAX_OFFERED_RECOVERY_ERROR = 1.0  # a model that recovers no better than nothing is not offered as a DRDM model


@dataclass(frozen=True)
class OfferedModel:
    """One choice the front ends offer (:func:`offered_models`).

    Attributes:
        name: what :func:`drdm.model_store.loading.load_model_spec` accepts (``cmr-2d``, ``random-field-3d``, a cached name).
        label: for people: what it is and its measured recovery error.
        ndims: 2 or 3 (a 2D model also deforms 3D stacks slice by slice).
        num_steps: number of diffusion levels T (start levels T' lie in 0 … T).
        learned: False for the random-field-only choices (no learned recovery).
        recovery_error: summary of the measured recovery-error table (:func:`.files.recovery_error_summary`; 1 = nothing
            recovered, which a random field scores by construction); ``None`` when never measured.
        default: the front ends' preselected choice.
        origin: ``"bundled"``, ``"built in"``, ``"cache"`` (made by ``drdm train`` or ``drdm models import``) or
            ``"download"`` (a registry model such as ``lct-3d``).
        download: True while the model still has to be fetched (:func:`.download.fetch`; the front ends show
            ``"NAME (download)"`` and fetch it with progress and cancel before the first use).
    """

    name: str
    label: str
    ndims: int
    num_steps: int
    learned: bool
    recovery_error: float | None
    default: bool
    origin: str
    download: bool = False


def _download_choices() -> list[OfferedModel]:
    """Registry downloads (``lct-3d``): the cached model when it verifies, else a ``(download)`` choice."""
    choices = []
    for item in REGISTRY.values():
        if item.bundled or not item.learned or not item.available or item.ndims is None:
            continue
        if verify(item.name):
            try:
                choice = _metadata_choice(item.name, read_metadata(cached_path(item.name)), "published DRDM model",
                                          "download")
            except CheckpointError:
                choice = None
            if choice is not None:
                choices.append(choice)
            continue
        what = item.description.split(" (", 1)[0]
        choices.append(OfferedModel(name=item.name, label=f"{item.name} (download): {what}, {item.ndims}D, T=80 "
                                                          "(recovery error not measured here)",
                                    ndims=item.ndims, num_steps=80, learned=True, recovery_error=None, default=False,
                                    origin="download", download=True))
    return choices


def _learned_label(name: str, what: str, ndims: int, num_steps: int, error: float | None) -> str:
    measured = "recovery error not measured" if error is None else f"recovery error {error:.2f}"
    return f"{name}: {what}, {ndims}D, T={num_steps} ({measured})"


def _metadata_choice(name: str, metadata: dict, what: str, origin: str) -> OfferedModel | None:
    error = recovery_error_summary(metadata)
    if error is not None and error >= MAX_OFFERED_RECOVERY_ERROR:
        return None  # recovers nothing: not a DRDM model to offer
    ndims, num_steps = int(metadata["ndims"]), int(metadata["num_steps"])
    return OfferedModel(name=name, label=_learned_label(name, what, ndims, num_steps, error), ndims=ndims,
                        num_steps=num_steps, learned=True, recovery_error=error, default=name == DEFAULT_BUNDLED_MODEL,
                        origin=origin)


def offered_models(ndims: int | None = None, include_cache: bool = True) -> list[OfferedModel]:
    """What the front ends offer, in display order: the bundled learned models, the user's own models in the
    cache (``drdm train`` / ``drdm models import``), the registry downloads (``lct-3d``, offered as
    ``"lct-3d (download)"`` until fetched), then the random-field-only choices.

    A model whose recorded recovery error is ≥ 1 (:data:`MAX_OFFERED_RECOVERY_ERROR`) is left out; a cached
    model without a recorded table is offered with "recovery error not measured". ``ndims`` keeps only models
    of that dimensionality; ``include_cache=False`` leaves the cache out. Reads JSON metadata only (fast).
    """
    choices: list[OfferedModel] = []
    for name in BUNDLED_MODELS:
        path = bundled_model_path(name)
        if path.is_file():
            try:
                choice = _metadata_choice(name, read_metadata(path), "published DRDM cardiac MRI model", "bundled")
            except CheckpointError:
                choice = None
            if choice is not None:
                choices.append(choice)
    if include_cache and cache_folder().is_dir():
        for weights in sorted(cache_folder().glob("*.safetensors")):
            if weights.stem in REGISTRY:
                continue
            try:
                metadata = read_metadata(weights)
                choice = _metadata_choice(weights.stem, metadata, "your model", "cache")
            except (CheckpointError, KeyError, TypeError, ValueError):
                continue  # not a readable DRDM model: not offered
            if choice is not None:
                choices.append(choice)
    choices.extend(_download_choices())
    for name in RANDOM_FIELD_MODELS:
        model = random_field_model(name)
        label = f"{name}: random field only (no learned recovery), {model.ndims}D, T={model.num_steps}"
        choices.append(OfferedModel(name=name, label=label, ndims=model.ndims, num_steps=model.num_steps, learned=False,
                                    recovery_error=1.0, default=False, origin="built in"))
    return [c for c in choices if ndims is None or c.ndims == ndims]
