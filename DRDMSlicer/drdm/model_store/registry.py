"""Model registry and cache: named models with licence and provenance; verified downloads; what to offer.

Built in: the bundled ``cmr-2d`` (the authors' published model, converted to the project's format) and the
``random-field-2d``/``random-field-3d`` choices (no learned recovery). :func:`offered_models` is the one list
the front ends (Slicer module, web app, CLI) show. Downloads stream to a temporary file in the cache folder
with a progress callback, are checked against the registry's SHA-256, and only then renamed into place; a
mismatch deletes the file and raises. The cache is ``$DRDM_HOME/models`` (default ``~/.cache/drdm/models``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DRDMError
from ..models import (
    RANDOM_FIELD_MODELS,
    CheckpointError,
    DRDMModel,
    file_sha256,
    load_checkpoint,
    random_field_model,
    resolve_device,
)
from ..noise import PRESETS
from .files import is_model_file, load_model_file, model_paths, read_metadata, save_model

MAX_OFFERED_RECOVERY_ERROR = 1.0  # a model that recovers no better than nothing is not offered as a DRDM model
PUBLISHED_CMR_URL = "https://github.com/jianqingzheng/def_diff_rec/raw/main/models/cmr_recresacnet/000000_cmr_recresacnet.pth"
PUBLISHED_CMR_SHA256 = "c9e93ccbd99ad288bb1c961f980141d2c8c91115e8a5986d7a20a98f64ae8e93"
# The authors' 3D lung-CT model, pinned to the commit that added it (unchanged since); verified by its git blob id.
PUBLISHED_LCT_COMMIT = "b7da2aa73bb8acbfed418863fd706d87a1bc4fa9"
PUBLISHED_LCT_URL = (f"https://raw.githubusercontent.com/jianqingzheng/def_diff_rec/{PUBLISHED_LCT_COMMIT}/"
                     "models/lct_recresacnet/000000_lct_recresacnet.pth")
PUBLISHED_LCT_GIT_BLOB = "6309023cefe116cd55fb8307ad37b38d47448990"


BUNDLED_FOLDER = Path(__file__).resolve().parent / "bundled"
BUNDLED_MODELS = ("cmr-2d",)  # weights shipped inside the package (bundled/NAME.safetensors + NAME.json)
DEFAULT_BUNDLED_MODEL = "cmr-2d"  # the default model of every front end
MODEL_NAMES = BUNDLED_MODELS + tuple(RANDOM_FIELD_MODELS)  # every built-in name load_model_spec accepts


def bundled_model_path(name: str) -> Path:
    """Weights file of a bundled model (``cmr-2d``)."""
    return BUNDLED_FOLDER / f"{name}.safetensors"


def drdm_home() -> Path:
    """Model cache folder: ``$DRDM_HOME`` or ``~/.cache/drdm``."""
    return Path(os.environ.get("DRDM_HOME", Path.home() / ".cache" / "drdm"))


def find_default_checkpoint() -> Path | None:
    """The default model file: ``$DRDM_MODEL`` when set, else the bundled ``cmr-2d`` (``None`` only when the
    installation lacks it)."""
    env = os.environ.get("DRDM_MODEL")
    if env:
        return Path(env)
    bundled = bundled_model_path(DEFAULT_BUNDLED_MODEL)
    return bundled if bundled.is_file() else None


def _load_path(path: Path, device: torch.device | str) -> DRDMModel:
    return load_model_file(path, device) if is_model_file(path) else load_checkpoint(path, device=device)


def load_model(spec: str | os.PathLike | DRDMModel | None, device: str | torch.device = "auto") -> DRDMModel:
    """The one call of every front end: a name, a file, a loaded model or ``None`` (the default model) →
    a :class:`DRDMModel` on ``device`` (``auto``: CUDA when present, ``cpu``, ``cuda`` or a torch device).

    Raises a :class:`~drdm.errors.DRDMError` (a ``ValueError``) with a message for the user."""
    target = resolve_device(device) if isinstance(device, str) else torch.device(device)
    if isinstance(spec, DRDMModel):
        return spec.to(target)
    return load_model_spec(spec, target)


def load_model_spec(spec: str | os.PathLike | None, device: torch.device | str = "cpu") -> DRDMModel:
    """A model from a file (``.pth`` reference checkpoint or ``.safetensors``/``.json`` model), a name
    (the bundled ``cmr-2d``, ``random-field-2d``/``random-field-3d``, or one made by ``drdm models import`` or
    ``drdm train`` in the cache) or, for ``None``, the default model: ``$DRDM_MODEL`` (a name or a file) when set,
    else the bundled ``cmr-2d``.

    Raises :class:`CheckpointError` (a ``ValueError``) with a message for the user.
    """
    if spec is None or not str(spec):
        if os.environ.get("DRDM_MODEL"):
            return load_model_spec(os.environ["DRDM_MODEL"], device)  # a name or a file
        path = find_default_checkpoint()
        if path is None:
            raise CheckpointError(f"no model given and the bundled default model is missing from this installation "
                                  f"({bundled_model_path(DEFAULT_BUNDLED_MODEL)}): pass `model`")
        return _load_path(path, device)
    name = str(spec)
    if name in RANDOM_FIELD_MODELS:
        return random_field_model(name, device)
    item = REGISTRY.get(name)
    if item is not None and not item.bundled:  # a registry download
        if not item.available:
            raise CheckpointError(f"model {name!r} is not available: {item.note}")
        path = cached_path(name)
        if not path.is_file():
            raise CheckpointError(f"model {name!r} is not downloaded yet (expected {path}); run: drdm models fetch {name}")
        return _load_path(path, device)
    if name in BUNDLED_MODELS:
        path = bundled_model_path(name)
        if not path.is_file():
            raise CheckpointError(f"bundled model {name!r} is missing from this installation ({path})")
        return _load_path(path, device)
    imported = cache_folder() / f"{name}.safetensors"
    if "/" not in name and os.sep not in name and not Path(name).exists() and imported.is_file():
        return _load_path(imported, device)
    return _load_path(Path(name), device)


class RegistryError(DRDMError):
    """A registry name, download or verification problem, explained in one line."""


@dataclass(frozen=True)
class RegistryEntry:
    """A named model: bundled weights, a built-in random-field choice, or a download."""

    name: str
    filename: str
    url: str | None
    sha256: str | None
    licence: str
    description: str
    available: bool = True
    note: str = ""
    bundled: bool = False  # shipped inside the package: nothing to download
    learned: bool = True  # False: random field only (no network, nothing on disk)
    git_blob: str | None = None  # verify the download by its git blob id (SHA-1 of b"blob <size>\0" + bytes)
    ndims: int | None = None  # a download converted to the project's format must be a network of this dimensionality
    trained_on: str = ""

    @property
    def converted(self) -> bool:
        """True when the download (an authors' ``.pth``) is converted to ``NAME.safetensors`` + JSON in the cache."""
        return self.filename.endswith(".safetensors") and not self.bundled


REGISTRY: dict[str, RegistryEntry] = {
    "cmr-2d": RegistryEntry(
        name="cmr-2d", filename="cmr-2d.safetensors", url=None, sha256=None, bundled=True,
        licence="Apache-2.0 (the authors' repository jianqingzheng/def_diff_rec; see bundled/NOTICE)",
        description=f"the authors' published 2D cardiac MRI model (256², 80 levels), converted from "
                    f"{PUBLISHED_CMR_URL.rsplit('/', 1)[1]} (sha256 {PUBLISHED_CMR_SHA256[:8]}…)"),
    "lct-3d": RegistryEntry(
        name="lct-3d", filename="lct-3d.safetensors", url=PUBLISHED_LCT_URL, sha256=None, git_blob=PUBLISHED_LCT_GIT_BLOB,
        ndims=3, licence="Apache-2.0 (the authors' repository jianqingzheng/def_diff_rec)",
        trained_on="lung CT volumes (the authors' training set; settings of their Config/config_lct.yaml)",
        description="the authors' published 3D lung CT model (128³, 80 levels, start level 64, border padding, "
                    f"linear resampling), downloaded from their repository at commit {PUBLISHED_LCT_COMMIT[:10]} "
                    f"(git blob {PUBLISHED_LCT_GIT_BLOB[:10]}) and converted to the project's format in the cache"),
    **{name: RegistryEntry(
        name=name, filename="", url=None, sha256=None, bundled=True, learned=False, licence="Apache-2.0 (this project)",
        description=f"random field only (no learned recovery): the diffeomorphic {spec['ndims']}D forward field at "
                    f"level T' ({spec['noise_preset']} settings, {PRESETS[spec['noise_preset']]['image_size']} working grid), "
                    "fold-free, no network")
       for name, spec in RANDOM_FIELD_MODELS.items()},
}
assert set(BUNDLED_MODELS) | set(RANDOM_FIELD_MODELS) <= set(REGISTRY)


def cache_folder() -> Path:
    return drdm_home() / "models"


def entry(name: str) -> RegistryEntry:
    if name not in REGISTRY:
        raise RegistryError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def cached_path(name: str) -> Path:
    """Where the model lives locally (the package folder for bundled models)."""
    item = entry(name)
    if not item.learned:
        raise RegistryError(f"model {name!r} is built in (random field only): it has no file")
    return bundled_model_path(name) if item.bundled else cache_folder() / item.filename


def git_blob_id(path: str | os.PathLike) -> str:
    """The git blob id of a file: SHA-1 of ``b"blob <size>\\0" + bytes`` (what ``git hash-object`` prints)."""
    path = Path(path)
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_needed(name: str) -> bool:
    """True for a registry download (``lct-3d``) that is not in the cache, verified, yet; False for everything else
    (bundled and built-in models, files, cached names, unknown or unavailable names)."""
    item = REGISTRY.get(str(name))
    return (item is not None and not item.bundled and item.learned and item.available
            and not verify(item.name))


class DownloadCancelled(RegistryError):
    """A download stopped by its ``cancel`` callback; nothing was kept."""


def _download(name: str, url: str, target: Path, progress: Callable[[int, int | None], None] | None,
              cancel: Callable[[], bool] | None) -> None:
    """Stream ``url`` into ``target`` (a temporary file), calling ``progress`` and polling ``cancel`` per chunk."""
    try:
        with open(target, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            done = 0
            while chunk := response.read(1 << 16):
                if cancel is not None and cancel():
                    raise DownloadCancelled(f"download of {name!r} cancelled; nothing was kept")
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except (urllib.error.URLError, OSError) as error:
        raise RegistryError(f"download of {name!r} failed: {getattr(error, 'reason', error)}") from None


def _check_download(item: RegistryEntry, path: Path) -> None:
    """Refuse a download whose git blob id / sha256 is not the registry's (one line, the caller deletes it)."""
    if item.git_blob is not None:
        found = git_blob_id(path)
        if found != item.git_blob:
            raise RegistryError(f"download of {item.name!r} is wrong, truncated or tampered with: git blob {found} "
                                f"instead of {item.git_blob}; nothing was kept")
    elif (found := file_sha256(path)) != item.sha256:
        raise RegistryError(f"download of {item.name!r} is corrupt or tampered with: sha256 {found} "
                            f"instead of {item.sha256}; the file was deleted")


def _convert(item: RegistryEntry, checkpoint: Path, url: str, target: Path) -> None:
    """Load a checkpoint that :func:`_check_download` verified (so its blob id is the entry's) weights-only and save
    it as ``target`` (``.safetensors`` + JSON; the loader's SHA-256 of the file is recorded, nothing is read again)."""
    try:
        model = load_checkpoint(checkpoint)
    except CheckpointError as error:
        raise RegistryError(f"download of {item.name!r} is not a DRDM checkpoint ({error}); nothing was kept") from None
    if item.ndims is not None and model.ndims != item.ndims:
        raise RegistryError(f"download of {item.name!r} is a {model.ndims}D network, not the {item.ndims}D model; "
                            "nothing was kept")
    model.name = item.name
    model.trained_on = item.trained_on or model.trained_on
    save_model(model, target, licence=item.licence, source_url=url, source_git_blob=item.git_blob,
               source_sha256=model.sha256, source_bytes=checkpoint.stat().st_size,
               description=item.description)


def fetch(name: str, progress: Callable[[int, int | None], None] | None = None, url: str | None = None,
          force: bool = False, cancel: Callable[[], bool] | None = None) -> Path:
    """Download a registry model into the cache (verified) and return its path.

    ``progress(bytes_done, bytes_total_or_None)`` is called as data arrives; ``cancel()`` returning True stops the
    download (:class:`DownloadCancelled`). ``url`` overrides the registry URL (mirrors, tests). The file is checked
    against the registry's git blob id (or SHA-256) before anything is kept; an authors' ``.pth`` entry
    (:attr:`RegistryEntry.converted`) is then loaded weights-only and saved in the project's format with its
    SHA-256, blob id and size in the JSON beside it. A wrong file leaves nothing in the cache. An already cached
    model is reused only if it verifies.
    """
    item = entry(name)
    if not item.available:
        raise RegistryError(f"model {name!r} is not available: {item.note}")
    if not item.learned:
        raise RegistryError(f"model {name!r} is built in (random field only): there is nothing to download")
    if item.bundled:
        if not verify(name):
            raise RegistryError(f"bundled model {name!r} is missing or modified in this installation ({cached_path(name)})")
        return cached_path(name)
    target = cached_path(name)
    if not force and verify(name):
        return target
    for stale in model_paths(target) if item.converted else (target,):
        stale.unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary_name = tempfile.mkstemp(prefix=f".{target.name}.partial-", dir=target.parent)
    os.close(handle)
    temporary = Path(temporary_name)
    source = url or item.url
    try:
        _download(name, source, temporary, progress, cancel)
        _check_download(item, temporary)
        if item.converted:
            _convert(item, temporary, source, target)
        else:
            os.replace(temporary, target)
    except BaseException:
        if item.converted:
            for partial in model_paths(target):
                partial.unlink(missing_ok=True)
        raise
    finally:
        temporary.unlink(missing_ok=True)
    return target


def verify(name: str) -> bool:
    """True when the cached file exists and matches the registry hash (bundled: the hash in its JSON; built-in
    random-field choices: always)."""
    item = entry(name)
    if not item.learned:
        return True
    path = cached_path(name)
    if not path.is_file():
        return False
    if item.bundled or item.converted:
        try:
            metadata = read_metadata(path)
        except CheckpointError:
            return False
        if item.converted and metadata.get("source_git_blob") != item.git_blob:
            return False
        return file_sha256(path) == metadata.get("sha256")
    return file_sha256(path) == item.sha256


def import_checkpoint(source: str | os.PathLike, name: str | None = None, force: bool = False) -> tuple[Path, Path]:
    """Copy a model into the cache under ``name``, where the front ends offer it: an authors' ``.pth`` checkpoint
    (weights-only loading, converted to the project's format) or a ``.safetensors``/``.json`` model (e.g. made by
    ``drdm train``; its metadata, recovery-error table included, is kept).

    Returns the ``(.safetensors, .json)`` paths; refuses to overwrite an existing model unless ``force``.
    """
    import re


    source = Path(source)
    model = load_model_file(source) if is_model_file(source) else load_checkpoint(source)
    name = name or re.sub(r"^\d+_", "", model_paths(source)[0].stem)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or name in REGISTRY:
        raise RegistryError(f"model name {name!r} is not allowed: use letters, digits, '.', '_', '-' "
                            f"and not a registry name ({', '.join(sorted(REGISTRY))})")
    weights, metadata = model_paths(cache_folder() / name)
    if weights.exists() and not force:
        raise RegistryError(f"model {name!r} already exists ({weights}); choose another --name or pass --force")
    model.name = name
    if is_model_file(source):
        kept = {k: v for k, v in read_metadata(source).items()
                if k not in ("name", "sha256", "created", "drdm_version", "format", "format_version")}
        return save_model(model, weights, **{**kept, "imported_from": str(model_paths(source)[0].resolve())})
    return save_model(model, weights, licence="as the source checkpoint",
                      trained_on=model.trained_on, source_file=str(source.resolve()), source_sha256=model.sha256,
                      training_command="(imported with: drdm models import)")


@dataclass(frozen=True)
class OfferedModel:
    """One choice the front ends offer (:func:`offered_models`).

    Attributes:
        name: what :func:`drdm.model_store.registry.load_model_spec` accepts (``cmr-2d``, ``random-field-3d``, a cached name).
        label: for people: what it is and its measured recovery error.
        ndims: 2 or 3 (a 2D model also deforms 3D stacks slice by slice).
        num_steps: number of diffusion levels T (start levels T' lie in 0 … T).
        learned: False for the random-field-only choices (no learned recovery).
        recovery_error: summary of the measured recovery-error table (:mod:`drdm.training.recovery_error`; 1 = nothing
            recovered, which a random field scores by construction); ``None`` when never measured.
        default: the front ends' preselected choice.
        origin: ``"bundled"``, ``"built in"``, ``"cache"`` (made by ``drdm train`` or ``drdm models import``) or
            ``"download"`` (a registry model such as ``lct-3d``).
        download: True while the model still has to be fetched (:func:`fetch`; the front ends show
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
    from ..training.recovery_error import summary

    error = summary(metadata)
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
