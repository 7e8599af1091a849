"""Which Python packages the Slicer module needs, and whether the installed ones qualify.

Qt-free and torch-free: versions are read from the installed distributions' metadata, so checking never
imports (or half-imports) PyTorch. ``packaging`` ships with Slicer (it is in the PythonQt requirements of
every Slicer release this module supports).
"""

from __future__ import annotations

import importlib
import importlib.metadata

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

TORCH_REQUIREMENT = "torch>=2.1,<3"  # the same range as pyproject.toml (Testing/slicer_module/test_module_static.py checks it)
SAFETENSORS_REQUIREMENT = "safetensors>=0.4"  # the project's model format


def version_specifier(requirement: str) -> str:
    """The version part of ``requirement``, e.g. ``">=2.1,<3"`` for ``"torch>=2.1,<3"`` (what the PyTorch
    extension's ``installTorch(torchVersionRequirement=...)`` expects)."""
    return str(Requirement(requirement).specifier)


def requirement_problem(requirement: str, installed: str | None) -> str | None:
    """``None`` when the ``installed`` version (``None``: not installed) satisfies ``requirement``, else a
    short sentence for the user.

    Example::

        requirement_problem("torch>=2.1,<3", "2.4.1+cu121")  # None (local build labels are fine)
        requirement_problem("torch>=2.1,<3", "1.13.1")       # 'torch 1.13.1 is installed, torch>=2.1,<3 is needed'
    """
    parsed = Requirement(requirement)
    if installed is None:
        return f"{parsed.name} is not installed, {requirement} is needed"
    try:
        version = Version(installed)
    except InvalidVersion:
        return f"{parsed.name} {installed} is installed (not a valid version), {requirement} is needed"
    if parsed.specifier.contains(version, prereleases=True):  # nightly builds of a good version are accepted
        return None
    return f"{parsed.name} {installed} is installed, {requirement} is needed"


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name`` from its metadata (no import), or ``None``."""
    importlib.invalidate_caches()  # a package installed a moment ago by pip is found too
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def unmet_requirement(requirement: str) -> str | None:
    """:func:`requirement_problem` for what is installed now."""
    return requirement_problem(requirement, installed_version(Requirement(requirement).name))
