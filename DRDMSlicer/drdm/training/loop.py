"""Training a DRDM recovery network (Algorithm 1 of the paper, losses of SPEC §6).

Per sample: augment a clean image ``x0`` (SPEC §6 steps 1–2), draw a level ``t``, deform it with the forward
process (``x_t = W(x0; D_warp)``), predict ``P = Net(x_t, t)`` (two refinement passes, gradients through
both), resample ``Q = W(P; D_target)`` and minimise :func:`drdm.training.losses.recovery_losses` with Adam.

Reproducible and resumable: each sample's randomness comes from ``(seed, step, index)``
(:mod:`drdm.training.data`), so resuming from ``last.pt`` (weights, Adam state, step) continues exactly like an
uninterrupted run, and a torchrun job with the same global batch computes the same samples (split across
ranks; DistributedDataParallel averages the gradients of equal shards = the gradient of the global mean).

Outputs in ``out/``: ``last.pt`` (resume state), ``metrics.csv``, TensorBoard events when ``tensorboard`` is
installed, and the trained model ``NAME.safetensors`` + ``NAME.json`` (:mod:`drdm.model_store.files`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from ..models import DRDMModel
from ..noise import ForwardProcess
from ..spatial import warp
from .config import TrainingConfig
from .data import TrainingImages, sample_generator
from .initialisation import initial_model
from .loader import resume_generator, step_batches
from .log import MetricsLog
from .losses import recovery_losses, relative_recovery_error
from .recovery_error import EVALUATION_LEVELS, VALIDATION_SEED, deform_clean_image, recovery_error_table
from .state import STATE_FILE, Optimisation, make_optimisation
from .torchrun import process_device

PHANTOM_LICENCE = "Apache-2.0 (weights trained on this project's procedural phantoms)"


@dataclass
class TrainingResult:
    """What :func:`train` produced."""

    model: DRDMModel
    weights: Path | None
    metadata: Path | None
    steps: int
    seconds: float
    last_loss: float
    validation_error: float | None


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def start_distributed(device: torch.device) -> DistributedContext:
    """Join the torchrun process group when ``WORLD_SIZE > 1`` (``nccl`` on CUDA, ``gloo`` on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size())


def deform_batch(process: ForwardProcess, x0: torch.Tensor, states: torch.Tensor, levels: torch.Tensor, size: int,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward deformation of prepared samples (:mod:`drdm.training.loader`): ``x0`` ``(B, 1, *spatial)``,
    generator ``states`` ``(B, n)`` and ``levels`` ``(B,)`` → ``(x_t (B, 1, *spatial), D_target (B, n, *spatial))``
    on ``device``, fields in voxels."""
    pairs = [deform_clean_image(process, x0[i], int(levels[i]), size, resume_generator(states[i]), device)
             for i in range(x0.shape[0])]
    return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])


def _autocast(device: torch.device, amp: str):
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def batch_losses(network: torch.nn.Module, x_t: torch.Tensor, t: torch.Tensor, target_vox: torch.Tensor,
                 process: ForwardProcess, config: TrainingConfig, device: torch.device) -> dict[str, torch.Tensor]:
    """Forward pass and losses of one batch (targets in voxels)."""
    size = x_t.shape[2]
    with _autocast(device, config.amp):
        prediction = network(x_t, t, rec_num=config.rec_num)
    prediction = prediction.float()
    aligned = warp(prediction, target_vox, "linear", process.composition_padding)
    values = recovery_losses(prediction, aligned, target_vox / size, config.regulariser)
    values["relative_error"] = relative_recovery_error(aligned.detach(), target_vox / size).mean()
    return values


@torch.inference_mode()
def _validation(model: DRDMModel, images: TrainingImages, config: TrainingConfig) -> tuple[float, float] | None:
    """``(mean validation loss, mean relative recovery error)`` over fixed validation draws."""
    samples = [images.validation_image(i) for i in range(config.val_samples)]
    if not samples or samples[0] is None:  # --val-samples 0: no validation
        return None
    process = model.forward_process()
    network = model.network
    was_training = network.training
    network.eval()
    losses, errors = [], []
    with torch.inference_mode():
        for i, x0 in enumerate(samples):
            level = EVALUATION_LEVELS[i % len(EVALUATION_LEVELS)]
            generator = sample_generator(VALIDATION_SEED, level, i, 0)
            x_t, ddf_target = deform_clean_image(process, x0, level, config.size, generator, model.device)
            values = batch_losses(network, x_t, torch.tensor([level], device=model.device), ddf_target, process, config,
                                  model.device)
            losses.append(float(values["loss"]))
            errors.append(float(values["relative_error"]))
    network.train(was_training)
    return sum(losses) / len(losses), sum(errors) / len(errors)


def _recovery_error_table(model: DRDMModel, images: TrainingImages, config: TrainingConfig) -> dict | None:
    """The trained model's recovery-error table (:mod:`drdm.training.recovery_error`) on up to ``val_samples`` held-out
    images, or ``None`` without any."""
    count = config.val_samples if images.training is None else min(config.val_samples, len(images.validation or []))
    held_out = [images.validation_image(i) for i in range(count)]
    if not held_out:
        return None
    return recovery_error_table(model, [(f"{count} held-out validation images of the training data", held_out)])


@dataclass(frozen=True)
class TrainingSetup:
    """Where a run happens: its device, its process group and its output folder."""

    device: torch.device
    context: DistributedContext
    out: Path


def set_up(config: TrainingConfig, resume: bool) -> TrainingSetup:
    """Check the settings, pick the device, join the process group (torchrun) and refuse to overwrite a run."""
    config.check()
    device = process_device(config.device)
    if config.amp == "fp16" and device.type != "cuda":
        raise ValueError("`amp` fp16 needs a CUDA device (use bf16 or none on CPU)")
    context = start_distributed(device)
    if config.batch % context.world:
        raise ValueError(f"`batch` {config.batch} cannot be split evenly across {context.world} processes")
    out = Path(config.out)
    if not resume and (out / STATE_FILE).is_file():
        raise ValueError(f"{out} already holds a training run ({STATE_FILE}): pass `resume` to continue it "
                         "or choose another `out`")
    return TrainingSetup(device, context, out)


def training_images(config: TrainingConfig) -> TrainingImages:
    """The run's data: the images under ``config.data`` (split for validation, optionally cached) or the
    procedural phantoms."""
    if not config.data:
        return TrainingImages.phantoms(config.ndims, config.size, config.phantoms, config.phantom_texture)
    from ..physical.augmentation import find_inputs

    paths = [image for image, _ in find_inputs(config.data, None)]
    return TrainingImages.from_files(paths, config.ndims, config.size, config.val_fraction, config.seed,
                                     cache=Path(config.cache) if config.cache else None)


def resume_point(optimisation: Optimisation, setup: TrainingSetup, config: TrainingConfig, resume: bool) -> tuple[int, float]:
    """``(first step, training seconds before it)``: from ``last.pt`` when resuming, else ``(0, 0.0)``."""
    state_path = setup.out / STATE_FILE
    start, seconds = 0, 0.0
    if resume and state_path.is_file():
        start, seconds = optimisation.restore(state_path, asdict(config))
    elif resume and setup.context.is_main:
        print(f"drdm train: no {state_path} to resume from; starting from step 0")
    if start >= config.steps and setup.context.is_main:
        print(f"drdm train: {state_path} is already at step {start} of {config.steps}")
    return start, seconds


def training_step(optimisation: Optimisation, process: ForwardProcess, config: TrainingConfig,
                  batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], device: torch.device) -> dict[str, float]:
    """One optimisation step on a prepared ``batch`` ``(x0, levels, generator states)``
    (:func:`drdm.training.loader.step_batches`); returns the step's losses."""
    x0, levels, states = batch
    x_t, target = deform_batch(process, x0, states, levels, config.size, device)
    values = batch_losses(optimisation.trainable, x_t, levels.to(device, non_blocking=True), target, process, config,
                          device)
    optimisation.optimizer.zero_grad(set_to_none=True)
    optimisation.scaler.scale(values["loss"]).backward()
    optimisation.scaler.step(optimisation.optimizer)
    optimisation.scaler.update()
    return {k: float(v.detach()) for k, v in values.items()}


def save_trained_model(model: DRDMModel, images: TrainingImages, config: TrainingConfig, out: Path,
                       validation: tuple[float, float] | None, seconds: float) -> tuple[Path, Path]:
    """Write ``NAME.safetensors`` + ``NAME.json`` with the licence, provenance and recovery-error table."""
    from ..model_store.files import RECOVERY_ERROR_KEY, save_model

    licence = PHANTOM_LICENCE if not config.data else "as the training data"
    extra = {}
    if config.init:
        licence = f"derived from {model.extra['init']['name']} ({model.extra['init']['licence']}); training data: {licence}"
        extra["init"] = model.extra["init"]
    table = _recovery_error_table(model, images, config)
    if table is not None:
        extra[RECOVERY_ERROR_KEY] = table
    return save_model(model, out / config.name, training_command=config.command, licence=licence,
                      training={**asdict(config), "data": list(config.data)}, training_seconds=round(seconds, 1),
                      final_validation_error=validation[1] if validation else None, **extra)


def _describe_training(model: DRDMModel, images: TrainingImages, config: TrainingConfig) -> None:
    model.name = config.name
    model.trained_on = images.description
    if config.init:
        start = model.extra["init"]
        model.trained_on = f"{images.description}; fine-tuned from {start['name']} (trained on {start['trained_on']})"


def _due(done: int, every: int, total: int) -> bool:
    return done % every == 0 or done == total


def train(config: TrainingConfig, resume: bool = False, progress: Callable[[int, int, dict], None] | None = None,
          images: TrainingImages | None = None) -> TrainingResult:
    """Run (or resume) training; returns the trained model and where it was written.

    Steps: :func:`set_up`, the initial model, :func:`training_images`, the optimiser and :func:`resume_point`,
    then per step :func:`training_step`, validation, :class:`~drdm.training.log.MetricsLog` and the
    checkpoint (:class:`~drdm.training.state.Optimisation`), and finally :func:`save_trained_model`.
    ``progress(step, total, values)`` is called after every step on the main process. ``images`` overrides
    the data described by ``config`` (tests). Under torchrun the global ``batch`` is split across ranks.
    """
    setup = set_up(config, resume)
    device, context, is_main = setup.device, setup.context, setup.context.is_main
    model = initial_model(config, device)  # first: a --init that does not fit fails before any data is read
    # the reference (contiguous) layout by default: DDP buckets and resumed runs stay bit-identical
    model.network.set_layout("channels-last" if config.channels_last else "reference")
    if is_main:
        setup.out.mkdir(parents=True, exist_ok=True)
    images = images if images is not None else training_images(config)
    _describe_training(model, images, config)
    process = model.forward_process()
    optimisation = make_optimisation(model.network.train(), config.lr, config.amp, device, context.world, config.compile)
    start, earlier_seconds = resume_point(optimisation, setup, config, resume)
    per_rank = config.batch // context.world
    log = MetricsLog(setup.out, start) if is_main else None
    began = time.perf_counter() - earlier_seconds
    last, validation = {"loss": float("nan")}, None
    batches = step_batches(images, config, start, context.rank * per_rank, per_rank, device)
    try:
        for done, batch in zip(range(start + 1, config.steps + 1), batches):
            values = training_step(optimisation, process, config, batch, device)
            if not is_main:
                continue
            last = values
            measured = _validation(model, images, config) if _due(done, config.val_every, config.steps) else None
            validation = measured or validation
            if _due(done, config.log_every, config.steps) or measured is not None:
                log.record(done, last, time.perf_counter() - began, measured)
            if _due(done, config.checkpoint_every, config.steps):
                optimisation.save(setup.out / STATE_FILE, done, asdict(config), time.perf_counter() - began)
            if progress is not None:
                progress(done, config.steps, last)
    finally:
        if log is not None:
            log.close()
    model.network.eval()
    weights = metadata = None
    if is_main:
        weights, metadata = save_trained_model(model, images, config, setup.out, validation, time.perf_counter() - began)
    if context.world > 1:
        dist.barrier()
    return TrainingResult(model, weights, metadata, config.steps, time.perf_counter() - began, last["loss"],
                          validation[1] if validation else None)
