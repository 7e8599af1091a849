"""What training starts from: a model's weights (fine-tuning, ``drdm train --init MODEL``) or a new network.

Fine-tuning keeps the starting model's architecture (dimensionality, levels T, width: shape-checked against the
run's settings, with a one-line error on a mismatch) and its forward process ("noise preset"): at the model's
own size its exact settings, at another ``--size`` the same settings scaled so that deformations stay the same
fraction of the field of view.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from ..model_store.loading import load_model_spec
from ..models import DRDMModel, untrained_model
from .config import TrainingConfig


def load_initial_weights(spec: str, device: torch.device | str = "cpu") -> DRDMModel:
    """The model named by ``init`` (registry name, ``.pth``, ``.safetensors``/``.json``); a clear ``ValueError``
    when it cannot be loaded or has no weights (a random-field-only choice)."""
    model = load_model_spec(spec, device)  # CheckpointError is a ValueError
    if not model.learned:
        raise ValueError(f"`init` {spec}: {model.name} is the random field only (no learned recovery): "
                         "it has no weights to start from")
    return model


def init_settings(spec: str) -> dict:
    """The run settings implied by an initial model: ``{"ndims", "levels", "width", "size", "noise_preset"}``
    (``drdm train`` uses them for every option the user left out)."""
    model = load_initial_weights(spec)
    return {"ndims": model.ndims, "levels": model.num_steps, "width": model.network.width, "size": model.size,
            "noise_preset": model.noise_preset}


MODEL_SETTINGS = ("ndims", "levels", "width", "size", "noise_preset")  # what an --init model implies


def training_config(out: str | Path, data: Iterable[str | Path] = (), **settings) -> TrainingConfig:
    """The :class:`TrainingConfig` of a run: ``settings`` are its fields; with ``init`` (a model to fine-tune) each of
    dims, levels, width, size and noise preset that is left out or ``None`` is the model's (:func:`init_settings`),
    else the config's default. ``drdm train`` and :func:`drdm.train` both build their run here."""
    implied = init_settings(settings["init"]) if settings.get("init") else {}
    for key in MODEL_SETTINGS:
        if settings.get(key) is None:
            settings.pop(key, None)
            if key in implied:
                settings[key] = implied[key]
    return TrainingConfig(out=str(out), data=[str(path) for path in data], **settings)


def check_fits(model: DRDMModel, config: TrainingConfig) -> None:
    """Raise ``ValueError`` when the run's settings do not fit the initial model's weights or process."""
    name = f"`init` {config.init} ({model.name})"
    mismatches = [(f"is a {model.ndims}D model", f"`ndims` {config.ndims}", config.ndims != model.ndims),
                  (f"has T = {model.num_steps} levels", f"`levels` {config.levels}", config.levels != model.num_steps),
                  (f"has width {model.network.width}", f"`width` {config.width}", config.width != model.network.width),
                  (f"was trained with noise preset {model.noise_preset}", f"`noise_preset` {config.noise_preset}",
                   bool(config.noise_preset) and config.noise_preset != model.noise_preset)]
    for fact, option, differs in mismatches:
        if differs:
            raise ValueError(f"{name} {fact}: {option} does not fit it (leave the option out to use the model's)")
    if model.network.in_channels != 1:
        raise ValueError(f"{name} takes {model.network.in_channels} input channels; training uses 1")


ZERO_START_SCALE = 1e-3  # output-layer weights × this at the start: within a few % of the zero solution


def zero_output_layer(network: torch.nn.Module, scale: float = ZERO_START_SCALE) -> None:
    """Start a new network at the zero solution: the last convolution's (``conv_out``) random weights are
    multiplied by ``scale`` and its bias set to zero, so the network predicts (almost) no displacement (recovery
    error ≈ 1) instead of the 18–75 of a random output layer, and the first steps learn recovery instead of
    shrinking outputs.

    ``scale=0`` (an exactly zero layer) is worse with Adam: the first step moves every output weight by ±lr
    with one sign per output channel, which drives the last block's features below zero (dead units, a constant
    prediction; the learning curve stalls at 1.26 in ``benchmarks/results/zero_init.md``). A tiny random layer
    keeps its symmetry broken.
    """
    with torch.no_grad():
        network.conv_out.weight.mul_(scale)
        network.conv_out.bias.zero_()


def initial_model(config: TrainingConfig, device: torch.device) -> DRDMModel:
    """The model a run starts from (not yet named): ``config.init``'s weights, checked against ``config``, with
    its forward process; or a new network (seeded by ``config.seed``; output layer zeroed when
    ``config.zero_init``, the default) with the preset's process scaled to ``config.size``."""
    if not config.init:
        model = untrained_model(config.ndims, config.size, seed=config.seed, device=device, width=config.width,
                                noise_overrides=config.noise_overrides())
        model.noise_preset = config.preset()
        if config.zero_init:
            zero_output_layer(model.network)
        return model
    start = load_initial_weights(config.init, device)
    check_fits(start, config)
    model = DRDMModel(network=start.network, ndims=start.ndims, size=config.size, num_steps=start.num_steps,
                      noise_preset=start.noise_preset, intensity=start.intensity,
                      noise_overrides=config.noise_overrides(start))
    licence = start.metadata.get("licence") or start.extra.get("licence") or "its licence"
    model.extra["init"] = {"spec": config.init, "name": start.name, "sha256": start.sha256, "licence": licence,
                           "trained_on": start.trained_on}
    return model
