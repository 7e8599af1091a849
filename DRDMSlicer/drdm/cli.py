"""The ``drdm`` command line (``python -m drdm`` too).

Every failure the user can cause ends in one ``drdm: error: …`` line and exit status 2; Ctrl-C ends with
status 130. Output folders appear only when complete (built under a temporary name, then renamed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import out_of_memory_as_error
from .model_store.choice import AUTO, is_auto
from .model_store.loading import load_for_image, load_model
from .models import DRDMModel
from .physical.augment_data_set import augment_data_set
from .physical.augmentation import find_inputs, image_stem, parse_shard
from .physical.deform import add_inverse, deform_images
from .physical.field_summary import transform_jacobian
from .physical.io import (
    InputError,
    check_writable,
    read_image,
    read_labels,
    staged_directory,
    write_image,
)
from .physical.sample_folder import sample_name, sample_title, write_sample
from .registration.synthesis import synthesize_pair
from .sampler import GenerationCancelled
from .settings import (
    DEFAULTS,
    DEVICES,
    INTERPOLATIONS,
    LABEL_METHODS,
    MODES,
    PRECISIONS,
    SETTING_NAMES,
    SLICE_MODES,
    SPEEDS,
    VERSION,
    DeformationSettings,
)
from .training.phantoms import cardiac_phantom, cardiac_short_axis_phantom
from .training.torchrun import process_device, torchrun_shard


def progress_bar(description: str, unit: str = "step"):
    """A ``progress(step, total)`` callback drawing a tqdm bar with ETA."""
    from tqdm import tqdm

    bar = None

    def update(step: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=description, unit=unit, leave=False, file=sys.stderr)
        bar.update(step - bar.n)
        if step == total:
            bar.close()

    return update


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


def run_generate(args: argparse.Namespace) -> int:
    """``drdm generate``: deform one image (and labels) ``--count`` times."""
    _check_inverse(args)
    image = read_image(args.image)
    labels = read_labels(args.labels, image) if args.labels else None
    out = check_writable(args.out)
    model = load_model_for(image, args)
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
    _check_inverse(args)
    image = read_image(args.image)
    labels = read_labels(args.labels, image) if args.labels else None
    out = check_writable(args.out)
    model = load_model_for(image, args)
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


def run_jacobian(args: argparse.Namespace) -> int:
    """``drdm jacobian``: det J map and statistics of any ITK displacement-field transform."""
    reference = read_image(args.reference, "reference image")
    out = Path(args.out)
    check_writable(out.parent)
    image, stats = transform_jacobian(args.transform, reference)
    write_image(image, out)
    print(json.dumps(stats, indent=2))
    print(f"det J map written to {out}", file=sys.stderr)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """``drdm evaluate``: score each pair's predicted transform against its ground truth; write the report."""
    from .registration.evaluation import evaluate

    report = evaluate(args.pairs, args.predicted, args.out)
    pairs = len({row["pair"] for row in report.rows})
    flagged = f", {len(report.warnings)} with a direction warning" if report.warnings else ""
    print(f"{pairs} pairs scored{flagged}: {report.out / 'summary.md'}, {report.out / 'results.csv'}")
    return 0


def print_model_list() -> None:
    """``drdm models list``: every known model, what it is, whether it is offered, where it comes from, its sha256
    prefix, licence and recovery-error table."""
    from .model_store.download import cache_folder
    from .model_store.listing import list_models

    models = list_models()
    header = ("name", "state", "dims", "T", "rec. error", "offered", "sha256", "licence", "source")
    rows = [(m.name, m.state, m.dims, m.steps, m.error, "yes" if m.offered else "no", m.sha256, m.licence, m.source)
            for m in models]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header) - 1)]
    for row in [header] + rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])
    print("rec. error: summary of the measured recovery error, 0 perfect, 1 = no recovery (models at 1 or more "
          "are not offered); random-field-2d/3d are the random field alone, with no learned recovery")
    for m in models:
        print(f"{m.name}: {m.description}")
    for m in (m for m in models if m.table):
        print(f"{m.name}: recovery error at t = {' / '.join(str(t) for t in m.table.get('levels', []))}:")
        for row in m.table.get("rows", []):
            values = " ".join(f"{v:.3f}" for v in row.get("errors", []))
            print(f"  {values}  mean {row.get('mean', float('nan')):.3f}  {row.get('data', '')}")
    print(f"cache: {cache_folder()}")


def run_models(args: argparse.Namespace) -> int:
    """``drdm models list | fetch NAME | verify NAME``: the model registry and cache."""
    from .model_store.download import cached_path, fetch, verify
    from .model_store.importing import import_checkpoint
    from .model_store.registry import entry

    if args.action == "list":
        print_model_list()
        return 0
    if not args.name:
        raise ValueError(f"drdm models {args.action} needs a model {'file' if args.action == 'import' else 'name'}")
    if args.action == "import":
        weights, metadata = import_checkpoint(args.name, name=args.as_name, force=args.force)
        print(f"imported {args.name} as {weights.stem!r}: {weights} + {metadata.name} (use --model {weights.stem})")
        return 0
    if args.action == "fetch":
        from tqdm import tqdm

        item = entry(args.name)
        if item.bundled or not item.learned or not item.available:  # nothing to download: a path or a clear error
            print(f"{args.name}: {fetch(args.name)} (bundled, sha256 verified)")
            return 0

        with tqdm(unit="B", unit_scale=True, desc=args.name, file=sys.stderr) as bar:
            def progress(done: int, total: int | None) -> None:
                bar.total = total
                bar.update(done - bar.n)

            path = fetch(args.name, progress=progress, url=args.url)
        check = "git blob id verified, converted to the project's format" if item.converted else "sha256 verified"
        print(f"{args.name}: {path} ({check})")
        return 0
    ok = verify(args.name)
    where = cached_path(args.name) if entry(args.name).learned else "built in, no file"
    print(f"{args.name}: {'ok' if ok else 'missing or modified'} ({where})")
    return 0 if ok else 1


def run_train(args: argparse.Namespace) -> int:
    """``drdm train``: Algorithm 1 on image files or procedural phantoms (resumable, torchrun-aware)."""
    import shlex

    from tqdm import tqdm

    from .training.initialisation import training_config
    from .training.loop import train

    config = training_config(
        args.out, args.data, ndims=args.dims, size=args.size, levels=args.levels, batch=args.batch,
        lr=args.lr, steps=args.steps, seed=args.seed, device=args.device, amp=args.amp, val_fraction=args.val_fraction,
        val_every=args.val_every, val_samples=args.val_samples, checkpoint_every=args.checkpoint_every,
        log_every=args.log_every, regulariser=args.regulariser, width=args.width, rec_num=args.rec_num,
        noise_preset=args.noise_preset, control_size=args.control_size or 0, phantoms=args.phantoms,
        phantom_texture=args.phantom_texture, init=args.init or "", zero_init=not args.no_zero_init,
        workers=args.workers, channels_last=args.channels_last, compile=args.compile, cache=args.cache or "",
        augment=not args.no_augment, name=args.name,
        command="drdm train " + shlex.join(sys.argv[2:] if args.argv is None else args.argv[1:]))
    main_process = int(os.environ.get("RANK", "0")) == 0
    bar = tqdm(total=config.steps, desc=f"train {config.name}", unit="step", file=sys.stderr,
               disable=not main_process or args.quiet)

    def progress(step: int, total: int, values: dict) -> None:
        bar.n = step
        bar.set_postfix(loss=f"{values['loss']:.4f}", rel_err=f"{values['relative_error']:.3f}", refresh=False)
        bar.refresh()

    try:
        result = train(config, resume=args.resume, progress=progress)
    finally:
        bar.close()
    if main_process:
        validation = "" if result.validation_error is None else f", validation relative error {result.validation_error:.3f}"
        print(f"trained {result.steps} steps in {result.seconds:.1f} s (last loss {result.last_loss:.4f}{validation})")
        print(f"model: {result.weights} + {result.metadata.name}; metrics: {Path(config.out) / 'metrics.csv'}")
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


WEB_INSTALL_HINT = "pip install 'drdm[web]'  (from a checkout: pip install -e '.[web]')"


def run_web(args: argparse.Namespace) -> int:
    """``drdm web``: the browser app on the Slicer core (needs the ``web`` extra)."""
    import importlib.util

    if importlib.util.find_spec("trame_slicer") is None or importlib.util.find_spec("drdm_web") is None:
        raise InputError(f"drdm web needs the web extra (trame-slicer); install it with: {WEB_INSTALL_HINT}")
    if args.volume:
        read_image(args.volume, "volume")  # a clear error before the server starts
    from drdm_web.main import serve  # a front end: imported only for this command

    serve(args.volume, segmentation=args.segmentation, model=args.model, host=args.host, port=args.port,
          export_dir=args.export_dir, device=args.device, timeout=args.timeout, secret_file=args.secret_file,
          data_dir=args.data_dir, max_upload_mb=args.max_upload_mb, idle_minutes=args.idle_minutes,
          access_log=args.access_log)
    return 0


AUTO_HELP = ("auto (default): cmr-2d for a 2D image or a stack of thick slices (largest spacing >= 2x the smallest); "
             "lct-3d when downloaded, else random-field-3d, for a near-isotropic or CT-like 3D volume; $DRDM_MODEL wins")


def _add_slices_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slices", choices=SLICE_MODES, default=DEFAULTS.slices,
                        help="2D model on a 3D volume: coherent (default: one deformation smooth through the slices) or "
                             "independent (each slice its own deformation, the authors' way, for slice-wise training data)")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=AUTO,
                        help="model name (cmr-2d, lct-3d, random-field-2d, random-field-3d, a cached name), file "
                             f"(.safetensors, .json, .pth) or {AUTO_HELP}")
    parser.add_argument("--level", type=int, help=LEVEL_HELP)
    parser.add_argument("--seed", type=int, help="random seed of the first sample (default: random, recorded in stats.json)")
    parser.add_argument("--mode", choices=MODES, default=DEFAULTS.mode,
                        help=f"diffeomorphic (topology preserving) or reference (the authors' sampler); default {DEFAULTS.mode}")
    parser.add_argument("--speed", choices=SPEEDS, default=DEFAULTS.speed,
                        help="fast (20 network calls, about 4x faster), faster (10 calls, about 8x faster; both keep "
                             "mean and p95 |u| within 10 %% of faithful, without folding) or faithful (the reference's 80); "
                             f"default {DEFAULTS.speed}")
    parser.add_argument("--device", choices=DEVICES, default=DEFAULTS.device)
    parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULTS.precision,
                        help="the network's float32 arithmetic on an NVIDIA GPU: exact (default: TF32 off, the reference "
                             "within 1e-5) or tf32 (TF32 allowed: 1e-4 from the reference vectors; speed-up not yet "
                             "measured); identical on the CPU")


LEVEL_HELP = ("start level T' of the recovery (default: the model's first level, 48 for cmr-2d): the starting noise, "
              "which changes the draw more than its size; --magnitude sets the size")


def _add_steering_options(parser: argparse.ArgumentParser, sizes: bool = False) -> None:
    if sizes:
        parser.add_argument("--magnitudes", type=float, nargs="+", metavar="MM",
                            help="sizes in mm (mean |u|) instead of --levels: one job set per size, at the model's "
                                 "first level; the same seed keeps its shape at every size (diffeomorphic mode)")
    else:
        parser.add_argument("--magnitude", type=float, metavar="MM",
                            help="size in mm: the mean |u| over the image (over where --keep/--only allow motion), "
                                 "reached within 2 %% by scaling the sample's velocities: the same seed keeps its "
                                 "shape at every size; up to 1.5x the model's own size where the field can grow that far "
                                 "without folding (diffeomorphic mode)")
    parser.add_argument("--keep", type=int, nargs="+", metavar="LABEL",
                        help="label values of structures that are not deformed (needs labels)")
    parser.add_argument("--only", type=int, nargs="+", metavar="LABEL",
                        help="label values of the structures that alone, with --margin around them, are deformed")
    parser.add_argument("--margin", type=float, default=DEFAULTS.margin, metavar="MM",
                        help=f"width in mm of the smooth transition around --keep/--only structures, measured in 3D on "
                             f"the input's grid (default {DEFAULTS.margin:g})")


INVERSE_HELP = ("also write transform_inverse.h5, the inverse field (diffeomorphic mode), with its inverse consistency "
                "(p95 of |phi(phi^-1(x)) - x| in mm) in stats.json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drdm", description="Deformation-Recovery Diffusion Model (DRDM)")
    parser.add_argument("--version", action="version", version=f"drdm {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="deform an image (and labels) with new DRDM deformations")
    gen.add_argument("image", help="image file (NIfTI, NRRD, MHA, ...) or DICOM series folder")
    gen.add_argument("--labels", help="integer label map on the image's grid")
    _add_model_options(gen)
    _add_slices_option(gen)
    _add_steering_options(gen)
    gen.add_argument("--count", type=int, default=DEFAULTS.count, help="number of samples (seeds seed, seed+1, ...)")
    gen.add_argument("--batched", action="store_true",
                     help="on the CPU too, run the samples as sampler batches (measured 1.4x samples/s at count 8, "
                          "2D 256²); a sample then differs from a lone run of its seed by float rounding that the "
                          "sampler carries (up to about 1 voxel). On CUDA samples are always batched")
    gen.add_argument("--interpolation", choices=INTERPOLATIONS, default=DEFAULTS.interpolation,
                     help="SimpleITK interpolator of the written image (the transform reproduces it)")
    gen.add_argument("--label-method", choices=LABEL_METHODS, default=DEFAULTS.label_method)
    gen.add_argument("--slice-axis", type=int, choices=(0, 1, 2),
                     help="2D model on a 3D volume: array axis (0=z, 1=y, 2=x) to slice; default the largest spacing")
    gen.add_argument("--inverse", action="store_true", help=INVERSE_HELP)
    gen.add_argument("--out", required=True, help="output folder (one sub-folder per sample)")
    gen.set_defaults(func=run_generate)

    aug = commands.add_parser("augment", help="Algorithm 3: augment a data set at several levels (resumable)")
    aug.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    aug.add_argument("--label-suffix", help="labels are <image stem><suffix>.<ext> beside each image (e.g. _gt)")
    _add_model_options(aug)
    _add_slices_option(aug)
    _add_steering_options(aug, sizes=True)
    aug.add_argument("--levels", type=int, nargs="+",
                     help="start levels T' (default: the model's first level); the starting noise, not the size")
    aug.add_argument("--per-level", type=int, default=1, help="samples per image and level")
    aug.add_argument("--interpolation", choices=INTERPOLATIONS, default=DEFAULTS.interpolation)
    aug.add_argument("--label-method", choices=LABEL_METHODS, default=DEFAULTS.label_method)
    aug.add_argument("--shard", default="0/1", help="i/n: run only jobs j with j mod n == i")
    aug.add_argument("--no-qa", action="store_true", help="skip the QA pictures")
    aug.add_argument("--out", required=True)
    aug.set_defaults(func=run_augment)

    syn = commands.add_parser("synthesize", help="Algorithm 4: registration pairs with a ground-truth transform")
    syn.add_argument("image")
    syn.add_argument("--labels")
    _add_model_options(syn)
    _add_slices_option(syn)
    _add_steering_options(syn)
    syn.add_argument("--level-syn", type=int, help="level of the ground-truth deformation (default: --level)")
    syn.add_argument("--count", type=int, default=DEFAULTS.count)
    syn.add_argument("--interpolation", choices=INTERPOLATIONS, default=DEFAULTS.interpolation)
    syn.add_argument("--label-method", choices=LABEL_METHODS, default=DEFAULTS.label_method)
    syn.add_argument("--inverse", action="store_true", help=INVERSE_HELP)
    syn.add_argument("--out", required=True)
    syn.set_defaults(func=run_synthesize)

    jac = commands.add_parser("jacobian", help="det J map and statistics of an ITK displacement-field transform")
    jac.add_argument("transform", help=".h5/.tfm displacement-field transform or a displacement vector image")
    jac.add_argument("--reference", required=True, help="image whose grid the map is computed on")
    jac.add_argument("--out", default="jacobian.nii.gz", help="det J image to write (default jacobian.nii.gz)")
    jac.set_defaults(func=run_jacobian)

    ev = commands.add_parser("evaluate", help="score a registration tool's transforms against synthesize's ground truth")
    ev.add_argument("pairs", help="folder of pair folders written by drdm synthesize")
    ev.add_argument("--predicted", required=True,
                    help="each pair's predicted transform, {pair} standing for the pair folder's name (e.g. "
                         "'{pair}/predicted.h5'; relative to PAIRS): ITK .h5/.tfm (composites too) or a displacement "
                         "field .nii.gz/.nrrd/.mha (ANTs' 5D layout too), mapping fixed-grid points to moving points")
    ev.add_argument("--out", required=True, help="report folder to create: results.csv, summary.md, box plots, pictures")
    ev.set_defaults(func=run_evaluate)

    models = commands.add_parser("models", help="list, download (sha256-verified), import or verify models")
    models.add_argument("action", choices=("list", "fetch", "import", "verify"))
    models.add_argument("name", nargs="?", help="registry name (e.g. cmr-2d); for import: a .pth checkpoint or a "
                                                ".safetensors/.json model (e.g. from drdm train)")
    models.add_argument("--name", dest="as_name", help="import: name of the converted model (default: the file's stem)")
    models.add_argument("--force", action="store_true", help="import: replace a model of the same name")
    models.add_argument("--url", help="download from this URL instead of the registry's (a mirror)")
    models.set_defaults(func=run_models)

    trn = commands.add_parser("train", help="Algorithm 1: train a recovery network on your images (or phantoms)")
    trn.add_argument("data", nargs="*", help="image files and/or folders (any SimpleITK format); none: procedural phantoms")
    trn.add_argument("--out", required=True, help="run folder: last.pt (resume state), metrics.csv, the trained model")
    trn.add_argument("--name", default="drdm-model", help="model name (files NAME.safetensors + NAME.json)")
    trn.add_argument("--init", metavar="MODEL",
                     help="fine-tune: start from this model's weights and noise preset (name such as cmr-2d, .pth, "
                          ".safetensors/.json); dims, levels, width, size and preset default to the model's")
    trn.add_argument("--no-zero-init", action="store_true",
                     help="new networks: keep PyTorch's random output layer (default: scaled to almost zero, so training "
                          "starts at the zero solution, recovery error 1, instead of 18-75)")
    trn.add_argument("--dims", type=int, choices=(2, 3), help="2 or 3 (default 2, or the --init model's)")
    trn.add_argument("--size", type=int,
                     help="training grid side (multiple of 8; images are resampled; default 128, or the --init model's)")
    trn.add_argument("--levels", type=int, help="number of diffusion levels T (default 80 = reference, or the --init model's)")
    trn.add_argument("--batch", type=int, default=1, help="global batch (split across torchrun processes)")
    trn.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (reference: 1e-4)")
    trn.add_argument("--steps", type=int, default=1000, help="optimisation steps in total")
    trn.add_argument("--seed", type=int, default=0)
    trn.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    trn.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none", help="mixed precision (fp16: CUDA only)")
    trn.add_argument("--workers", type=int, default=0,
                     help="DataLoader processes preparing samples (pinned memory on CUDA; same batches); default 0")
    trn.add_argument("--channels-last", action="store_true", help="channels-last memory format (measure: see docs/training.md)")
    trn.add_argument("--compile", action="store_true", help="torch.compile the network (slow start, faster steps on GPUs)")
    trn.add_argument("--cache", help="folder keeping preprocessed training images between runs (large data sets)")
    trn.add_argument("--val-fraction", type=float, default=0.1, help="fraction of image files held out for validation")
    trn.add_argument("--val-every", type=int, default=100, help="validate every N steps")
    trn.add_argument("--val-samples", type=int, default=8,
                     help="validation draws per validation (0: no validation and no recovery-error table)")
    trn.add_argument("--checkpoint-every", type=int, default=100, help="write last.pt every N steps")
    trn.add_argument("--log-every", type=int, default=10, help="write a metrics.csv row every N steps")
    trn.add_argument("--regulariser", choices=("paper", "reference"), default="paper",
                     help="folding penalty: paper (true det J, default) or reference (the authors' code)")
    trn.add_argument("--width", type=int, help="channels of the first network stage (default 10 = reference, or the "
                                                 "--init model's)")
    trn.add_argument("--rec-num", type=int, default=2, help="refinement passes (reference: 2)")
    trn.add_argument("--noise-preset", choices=("cmr-2d", "lct-3d"),
                     help="forward process (default by --dims, or the --init model's)")
    trn.add_argument("--control-size", type=int, help="forward-process control grid (default: the preset's, scaled with --size)")
    trn.add_argument("--phantoms", type=int, default=64, help="number of phantoms when no data is given")
    trn.add_argument("--phantom-texture", type=float, default=0.0,
                     help="amplitude of fine texture added to training phantoms (makes deformations visible inside organs)")
    trn.add_argument("--no-augment", action="store_true", help="skip the geometric and intensity augmentation")
    trn.add_argument("--resume", action="store_true", help="continue from OUT/last.pt (identical to an uninterrupted run)")
    trn.add_argument("--quiet", action="store_true", help="no progress bar")
    trn.set_defaults(func=run_train)

    web = commands.add_parser("web", help="the browser app: Slicer's views and a Generate panel, served on HOST:PORT")
    web.add_argument("volume", nargs="?", help="volume to load at start (server-side path)")
    web.add_argument("--segmentation", help="label map or segmentation on the volume's grid")
    web.add_argument("--model", help="model name or file offered first (default: the registry's first usable model)")
    web.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; "
                                                         "prefer an SSH tunnel to serving the network)")
    web.add_argument("--port", type=int, default=8080)
    web.add_argument("--export-dir", default="drdm-web-exports", help="where Export writes (default ./drdm-web-exports; "
                                                                      "typed paths in the page never open it)")
    web.add_argument("--device", choices=DEVICES, default=DEFAULTS.device)
    web.add_argument("--timeout", type=int, default=0, help="stop after N s without an admitted browser (0: never)")
    web.add_argument("--secret-file", help="access secret on the file's first line, 128 bits or more, file readable by "
                                           "its owner only (default: a new random one per start); the printed URL "
                                           "carries it")
    web.add_argument("--data-dir", help="folder whose files the page may open (default: VOLUME's folder, else the "
                                        "current folder)")
    web.add_argument("--max-upload-mb", type=float, default=2048, help="largest upload from the browser (default 2048)")
    web.add_argument("--idle-minutes", type=float, default=0,
                     help="after N minutes without activity another browser may take the server (0: never)")
    web.add_argument("--access-log", help="append the access log (time, address, admitted/refused/in use/ended) to "
                                          "this file (default: stderr)")
    web.set_defaults(func=run_web)

    demo = commands.add_parser("demo", help="deform a cardiac phantom with the bundled cmr-2d model (or --model) into ./drdm-demo/")
    _add_model_options(demo)
    demo.add_argument("--out", default="drdm-demo")
    demo.set_defaults(func=run_demo, seed=None)
    return parser


FLAG_OF_ARGUMENT = {"ndims": "dims"}  # engine argument names the command line spells otherwise


def in_flag_words(message: str, args: argparse.Namespace) -> str:
    """An engine message in the command line's words: each backquoted argument name (```ndims```, ```out```) that is
    one of this command's options becomes its flag (``--dims``, ``--out``); other marks just lose their quotes."""
    def flag(match: re.Match) -> str:
        name = match.group(1)
        if name in FLAG_OF_ARGUMENT or name in vars(args):
            return "--" + FLAG_OF_ARGUMENT.get(name, name).replace("_", "-")
        return name

    return re.sub(r"`([a-z_]+)`", flag, message)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    if getattr(args, "count", 1) < 1 or getattr(args, "per_level", 1) < 1:
        parser.error("--count and --per-level must be at least 1")
    if getattr(args, "magnitudes", None) and getattr(args, "levels", None):
        parser.error("--magnitudes and --levels are alternatives: give one of them")
    if args.command == "demo" and args.seed is None:
        args.seed = 0
    try:
        with out_of_memory_as_error():
            return args.func(args)
    except ValueError as error:  # every DRDMError (InputError, CheckpointError, OutOfMemory, ...) is a ValueError
        print(f"drdm: error: {in_flag_words(str(error), args)}", file=sys.stderr)
        return 2
    except (GenerationCancelled, KeyboardInterrupt):
        print("\ndrdm: cancelled; unfinished outputs were removed", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
