"""The models of the web page: the list (a model named on the command line first, then what the registry offers),
the models loaded so far, and what a choice means for the panel before generating (level range, note)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drdm.model_store.choice import AUTO, ModelChoice, is_auto
from drdm.model_store.download import download_needed
from drdm.model_store.loading import load_model
from drdm.model_store.offered import offered_models
from drdm.model_store.registry import entry as registry_entry
from drdm.models import REFERENCE_METADATA, DRDMModel
from drdm.noise import PRESETS

DOWNLOAD_STEPS = 80  # the level range shown for a registry model before its download

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



@dataclass(frozen=True)
class ModelFacts:
    """What the panel shows for a model choice: its level range (0 … ``steps``, starting at ``first_level``) and the
    note under the select; ``model`` is the loaded model, or the registry name of one still to download."""

    model: DRDMModel | str
    steps: int
    first_level: int
    note: str


class LoadedModels:
    """The models the page loaded, one per (name or file, device)."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, str], DRDMModel] = {}

    def get(self, name: str, device: str) -> DRDMModel:
        """The model ``name`` on ``device``, loaded on first use."""
        key = (str(name), device)
        if key not in self._models:
            self._models[key] = load_model(name, device)
        return self._models[key]

    def facts(self, choice: ModelChoice) -> ModelFacts:
        """The level range and note of ``choice``: read from the model (loaded on the CPU), or for a registry model
        not downloaded yet from its reference metadata, without downloading it."""
        if download_needed(choice.spec):
            preset = REFERENCE_METADATA[registry_entry(choice.spec).ndims]["noise_preset"]
            return ModelFacts(choice.spec, DOWNLOAD_STEPS, PRESETS[preset]["first_level"],
                              f"{choice.spec}: downloaded (verified) when you generate")
        model = self.get(choice.spec, "cpu")
        return ModelFacts(model, model.num_steps, model.forward_process().first_level,
                          choice.line(model.name) if choice.reason else "")
