"""The model list of the web page: a model named on the command line first, then what the registry offers."""

from __future__ import annotations

from pathlib import Path

from drdm.registry import offered_models


def model_choices(extra: str | None = None) -> list[dict]:
    """``[{"value": name-or-path, "title": label}]`` for the model select: ``extra`` (``--model``) first, then
    :func:`drdm.registry.offered_models` (bundled, the user's cached models, random field only), default first."""
    choices = []
    if extra:
        choices.append({"value": str(extra), "title": Path(str(extra)).name if Path(str(extra)).exists() else str(extra)})
    offered = sorted(offered_models(), key=lambda choice: not choice.default)
    choices += [{"value": choice.name, "title": choice.label} for choice in offered if choice.name != extra]
    return choices
