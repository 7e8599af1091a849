"""The model list of the web page: a model named on the command line first, then what the registry offers."""

from __future__ import annotations

from pathlib import Path

from drdm.model_store.choice import AUTO, is_auto
from drdm.model_store.offered import offered_models

AUTO_TITLE = "auto: the model that fits the volume"


def model_choices(extra: str | None = None) -> list[dict]:
    """``[{"value": name-or-path, "title": label}]`` for the model select: ``extra`` (``--model``) first when it
    names a model, then ``auto`` (:func:`drdm.model_store.choice.choose_model`, decided from the loaded volume), then
    :func:`drdm.model_store.offered.offered_models` (bundled, the user's cached models, ``lct-3d (download)``, random field
    only), default first."""
    choices = []
    if extra and not is_auto(extra):
        choices.append({"value": str(extra), "title": Path(str(extra)).name if Path(str(extra)).exists() else str(extra)})
    choices.append({"value": AUTO, "title": AUTO_TITLE})
    offered = sorted(offered_models(), key=lambda choice: not choice.default)
    choices += [{"value": choice.name, "title": choice.label} for choice in offered if choice.name != extra]
    return choices

