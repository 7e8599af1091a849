"""The model catalogue: which named models exist, what they are, where they come from and how they are verified.

Built in: the bundled ``cmr-2d`` (the authors' published model, converted to the project's format) and the
``random-field-2d``/``random-field-3d`` choices (no learned recovery); a download: ``lct-3d``. Loading is
:mod:`.loading`, downloads and the cache :mod:`.download`, ``drdm models import`` :mod:`.importing`, what the front
ends offer :mod:`.offered`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DRDMError
from ..models import RANDOM_FIELD_MODELS
from ..noise import PRESETS

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


def entry(name: str) -> RegistryEntry:
    """The catalogue entry of ``name``; a :class:`RegistryError` naming the known models for anything else."""
    if name not in REGISTRY:
        raise RegistryError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]
