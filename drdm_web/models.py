"""The model list of the web page: what the registry offers, plus a model named on the command line."""

from __future__ import annotations

from pathlib import Path

from drdm import registry


def model_choices(extra: str | None = None) -> list[dict]:
    """``[{"value": name-or-path, "title": label}]``: ``extra`` (``--model``) first, then the registry's models
    that can be used here without a download."""
    choices = []
    if extra:
        choices.append({"value": str(extra), "title": Path(str(extra)).name if Path(str(extra)).exists() else str(extra)})
    for name, entry in registry.REGISTRY.items():
        if name == extra or not entry.available:
            continue
        if entry.bundled or registry.verify(name):
            choices.append({"value": name, "title": f"{name}: {entry.description}"})
    return choices
