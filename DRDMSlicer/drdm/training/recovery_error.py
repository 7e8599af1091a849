"""Recovery-error tables: what a model has learned, measured one way for every model and kept in its metadata.

The error of one draw is ``‖W(P; D_target) + D_target‖ / ‖D_target‖`` (:func:`recovery_error`):
0 is a perfect recovery of the forward-process target, 1 is what a model that recovers nothing scores (a
network that outputs zero, or a random-field-only model), and untrained networks score 18–150. A table holds
one row per evaluation data set with the mean error at each level of :data:`LEVELS`; its ``summary`` (the
mean of the first row) is the one number the front ends show (read back by
:func:`drdm.model_store.files.recovery_error_summary`). Stored as ``metadata["recovery_error"]``::

    {"definition": ..., "levels": [10, 30, 50, 70], "draws": 2, "seed": 7777, "summary": 0.43,
     "rows": [{"data": "...", "images": 10, "errors": [0.61, 0.42, 0.36, 0.35], "mean": 0.43}, ...]}
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..models import DRDMModel
from ..noise import ForwardProcess
from ..spatial import warp
from .data import sample_generator
from .losses import relative_recovery_error
from .phantoms import cardiac_phantom, cardiac_short_axis_phantom

EVALUATION_LEVELS = (10, 30, 50, 70)
VALIDATION_SEED = 7_777  # validation draws do not depend on the training seed: runs stay comparable
LEVELS = EVALUATION_LEVELS
DEFINITION = ("mean ‖W(P; D_target) + D_target‖ / ‖D_target‖ of the predicted recovery field per level "
              "(drdm.training.recovery_error.recovery_error); 0 perfect, 1 = no recovery")
PHANTOM_SEED = 900_000  # evaluation phantoms: seeds no training run uses (training phantoms: 0 .. count-1)


def deform_clean_image(process: ForwardProcess, x0: torch.Tensor, level: int, size: int, generator: torch.Generator,
                       device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward process on one clean image ``(1, *spatial)``: ``(x_t (1, 1, *spatial), D_target (1, n, *spatial))``,
    the image warped linearly with zero padding by ``D_warp`` (SPEC §6 step 4), fields in voxels."""
    ddf_warp, ddf_target = process.sample(level, size, 1, generator, device=device)
    return warp(x0[None].to(device), ddf_warp, "linear", "zeros"), ddf_target


@torch.no_grad()
def recovery_error(model: DRDMModel, images: list[torch.Tensor], levels: tuple[int, ...] = EVALUATION_LEVELS,
                   draws: int = 1, seed: int = VALIDATION_SEED, rec_num: int = 2) -> dict[int, float]:
    """Mean relative error ``‖W(P; D_target) + D_target‖ / ‖D_target‖`` of the predicted recovery field.

    For every image, level and draw, the image is deformed by the forward process (fixed seeds, so two
    models see the same deformations) and the network's prediction is compared with the target it learns.
    0 is perfect and a network that outputs zero scores 1 (randomly initialised networks score far more); a
    random-field-only model (no network) predicts no recovery and scores exactly 1.
    """
    network = model.network.eval() if model.learned else None
    process = model.forward_process()
    device = model.device
    errors = {}
    for level in levels:
        values = []
        for i, image in enumerate(images):
            for k in range(draws):
                generator = sample_generator(seed, level, i, k)
                x_t, ddf_target = deform_clean_image(process, image, level, model.size, generator, device)
                prediction = torch.zeros_like(ddf_target) if network is None else network(x_t, level, rec_num=rec_num)
                aligned = warp(prediction, ddf_target, "linear", process.composition_padding)
                values.append(float(relative_recovery_error(aligned, ddf_target / model.size)[0]))
        errors[level] = sum(values) / len(values)
    return errors


def evaluation_phantoms(ndims: int, size: int, count: int = 4) -> tuple[str, list[torch.Tensor]]:
    """``(description, images)``: held-out phantoms ``(1, *[size]*ndims)`` in [0, 1] for a model's table.

    2D: :func:`~drdm.training.phantoms.cardiac_short_axis_phantom`; 3D: :func:`~drdm.training.phantoms.cardiac_phantom`.
    """
    seeds = range(PHANTOM_SEED, PHANTOM_SEED + count)
    if ndims == 2:
        images = [cardiac_short_axis_phantom(size, seed=s)[0][0] for s in seeds]
        # the data labels are recorded in every model's table (the bundled cmr-2d's too): kept as first written
        return f"{count} cardiac short-axis phantoms (drdm.phantoms.cardiac_short_axis_phantom, seeds {seeds[0]}+)", images
    images = [cardiac_phantom(size, 3, seed=s)[0][0] for s in seeds]
    return f"{count} 3D cardiac phantoms (drdm.phantoms.cardiac_phantom, seeds {seeds[0]}+)", images


def cmr_sample_datasets(folder: Path, size: int) -> list[tuple[str, list[torch.Tensor]]]:
    """The public cardiac MRI samples (``shared/data/cmr``) as 2D evaluation data sets at ``size``²: ACDC
    patient001 end-diastole (every short-axis slice) and the authors' preprocessed sample. Files that are absent
    are skipped (so the result may be empty)."""
    from .data import load_training_images

    sets = []
    acdc, sample = Path(folder) / "patient001_frame01.nii.gz", Path(folder) / "OpenDataset_162867.nii.gz"
    if acdc.is_file():
        images = load_training_images([acdc], 2, size)
        sets.append((f"ACDC patient001 end-diastole, its {len(images)} short-axis slices (padded square, resized to "
                     f"{size}², min-max)", images))
    if sample.is_file():
        sets.append(("the authors' preprocessed CMR sample OpenDataset_162867 (their example data; may have been "
                     "seen in training)", load_training_images([sample], 2, size)))
    return sets


def recovery_error_row(model: DRDMModel, data: str, images: list[torch.Tensor], draws: int = 2,
                       seed: int = VALIDATION_SEED) -> dict:
    """One table row: ``{"data", "images", "errors" (one per level of LEVELS), "mean"}`` (errors rounded to 1e-4)."""
    errors = recovery_error(model, images, LEVELS, draws=draws, seed=seed)
    values = [round(errors[t], 4) for t in LEVELS]
    return {"data": data, "images": len(images), "errors": values, "mean": round(sum(values) / len(values), 4)}


def recovery_error_table(model: DRDMModel, datasets: list[tuple[str, list[torch.Tensor]]], draws: int = 2,
                         seed: int = VALIDATION_SEED) -> dict:
    """The table of ``model`` on ``datasets`` (``(description, images)`` pairs, the first one summarises).

    Images are ``(1, *[model.size]*ndims)`` in [0, 1]. Deterministic: the same draws for every model.
    """
    if not datasets:
        raise ValueError("a recovery-error table needs at least one data set")
    rows = [recovery_error_row(model, data, images, draws, seed) for data, images in datasets]
    return {"definition": DEFINITION, "levels": list(LEVELS), "draws": draws, "seed": seed,
            "summary": rows[0]["mean"], "rows": rows}
