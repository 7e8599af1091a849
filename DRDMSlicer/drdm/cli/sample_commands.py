"""``drdm generate``, ``augment``, ``synthesize`` and ``demo``: the settings from the flags, the model, the engine's
functions, one line per sample written."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..model_store.choice import is_auto
from ..model_store.loading import load_for_image, load_model
from ..models import DRDMModel
from ..physical.augment_data_set import augment_data_set
from ..physical.augmentation import find_inputs, image_stem, parse_shard
from ..physical.deform import add_inverse, deform_images
from ..physical.io import (
    InputError,
    check_writable,
    read_image,
    read_labels,
    staged_directory,
)
from ..physical.sample_folder import sample_name, sample_title, write_sample
from ..registration.synthesis import synthesize_pair
from ..settings import (
    SETTING_NAMES,
    DeformationSettings,
)
from ..training.phantoms import cardiac_phantom, cardiac_short_axis_phantom
from ..training.torchrun import process_device, torchrun_shard
from .progress_bar import progress_bar


def generate_samples(image: sitk.Image, labels: sitk.Image | None, model: DRDMModel, args: argparse.Namespace,
                     stem: str, out: Path) -> list[Path]:
    """Run ``count`` deformations and write one folder each; returns the folders."""
    settings = settings_from_args(args).for_model(model)
    level = settings.level
    results = deform_images(model, image, labels, settings=settings, slice_axis=args.slice_axis,
                            batch=True if getattr(args, "batched", False) else None,
                            progress=progress_bar("sample 1" if args.count == 1 else f"samples 1-{args.count}"))
    folders = []
    for seed, result in zip(settings.seeds(), results):
        if getattr(args, "inverse", False):
            add_inverse(result, image)
        final = out / sample_name(stem, level, seed, settings.magnitude)
        with staged_directory(final) as staging:
            write_sample(staging, image, labels, result, sample_title(stem, result.statistics))
        s = result.statistics
        print(f"{final}: mean |u| {s['mean_mm']:.2f} mm ({s['mean_percent_fov']:.1f} % FOV), p95 {s['p95_mm']:.2f} mm, "
              f"folding {100 * s['folding_fraction']:.3f} %, det J [{s['det_min']:.3f}, {s['det_max']:.3f}], "
              f"{s['seconds']:.1f} s{_inverse_text(s)}{_slices_text(s)}{_steering_text(s)}")
        folders.append(final)
    return folders


def settings_from_args(args: argparse.Namespace) -> DeformationSettings:
    """The one :class:`DeformationSettings` of a command, from its flags (a flag a command lacks: the default)."""
    values = {name: getattr(args, name) for name in SETTING_NAMES if getattr(args, name, None) is not None}
    values["keep"], values["only"] = tuple(values.get("keep", ())), tuple(values.get("only", ()))
    return DeformationSettings(**values)


def _steering_text(stats: dict) -> str:
    text = ""
    if "size_reached_mm" in stats and stats.get("magnitude_mm") is not None:
        text += f", size {stats['size_reached_mm']:.2f} mm asked {stats['magnitude_mm']:g} (own {stats['natural_mm']:.2f})"
    if "max_mm_in_kept" in stats:
        text += f", kept structures move at most {stats['max_mm_in_kept']:.3f} mm"
    if "max_mm_outside_region" in stats:
        text += f", outside the region at most {stats['max_mm_outside_region']:.3f} mm"
    return text


def _slices_text(stats: dict) -> str:
    if "through_plane_roughness_ratio" not in stats:
        return ""
    return f", {stats['slices']} slices: through-plane / in-plane roughness {stats['through_plane_roughness_ratio']:.2f}"


def _inverse_text(stats: dict) -> str:
    if "inverse_consistency_p95_mm" not in stats:
        return ""
    return (f", inverse consistency p95 {stats['inverse_consistency_p95_mm']:.3f} mm "
            f"(reverse {stats['inverse_consistency_reverse_p95_mm']:.3f} mm)")


def _check_inverse(args: argparse.Namespace) -> None:
    if args.inverse and args.mode != "diffeomorphic":
        raise InputError("--inverse needs --mode diffeomorphic (reference-mode fields fold: they have no inverse)")


def load_model_for(image: sitk.Image, args: argparse.Namespace) -> DRDMModel:
    """The model of ``--model`` (``auto``: :func:`drdm.model_store.choice.choose_model` for ``image``), announced in one line."""
    model, choice = load_for_image(args.model, image, process_device(args.device))
    print(choice.line(model.name))
    return model


def _image_command_inputs(args: argparse.Namespace) -> tuple[sitk.Image, sitk.Image | None, Path, DRDMModel]:
    """What ``generate`` and ``synthesize`` start from: the image, its labels, the output folder, the model."""
    _check_inverse(args)
    image = read_image(args.image)
    labels = read_labels(args.labels, image) if args.labels else None
    out = check_writable(args.out)
    return image, labels, out, load_model_for(image, args)


def run_generate(args: argparse.Namespace) -> int:
    """``drdm generate``: deform one image (and labels) ``--count`` times."""
    image, labels, out, model = _image_command_inputs(args)
    generate_samples(image, labels, model, args, image_stem(Path(args.image)), out)
    return 0


def work_shard(text: str) -> tuple[int, int]:
    """``--shard i/n``, or under torchrun (several processes) ``RANK/WORLD_SIZE``; both at once is an error."""
    given = parse_shard(text)
    launched = torchrun_shard()
    if launched is None:
        return given
    if given != (0, 1):
        raise InputError(f"--shard {text} and torchrun (WORLD_SIZE {launched[1]}) both split the jobs: use one of them")
    return launched


def run_augment(args: argparse.Namespace) -> int:
    """``drdm augment``: Algorithm 3 over a data set and a set of levels, resumable and shardable (``--shard`` or
    torchrun: :mod:`drdm.training.torchrun`); the loop is :func:`drdm.physical.augment_data_set.augment_data_set`."""
    shard = work_shard(args.shard)
    pairs = find_inputs(args.inputs, args.label_suffix)
    out = check_writable(args.out)
    model, choice = load_for_image(args.model, lambda: read_image(pairs[0][0]), process_device(args.device))
    if is_auto(args.model):
        print(choice.line(model.name))
    written = augment_data_set(model, pairs, out, settings=settings_from_args(args), levels=args.levels,
                               per_level=args.per_level, shard=shard, qa=not args.no_qa,
                               progress=progress_bar("augment", unit="sample"), magnitudes=args.magnitudes)
    print(f"manifest: {written}")
    return 0


def run_synthesize(args: argparse.Namespace) -> int:
    """``drdm synthesize``: Algorithm 4, moving/fixed pairs with the ground-truth transform."""
    image, labels, out, model = _image_command_inputs(args)
    rank, world = torchrun_shard() or (0, 1)
    if world > 1 and args.seed is None:
        raise InputError("under torchrun, give --seed: every process must number the pairs alike")
    settings = settings_from_args(args).for_model(model)
    level_aug = settings.level
    level_syn = args.level_syn if args.level_syn is not None else level_aug
    stem = image_stem(Path(args.image))
    for k in range(rank, args.count, world):  # under torchrun: pair k is made by process k mod WORLD_SIZE
        seed = settings.seed + 2 * k
        final = out / f"{stem}_pair_T{level_aug}-{level_syn}_seed{seed}"
        pair = synthesize_pair(model, image, labels, settings=settings.but(seed=seed, count=1), level_syn=level_syn,
                               progress=progress_bar(f"pair {k + 1}/{args.count}"))
        pair.save(final, inverse=args.inverse, title=f"{stem}: moving (left) and fixed (second), seed {seed}")
        syn = pair.synthesis
        s = syn.statistics
        print(f"{final}: ground truth mean |u| {s['mean_mm']:.2f} mm, folding {100 * s['folding_fraction']:.3f} %"
              f"{_inverse_text(s)}")
    return 0


def demo_phantom(model: DRDMModel) -> tuple[sitk.Image, sitk.Image]:
    """The demo's input for ``model``: a cardiac short-axis phantom slice (2D models; the bundled ``cmr-2d``
    recovers its deformations, recovery error < 1) or the 3D cardiac phantom, 1.25 mm voxels, with labels."""
    if model.ndims == 2:
        phantom, phantom_labels = cardiac_short_axis_phantom(model.size, seed=0)
    else:
        phantom, phantom_labels = cardiac_phantom(model.size, 3, seed=0)
    image = sitk.GetImageFromArray(phantom[0, 0].numpy())
    labels = sitk.GetImageFromArray(phantom_labels[0, 0].numpy().astype(np.uint8))
    for item in (image, labels):
        item.SetSpacing((1.25,) * model.ndims)
    return image, labels


def run_demo(args: argparse.Namespace) -> int:
    """``drdm demo``: ``generate`` on a cardiac phantom with the default model (the bundled ``cmr-2d``)."""
    model = load_model(None if is_auto(args.model) else args.model, args.device)
    image, labels = demo_phantom(model)
    out = check_writable(args.out)
    kind = "learned recovery" if model.learned else "random field only, no learned recovery"
    print(f"model: {model.name} ({model.ndims}D, grid {model.size}, preset {model.noise_preset}, {kind})")
    args.count, args.slice_axis = 1, None
    stem = "phantom"
    for old in out.glob(f"{stem}_T*"):
        if old.is_dir() and (old / "stats.json").is_file():  # a previous demo run: replace it
            shutil.rmtree(old)
    folders = generate_samples(image, labels, model, args, stem, out)
    print(f"QA picture: {folders[0] / 'qa.png'}")
    return 0
