"""The ``drdm`` argument parser: every command, its options and help; commands of other packages join through the
``drdm.commands`` entry points (``drdm web``, registered by ``drdm_web``)."""

from __future__ import annotations

import argparse

from ..model_store.choice import AUTO
from ..settings import (
    DEFAULTS,
    DEVICES,
    INTERPOLATIONS,
    LABEL_METHODS,
    MODES,
    PRECISIONS,
    SLICE_MODES,
    SPEEDS,
    VERSION,
)
from .field_commands import run_evaluate, run_jacobian
from .model_commands import run_models
from .sample_commands import run_augment, run_demo, run_generate, run_synthesize
from .train_command import run_train

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

    demo = commands.add_parser("demo", help="deform a cardiac phantom with the bundled cmr-2d model (or --model) into ./drdm-demo/")
    _add_model_options(demo)
    demo.add_argument("--out", default="drdm-demo")
    demo.set_defaults(func=run_demo, seed=None)
    add_plugin_commands(commands)
    return parser


COMMANDS_GROUP = "drdm.commands"  # entry points: a function add_command(subparsers) of another package (drdm_web)


def add_plugin_commands(commands: argparse._SubParsersAction) -> None:
    """The commands other installed packages register under :data:`COMMANDS_GROUP` (``drdm web`` from ``drdm_web``:
    the engine imports no front end; without the package's metadata, as inside Slicer, there is no such command)."""
    from importlib.metadata import entry_points

    for entry in sorted(entry_points(group=COMMANDS_GROUP), key=lambda item: item.name):
        entry.load()(commands)
