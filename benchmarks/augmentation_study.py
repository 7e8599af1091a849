"""Few-shot segmentation with six augmentation arms: does DRDM beat elastic deformation when the sizes are matched?

Arms (same network, iterations, batches and seeds; only the augmentation differs):

* ``none``: the labelled slices as they are;
* ``elastic``: TorchIO ``RandomElasticDeformation`` with its defaults (7 control points, 7.5 mm, locked borders 2);
* ``elastic-matched``: the same, its ``max_displacement`` scaled so that its mean |u| (mm) equals DRDM's own;
* ``bigaug``: BigAug-like (Zhang et al. 2020): blur, noise, gamma, brightness/contrast, rotation, scaling and
  elastic deformation, each with probability 0.5 (TorchIO; BigAug's sharpening is left out);
* ``drdm``: DRDM copies at the model's own size;
* ``drdm-small``: DRDM copies at the elastic defaults' mean |u| (``magnitudes=[…]``: the same shapes, scaled).

Every deforming arm trains on copies made once before training, ``--copies`` per training slice, and a training
sample is drawn uniformly from each slice's original and its copies: the arms differ only in what made the copies.
DRDM's go through the product's own route (``drdm.augment`` writes the sample folders and the manifest,
:func:`drdm.transforms.augmented_items` mixes each original with its copies); the TorchIO arms' are drawn with their
transforms (``--on-the-fly`` draws those anew for every training sample instead, with probability copies /
(copies + 1): more variety, and on a CPU the elastic B-spline costs more than the network's step).

Data: by default the one labelled ACDC subject in ``../shared/data/cmr`` (patient001, end-diastole, 10 slices of
216 × 256 at 1.5625 mm; the 9 slices with labels are the units, split by slice); ``--data DIR --label-suffix _gt``:
a folder of labelled 2D images or stacks, one subject per file, split by subject (a stack's labelled slices stay
together). Fold ``f`` trains on ``--train-per-fold`` units of a fixed random order (``--split-seed``) and tests on
every other unit (fewer folds, then fewer units per fold, where the data is too small for the defaults and they were
not set); Dice per class is pooled over a test subject's slices, then averaged over test subjects.

Network: a MONAI 2D ``UNet`` trained with ``DiceCELoss`` and Adam for a fixed number of iterations, on a centre crop
of ``--crop`` pixels (downsampled by ``--zoom``). Statistics: per arm and class the mean over runs (seeds × folds);
paired differences between arms (same fold and seed) with 95 % percentile bootstrap intervals, over runs and, more
honestly when folds share test sets, clustered by fold (folds resampled, then seeds within them).

Usage:
  OMP_WAIT_POLICY=PASSIVE python benchmarks/augmentation_study.py --quick      # ≤ 30 min on 2 CPU cores
  python benchmarks/augmentation_study.py                                      # the default (hours on a CPU)
  python benchmarks/augmentation_study.py --data DIR --label-suffix _gt --train-per-fold 5 --device cuda
Writes benchmarks/results/augmentation_study.{json,md,png} (``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DRDM_SHARED", REPO.parent / "shared"))
ARMS = ("none", "elastic", "elastic-matched", "bigaug", "drdm", "drdm-small")
ACDC_CLASSES = {1: "RV", 2: "Myo", 3: "LV"}
PAIRS = (("elastic", "none"), ("bigaug", "none"), ("drdm", "none"), ("drdm", "elastic-matched"),
         ("drdm-small", "elastic"), ("drdm", "elastic"), ("drdm", "drdm-small"), ("elastic-matched", "elastic"),
         ("drdm", "bigaug"))
TORCHIO_ARMS = ("elastic", "elastic-matched", "bigaug")
ELASTIC_DEFAULT_MM = 7.5  # TorchIO RandomElasticDeformation's default max_displacement


@dataclass
class Settings:
    """One study's configuration (``--quick`` and the default differ only in these numbers)."""

    quick: bool = False
    seeds: int = 3
    folds: int = 3
    train_per_fold: int = 2
    split_seed: int = 0
    iterations: int = 1500
    batch: int = 8
    crop: int = 128
    zoom: int = 1
    channels: tuple[int, ...] = (16, 32, 64, 128)
    res_units: int = 2
    lr: float = 1e-3
    copies: int = 12
    speed: str = "fast"
    model: str = "cmr-2d"
    elastic_draws: int = 100
    bootstrap: int = 10000
    arms: tuple[str, ...] = ARMS
    device: str = "cpu"
    threads: int = 2
    on_the_fly: bool = False
    explicit: tuple[str, ...] = ()  # the settings given on the command line (kept as given)

    @classmethod
    def for_run(cls, quick: bool) -> Settings:
        if not quick:
            return cls()
        return cls(quick=True, iterations=300, crop=128, zoom=2, channels=(8, 16, 32, 64), res_units=1, lr=2e-3,
                   copies=4, speed="faster", elastic_draws=50, bootstrap=5000)


@dataclass
class Unit:
    """A unit of the split (an ACDC slice, or a subject of ``--data``): its 2D slices and where it came from."""

    name: str
    subject: str
    images: list[np.ndarray]  # (y, x) float32 each, normalised to the 1st-99th percentiles
    labels: list[np.ndarray]  # (y, x) int64 each
    spacing: tuple[float, float]  # (sy, sx) mm
    files: list[tuple[Path, Path]] = field(default_factory=list)  # 2D NIfTI files written for drdm.augment


# -- data ---------------------------------------------------------------------------------------------------------


def normalise(image: np.ndarray) -> np.ndarray:
    """(y, x) intensities mapped so that the 1st and 99th percentiles become 0 and 1 (float32)."""
    low, high = np.percentile(image, [1, 99])
    return ((image - low) / max(high - low, 1e-6)).astype(np.float32)


def slices_of(image: sitk.Image, labels: sitk.Image) -> tuple[list[np.ndarray], list[np.ndarray], tuple[float, float]]:
    """The labelled (y, x) slices of a 2D image or 3D stack (slices along the array's first axis), raw, and the
    in-plane spacing (mm)."""
    array, label_array = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(labels)
    spacing = tuple(float(s) for s in image.GetSpacing()[:2][::-1])
    if array.ndim == 2:
        array, label_array = array[None], label_array[None]
    keep = [k for k in range(array.shape[0]) if label_array[k].any()]
    return [array[k].astype(np.float32) for k in keep], [label_array[k].astype(np.int64) for k in keep], spacing


def load_units(data: Path | None, label_suffix: str) -> tuple[list[Unit], str]:
    """The units of the split and a sentence saying what they are."""
    from drdm.physical.augmentation import find_inputs, image_stem
    from drdm.physical.io import read_image, read_labels

    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # the ACDC file's sform warning
    if data is None:
        folder = SHARED / "data" / "cmr"
        image = read_image(folder / "patient001_frame01.nii.gz")
        images, labels, spacing = slices_of(image, read_labels(folder / "patient001_frame01_gt.nii.gz", image))
        units = [Unit(f"slice{k:02d}", "patient001", [normalise(i)], [lab], spacing)
                 for k, (i, lab) in enumerate(zip(images, labels))]
        return units, (f"ACDC patient001 end-diastole (the one labelled subject in ../shared/data/cmr): {len(units)} "
                       "labelled slices, split by slice")
    units = []
    for image_path, label_path in find_inputs([data], label_suffix):
        if label_path is None:
            continue
        image = read_image(image_path)
        images, labels, spacing = slices_of(image, read_labels(label_path, image))
        if images:
            stem = image_stem(image_path)
            units.append(Unit(stem, stem, [normalise(i) for i in images], labels, spacing))
    if not units:
        raise SystemExit(f"augmentation_study: no labelled images in {data} (labels: <stem>{label_suffix}.<ext>)")
    return units, f"{data}: {len(units)} labelled subjects ({sum(len(u.images) for u in units)} slices), split by subject"


def fit_folds(settings: Settings, units: int, log: Callable[[str], None]) -> None:
    """Fewer folds (then fewer training units per fold) where the defaults need more units than the data has: each
    fold must keep a test unit, and no unit trains in two folds. Only for values the user did not set."""
    folds, per_fold = settings.folds, settings.train_per_fold
    while "folds" not in settings.explicit and settings.folds > 1 and settings.folds * settings.train_per_fold >= units:
        settings.folds -= 1
    if "train_per_fold" not in settings.explicit and settings.folds * settings.train_per_fold >= units:
        settings.train_per_fold = max(1, (units - 1) // settings.folds)
    if (folds, per_fold) != (settings.folds, settings.train_per_fold):
        log(f"{units} units: {settings.folds} fold(s) of {settings.train_per_fold} training unit(s) instead of "
            f"{folds} × {per_fold}")


def folds_of(units: list[Unit], settings: Settings) -> list[dict[str, list[int]]]:
    """Fold f: train on ``train_per_fold`` units of one fixed random order, test on all the others."""
    need = settings.folds * settings.train_per_fold
    if need >= len(units):
        raise SystemExit(f"augmentation_study: {settings.folds} folds × {settings.train_per_fold} training units need "
                         f"more than {need} units, found {len(units)}")
    order = [int(k) for k in np.random.default_rng(settings.split_seed).permutation(len(units))]
    folds = []
    for f in range(settings.folds):
        train = sorted(order[f * settings.train_per_fold:(f + 1) * settings.train_per_fold])
        folds.append({"train": train, "test": [k for k in range(len(units)) if k not in train]})
    return folds


def write_slices(units: list[Unit], indices: set[int], folder: Path) -> None:
    """The training units' slices as 2D NIfTI files (image and ``_gt`` labels) for ``drdm.augment``."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in sorted(indices):
        unit = units[k]
        unit.files = []
        for j, (image, labels) in enumerate(zip(unit.images, unit.labels)):
            stem = f"{unit.name}_{j:03d}"
            paths = (folder / f"{stem}.nii.gz", folder / f"{stem}_gt.nii.gz")
            for array, path in ((image, paths[0]), (labels.astype(np.uint8), paths[1])):
                item = sitk.GetImageFromArray(array)
                item.SetSpacing(unit.spacing[::-1])
                sitk.WriteImage(item, str(path))
            unit.files.append(paths)


# -- sizes ----------------------------------------------------------------------------------------------------------


def to_subject(image: np.ndarray, labels: np.ndarray, spacing: tuple[float, float]):
    """A TorchIO subject of a (y, x) slice: tensors (1, x, y, 1), affine with the spacing."""
    import torchio as tio

    affine = np.diag([spacing[1], spacing[0], 1.0, 1.0])
    return tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(image.T.copy())[None, ..., None], affine=affine),
                       label=tio.LabelMap(tensor=torch.from_numpy(labels.T.copy())[None, ..., None], affine=affine))


def from_subject(subject) -> tuple[np.ndarray, np.ndarray]:
    return subject["image"].data[0, ..., 0].numpy().T.copy(), subject["label"].data[0, ..., 0].numpy().T.copy()


def elastic_size(shape: tuple[int, int], spacing: tuple[float, float], max_displacement: float, draws: int,
                 seed: int = 0) -> tuple[float, float]:
    """Mean |u| (mm, over the slice) and folded fraction (det J ≤ 0) of TorchIO's ``RandomElasticDeformation``
    (defaults but ``max_displacement``) on a (y, x) grid: control points drawn as the transform draws them, the
    B-spline transform TorchIO builds from them, its field sampled on every voxel (SimpleITK); means over ``draws``
    draws. The field is linear in the control points: with the same ``seed`` the size is proportional to
    ``max_displacement``."""
    import torchio as tio
    from drdm.spatial import folding_fraction
    from torchio.data.io import nib_to_sitk

    affine = np.diag([spacing[1], spacing[0], 1.0, 1.0])
    reference = nib_to_sitk(torch.zeros((1, shape[1], shape[0], 1)), affine, force_3d=True)
    axis_mm = np.diag(np.array(reference.GetDirection()).reshape(3, 3)) * np.array(reference.GetSpacing())
    defaults = tio.RandomElasticDeformation()
    maximum = (max_displacement, max_displacement, 0.0)
    torch.manual_seed(seed)
    means, folded = [], []
    for _ in range(draws):
        points = defaults.get_params(defaults.num_control_points, maximum, defaults.num_locked_borders)
        transform = tio.ElasticDeformation(control_points=points, max_displacement=maximum).get_bspline_transform(reference)
        field = sitk.GetArrayFromImage(sitk.TransformToDisplacementField(
            transform, sitk.sitkVectorFloat64, reference.GetSize(), reference.GetOrigin(), reference.GetSpacing(),
            reference.GetDirection()))[0]  # (y, x, 3): LPS mm
        means.append(float(np.linalg.norm(field, axis=-1).mean()))
        voxels = np.stack([field[..., 1] / axis_mm[1], field[..., 0] / axis_mm[0]])  # array order (y, x), voxels
        folded.append(float(folding_fraction(torch.from_numpy(voxels)[None])[0]))
    return float(np.mean(means)), float(np.mean(folded))


# -- augmentation arms ------------------------------------------------------------------------------------------------


def brightness_contrast(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """BigAug's brightness and contrast: a random shift and a random gain about the mean."""
    mean = float(image.mean())
    return ((image - mean) * rng.uniform(0.75, 1.25) + mean + rng.uniform(-0.1, 0.1)).astype(np.float32)


def torchio_arm(arm: str, max_matched: float, probability: float = 1.0):
    """The TorchIO transform of an arm (``probability``: of the elastic arms' deformation, drawn on the fly)."""
    import torchio as tio

    if arm == "elastic":
        return tio.RandomElasticDeformation(p=probability)
    if arm == "elastic-matched":
        return tio.RandomElasticDeformation(max_displacement=(max_matched, max_matched, 0.0), p=probability)
    return tio.Compose([
        tio.RandomBlur(std=(0.25, 1.5), p=0.5),
        tio.RandomNoise(std=(0.0, 0.1), p=0.5),
        tio.RandomGamma(log_gamma=(-0.3, 0.3), p=0.5),
        tio.RandomAffine(scales=(0.8, 1.2, 0.8, 1.2, 1.0, 1.0), degrees=(0, 0, 0, 0, -20, 20), p=0.5),
        tio.RandomElasticDeformation(p=0.5),
    ])


def augmented_slice(arm: str, transform, image: np.ndarray, labels: np.ndarray, spacing: tuple[float, float],
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One draw of a TorchIO arm on a (y, x) slice (BigAug: brightness/contrast with probability 0.5 first)."""
    if arm == "bigaug" and rng.random() < 0.5:
        image = brightness_contrast(image, rng)
    return from_subject(transform(to_subject(image, labels, spacing)))


def torchio_copies(units: list[Unit], train: set[int], arm: str, transform, settings: Settings
                   ) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Per training slice (its file, as the DRDM mixes name it): the original and ``copies`` draws of a TorchIO arm,
    made once with a seed of their own, as the DRDM copies are."""
    torch.manual_seed(3000 + ARMS.index(arm))
    rng = np.random.default_rng(3000 + ARMS.index(arm))
    mixes = {}
    for k in sorted(train):
        for j, (image, labels) in enumerate(zip(units[k].images, units[k].labels)):
            mixes[str(units[k].files[j][0].resolve())] = [(image, labels)] + [
                augmented_slice(arm, transform, image, labels, units[k].spacing, rng) for _ in range(settings.copies)]
    return mixes


def drdm_copies(units: list[Unit], train: set[int], folder: Path, settings: Settings, magnitude: float | None,
                log: Callable[[str], None]) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Pre-generated DRDM copies through the product's route (``drdm.augment`` → manifest →
    :func:`drdm.transforms.augmented_items`): per original file, [(image, labels)] of the original and its copies."""
    import drdm
    from drdm.transforms import augmented_items

    inputs = [path for k in sorted(train) for path, _ in units[k].files]
    options = {"magnitudes": [magnitude]} if magnitude is not None else {}
    manifest = drdm.augment(inputs, folder, model=settings.model, label_suffix="_gt", per_level=settings.copies,
                            seed=1000 if magnitude is None else 2000, device=settings.device, speed=settings.speed,
                            qa=False, report=log, **options)
    mixes: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for item in augmented_items(manifest, originals=1, copies=settings.copies):
        image = sitk.GetArrayFromImage(sitk.ReadImage(item["image"])).astype(np.float32)
        labels = sitk.GetArrayFromImage(sitk.ReadImage(item["label"])).astype(np.int64)
        mixes.setdefault(str(Path(item["source"]).resolve()), []).append((image, labels))  # copies of normalised slices
    return mixes


# -- training and scoring ---------------------------------------------------------------------------------------------


def centre(array: np.ndarray, crop: int, zoom: int, labels: bool) -> np.ndarray:
    """The centre ``crop`` × ``crop`` of a (y, x) slice (zero-padded where smaller), downsampled by ``zoom`` (images:
    block mean; labels: the block's centre voxel)."""
    out = np.zeros((crop, crop), dtype=array.dtype)
    src = [slice(max(0, (n - crop) // 2), max(0, (n - crop) // 2) + min(n, crop)) for n in array.shape]
    dst = [slice(max(0, (crop - n) // 2), max(0, (crop - n) // 2) + min(n, crop)) for n in array.shape]
    out[dst[0], dst[1]] = array[src[0], src[1]]
    if zoom == 1:
        return out
    if labels:
        return out[zoom // 2::zoom, zoom // 2::zoom]
    return out.reshape(crop // zoom, zoom, crop // zoom, zoom).mean(axis=(1, 3))


def network(settings: Settings, classes: int) -> torch.nn.Module:
    from monai.networks.nets import UNet

    strides = (2,) * (len(settings.channels) - 1)
    return UNet(spatial_dims=2, in_channels=1, out_channels=classes + 1, channels=settings.channels, strides=strides,
                num_res_units=settings.res_units)


def train_run(arm: str, seed: int, pool: list[list[tuple[np.ndarray, np.ndarray]]], spacing: list[tuple[float, float]],
              transform, settings: Settings, classes: int) -> torch.nn.Module:
    """Train one network. ``pool[i]``: training slice ``i``'s original and its copies, drawn from uniformly; with a
    ``transform`` (``--on-the-fly``) the original alone, deformed by the transform as it is drawn."""
    from monai.losses import DiceCELoss

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = network(settings, classes).to(settings.device)
    optimiser = torch.optim.Adam(net.parameters(), lr=settings.lr)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    for _ in range(settings.iterations):
        images, labels = [], []
        for _ in range(settings.batch):
            i = int(rng.integers(len(pool)))
            image, label = pool[i][int(rng.integers(len(pool[i])))]
            if transform is not None:
                image, label = augmented_slice(arm, transform, image, label, spacing[i], rng)
            images.append(centre(image, settings.crop, settings.zoom, False))
            labels.append(centre(label, settings.crop, settings.zoom, True))
        x = torch.from_numpy(np.stack(images)[:, None]).to(settings.device)
        y = torch.from_numpy(np.stack(labels)[:, None]).to(settings.device)
        optimiser.zero_grad()
        loss = loss_function(net(x), y)
        loss.backward()
        optimiser.step()
    return net.eval()


def dice_scores(net: torch.nn.Module, units: list[Unit], test: list[int], settings: Settings,
                classes: list[int]) -> dict[str, float]:
    """Dice per class, pooled over each test subject's slices, averaged over test subjects."""
    per_subject: dict[str, np.ndarray] = {}  # subject -> (classes, 3): overlap, predicted, truth voxel counts
    with torch.no_grad():
        for k in test:
            unit = units[k]
            counts = per_subject.setdefault(unit.subject, np.zeros((len(classes), 3)))
            for image, labels in zip(unit.images, unit.labels):
                x = torch.from_numpy(centre(image, settings.crop, settings.zoom, False)[None, None]).to(settings.device)
                predicted = net(x).argmax(1)[0].cpu().numpy()
                truth = centre(labels, settings.crop, settings.zoom, True)
                for c, value in enumerate(classes):
                    counts[c] += [np.sum((predicted == value) & (truth == value)), np.sum(predicted == value),
                                  np.sum(truth == value)]
    scores = np.array([[2 * o / (p + t) if p + t else 1.0 for o, p, t in counts] for counts in per_subject.values()])
    return {str(value): float(s) for value, s in zip(classes, scores.mean(axis=0))}


# -- statistics -------------------------------------------------------------------------------------------------------


def bootstrap_interval(values: np.ndarray, resamples: int, rng: np.random.Generator,
                       clusters: np.ndarray | None = None) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean of ``values``; with ``clusters`` (a fold per value) the folds are
    resampled, then the values within each drawn fold."""
    if clusters is None:
        means = values[rng.integers(len(values), size=(resamples, len(values)))].mean(axis=1)
    else:
        groups = [values[clusters == c] for c in np.unique(clusters)]
        means = np.empty(resamples)
        for b in range(resamples):
            drawn = [groups[g] for g in rng.integers(len(groups), size=len(groups))]
            means[b] = np.concatenate([g[rng.integers(len(g), size=len(g))] for g in drawn]).mean()
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def summarise(runs: list[dict], arms: tuple[str, ...], names: dict[str, str], resamples: int) -> tuple[dict, list]:
    """Per arm and class: mean and sd over runs; per pair of arms (same fold and seed): the mean difference, its
    bootstrap intervals (over runs, clustered by fold) and how many runs the first arm won."""
    keys = [*names, "mean"]
    table = {arm: {key: {"mean": float(np.mean([r["dice"][key] for r in runs if r["arm"] == arm])),
                         "sd": float(np.std([r["dice"][key] for r in runs if r["arm"] == arm]))} for key in keys}
             for arm in arms}
    by = {(r["arm"], r["fold"], r["seed"]): r["dice"] for r in runs}
    pairs = []
    rng = np.random.default_rng(0)
    for a, b in [p for p in PAIRS if p[0] in arms and p[1] in arms]:
        matched = sorted((f, s) for arm, f, s in by if arm == a and (b, f, s) in by)
        folds = np.array([f for f, _ in matched])
        for key in keys:
            d = np.array([by[(a, f, s)][key] - by[(b, f, s)][key] for f, s in matched])
            pairs.append({"a": a, "b": b, "class": key, "runs": len(d), "mean": float(d.mean()),
                          "ci95": bootstrap_interval(d, resamples, rng),
                          "ci95_by_fold": bootstrap_interval(d, resamples, rng, folds),
                          "a_better": int((d > 0).sum())})
    return table, pairs


# -- the study ------------------------------------------------------------------------------------------------------


def measure_sizes(units: list[Unit], train: set[int], settings: Settings, drdm_folder: Path) -> dict[str, float]:
    """The elastic defaults' mean |u| on the training slices, DRDM's own (from the manifest), the matched
    ``max_displacement`` and what it gives, and the folded fraction of each."""
    shapes = {(units[k].images[0].shape, units[k].spacing) for k in sorted(train)}

    def elastic(maximum: float) -> tuple[float, float]:
        sizes = [elastic_size(shape, spacing, maximum, settings.elastic_draws) for shape, spacing in shapes]
        return float(np.mean([m for m, _ in sizes])), float(np.mean([f for _, f in sizes]))

    default, folded = elastic(ELASTIC_DEFAULT_MM)
    sizes = {"elastic_default_mean_mm": default, "elastic_default_folded_fraction": folded}
    copies = manifest_samples(drdm_folder)
    if copies:
        sizes["drdm_own_mean_mm"] = float(np.mean([c.mean_mm for c in copies]))
        sizes["drdm_own_folded_fraction"] = float(np.mean([c.folding_fraction for c in copies]))
        matched = ELASTIC_DEFAULT_MM * sizes["drdm_own_mean_mm"] / default
        sizes["elastic_matched_max_displacement_mm"] = matched
        sizes["elastic_matched_mean_mm"], sizes["elastic_matched_folded_fraction"] = elastic(matched)
    return sizes


def manifest_samples(folder: Path) -> list:
    """The finished samples of ``folder``'s manifest (none when it has none)."""
    from drdm.physical.augmentation import read_manifest

    return read_manifest(folder) if (folder / "manifest.csv").is_file() else []


def run_study(settings: Settings, data: Path | None, label_suffix: str, work: Path, out: Path,
              log: Callable[[str], None] = print) -> dict:
    """Everything: split, copies, sizes, every (arm, fold, seed) run, statistics, and the files under ``out``."""
    started, started_cpu, load = time.perf_counter(), time.process_time(), os.getloadavg()
    work = work.resolve()
    torch.set_num_threads(settings.threads)
    warnings.filterwarnings("ignore", message=".*folding may occur.*")  # TorchIO's 2D z-axis warning
    units, description = load_units(data, label_suffix)
    fit_folds(settings, len(units), log)
    folds = folds_of(units, settings)
    train = {k for fold in folds for k in fold["train"]}
    write_slices(units, train, work / "slices")
    values = sorted({int(v) for u in units for lab in u.labels for v in np.unique(lab) if v > 0})
    names = {str(v): ACDC_CLASSES[v] if data is None else f"label {v}" for v in values}
    phases: dict[str, float] = {}
    mixes, sizes = {}, {}
    t = time.perf_counter()
    if "drdm" in settings.arms or "elastic-matched" in settings.arms:
        mixes["drdm"] = drdm_copies(units, train, work / "drdm", settings, None, log)
    phases["drdm_copies_s"] = time.perf_counter() - t
    t = time.perf_counter()
    sizes = measure_sizes(units, train, settings, work / "drdm")
    phases["sizes_s"] = time.perf_counter() - t
    t = time.perf_counter()
    if "drdm-small" in settings.arms:
        mixes["drdm-small"] = drdm_copies(units, train, work / "drdm-small", settings, sizes["elastic_default_mean_mm"],
                                          log)
        small = manifest_samples(work / "drdm-small")
        sizes["drdm_small_mean_mm"] = float(np.mean([c.mean_mm for c in small]))
        sizes["drdm_small_folded_fraction"] = float(np.mean([c.folding_fraction for c in small]))
    phases["drdm_small_copies_s"] = time.perf_counter() - t
    log(f"sizes: {json.dumps(sizes)}")
    t = time.perf_counter()
    on_the_fly = {}
    for arm in [a for a in settings.arms if a in TORCHIO_ARMS]:
        transform = torchio_arm(arm, sizes.get("elastic_matched_max_displacement_mm", 0.0),
                                settings.copies / (settings.copies + 1) if settings.on_the_fly else 1.0)
        if settings.on_the_fly:
            on_the_fly[arm] = transform
        else:
            mixes[arm] = torchio_copies(units, train, arm, transform, settings)
    phases["torchio_copies_s"] = time.perf_counter() - t
    runs = []
    t = time.perf_counter()
    for f, fold in enumerate(folds):
        for arm in settings.arms:
            pool, spacing = [], []
            for k in fold["train"]:
                for j, (image, labels) in enumerate(zip(units[k].images, units[k].labels)):
                    pool.append(mixes[arm][str(units[k].files[j][0].resolve())] if arm in mixes else [(image, labels)])
                    spacing.append(units[k].spacing)
            for seed in range(settings.seeds):
                run_started = time.perf_counter()
                net = train_run(arm, seed, pool, spacing, on_the_fly.get(arm), settings, len(values))
                dice = dice_scores(net, units, fold["test"], settings, values)
                dice["mean"] = float(np.mean(list(dice.values())))
                runs.append({"arm": arm, "fold": f, "seed": seed, "dice": dice,
                             "seconds": time.perf_counter() - run_started})
                log(f"fold {f} {arm:16s} seed {seed}: " + " ".join(f"{k} {v:.3f}" for k, v in dice.items()))
    phases["training_s"] = time.perf_counter() - t
    table, pairs = summarise(runs, settings.arms, names, settings.bootstrap)
    report = {
        "settings": {**asdict(settings), "data": str(data) if data else "ACDC patient001 (../shared/data/cmr)"},
        "data": description, "classes": names,
        "folds": [{"train": [units[k].name for k in fold["train"]], "test": [units[k].name for k in fold["test"]]}
                  for fold in folds],
        "sizes": sizes, "runs": runs, "table": table, "pairs": pairs,
        "time": {"wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - started_cpu, **phases,
                 "load_average_before": load, "load_average_after": os.getloadavg()},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "")},
    }
    write_report(report, out)
    return report


# -- report ---------------------------------------------------------------------------------------------------------


def write_report(report: dict, out: Path) -> None:
    """``out.json``, ``out.md`` and ``out.png`` (Dice per arm, one point per run)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text("\n".join(markdown(report)) + "\n", encoding="utf-8")
    plot(report, out.with_suffix(".png"))


def markdown(report: dict) -> list[str]:
    s, names, sizes, tm = report["settings"], report["classes"], report["sizes"], report["time"]
    keys = [*names, "mean"]
    label = {**names, "mean": "mean"}
    lines = [f"# Augmentation study{' (--quick)' if s['quick'] else ''}: few-shot segmentation, Dice by arm", "",
             f"Data: {report['data']}. {s['folds']} folds × {s['seeds']} seeds; each fold trains on "
             f"{s['train_per_fold']} units and tests on the others:", ""]
    lines += [f"- fold {f}: train {', '.join(fold['train'])}; test {', '.join(fold['test'])}"
              for f, fold in enumerate(report["folds"])]
    lines += ["", f"MONAI UNet {tuple(s['channels'])}, {s['res_units']} residual unit(s), DiceCE, Adam {s['lr']:g}, "
              f"{s['iterations']} iterations × batch {s['batch']}, centre crop {s['crop']} px / zoom {s['zoom']}; "
              f"{s['copies']} copies per training slice and arm, drawn uniformly with the original"
              f"{' (TorchIO arms on the fly)' if s['on_the_fly'] else ''}; DRDM: {s['model']}, speed {s['speed']} "
              "(drdm.augment → manifest → drdm.transforms.augmented_items).", "",
              "Sizes (mean |u| over the slice, mm) and folded fractions (det J ≤ 0): "
              + ", ".join(f"{k} {v:.3g}" for k, v in sizes.items()) + ".", "",
              "| arm | " + " | ".join(label[k] for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for arm, row in report["table"].items():
        lines.append(f"| {arm} | " + " | ".join(f"{row[k]['mean']:.3f} ± {row[k]['sd']:.3f}" for k in keys) + " |")
    lines += ["", "Paired differences (first arm − second, same fold and seed; Dice points × 100), mean [95 % bootstrap "
              "interval over runs] {clustered by fold}, and runs the first arm won:", "",
              "| pair | " + " | ".join(label[k] for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for a, b in dict.fromkeys((p["a"], p["b"]) for p in report["pairs"]):
        cells = []
        for k in keys:
            p = next(p for p in report["pairs"] if (p["a"], p["b"], p["class"]) == (a, b, k))
            cells.append(f"{100 * p['mean']:+.1f} [{100 * p['ci95'][0]:+.1f}, {100 * p['ci95'][1]:+.1f}] "
                         f"{{{100 * p['ci95_by_fold'][0]:+.1f}, {100 * p['ci95_by_fold'][1]:+.1f}}} "
                         f"{p['a_better']}/{p['runs']}")
        lines.append(f"| {a} − {b} | " + " | ".join(cells) + " |")
    lines += ["", f"Time: {tm['wall_s'] / 60:.1f} min wall, {tm['cpu_s'] / 60:.1f} min CPU (DRDM copies "
              f"{(tm['drdm_copies_s'] + tm['drdm_small_copies_s']) / 60:.1f} min, training {tm['training_s'] / 60:.1f} "
              f"min); load average {tm['load_average_before'][0]:.1f} before, {tm['load_average_after'][0]:.1f} after "
              f"on {report['machine']['cores']} cores ({report['machine']['torch_threads']} torch threads).", ""]
    return lines


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {**report["classes"], "mean": "mean over classes"}
    arms = list(report["table"])
    figure, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.6), sharey=True)
    colours = plt.cm.tab10.colors
    for ax, (key, title) in zip(np.atleast_1d(axes), names.items()):
        for i, arm in enumerate(arms):
            runs = [r for r in report["runs"] if r["arm"] == arm]
            jitter = np.linspace(-0.18, 0.18, max(len(runs), 1))
            ax.scatter([i + j for j in jitter[:len(runs)]], [r["dice"][key] for r in runs], s=14,
                       c=[colours[r["fold"] % 10] for r in runs], alpha=0.8)
            ax.hlines(report["table"][arm][key]["mean"], i - 0.3, i + 0.3, color="black")
        ax.set_title(title)
        ax.set_xticks(range(len(arms)), arms, rotation=45, ha="right")
        ax.grid(axis="y", alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("Dice")
    s = report["settings"]
    figure.suptitle(f"{report['data'].split(':')[0]}: Dice per arm, {s['folds']} folds × {s['seeds']} seeds "
                    "(points: runs, colour: fold; bar: mean over runs)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the quick configuration (≤ 30 min on 2 CPU cores)")
    parser.add_argument("--data", type=Path, help="a folder of labelled 2D images or stacks (default: the ACDC subject)")
    parser.add_argument("--label-suffix", default="_gt")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "augmentation_study",
                        help="results stem: writes STEM.json, STEM.md, STEM.png")
    parser.add_argument("--work", type=Path, help="folder for slices and DRDM copies (kept; reused: augment resumes)")
    parser.add_argument("--seeds", type=int, help="training seeds per fold and arm (3)")
    parser.add_argument("--folds", type=int, help="folds (3)")
    parser.add_argument("--train-per-fold", type=int, help="training units (slices or subjects) per fold (2)")
    parser.add_argument("--split-seed", type=int, help="seed of the order the folds take their units from (0)")
    parser.add_argument("--iterations", type=int, help="training iterations (quick 300, default 1500)")
    parser.add_argument("--batch", type=int, help="slices per iteration (8)")
    parser.add_argument("--crop", type=int, help="centre crop in pixels of the slices' grid (128)")
    parser.add_argument("--zoom", type=int, help="downsampling of the crop (quick 2, default 1)")
    parser.add_argument("--copies", type=int, help="copies per training slice and arm (quick 4, default 12)")
    parser.add_argument("--elastic-draws", type=int, help="draws that measure an elastic size (quick 50, default 100)")
    parser.add_argument("--bootstrap", type=int, help="bootstrap resamples (quick 5000, default 10000)")
    parser.add_argument("--threads", type=int, help="torch threads (2)")
    parser.add_argument("--lr", type=float, help="Adam's learning rate (quick 2e-3, default 1e-3)")
    parser.add_argument("--speed", choices=("faithful", "fast", "faster"))
    parser.add_argument("--model", help="the DRDM model of the copies (default cmr-2d)")
    parser.add_argument("--device", help="cpu or cuda (training and copies)")
    parser.add_argument("--arms", nargs="+", choices=ARMS)
    parser.add_argument("--on-the-fly", action="store_true",
                        help="TorchIO arms: draw a new deformation for every training sample (with probability "
                             "copies / (copies + 1)) instead of copies made once")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    settings = Settings.for_run(args.quick)
    for name in ("seeds", "folds", "train_per_fold", "split_seed", "iterations", "batch", "crop", "zoom", "copies",
                 "elastic_draws", "bootstrap", "threads", "lr", "speed", "model", "device"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
            settings.explicit += (name,)
    if args.arms:
        settings.arms = tuple(args.arms)
    settings.on_the_fly = args.on_the_fly
    if settings.crop % settings.zoom or settings.crop // settings.zoom % 2 ** (len(settings.channels) - 1):
        raise SystemExit(f"augmentation_study: crop {settings.crop} / zoom {settings.zoom} must be a whole multiple of "
                         f"{2 ** (len(settings.channels) - 1)} (the U-Net's downsampling)")
    if args.work is not None:
        return run_study(settings, args.data, args.label_suffix, args.work, args.out)
    with tempfile.TemporaryDirectory(prefix="augmentation_study_") as work:
        return run_study(settings, args.data, args.label_suffix, Path(work), args.out)


if __name__ == "__main__":
    report = main()
    print("\n".join(markdown(report)))
    sys.exit(0)
