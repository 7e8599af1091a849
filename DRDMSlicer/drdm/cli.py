"""The ``drdm`` command line (``python -m drdm`` too)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from . import __version__
from .models import DRDMModel, load_checkpoint, untrained_model
from .phantoms import cardiac_phantom
from .sampler import MODES, GenerationCancelled, generate

REFERENCE_CHECKPOINT_NAME = "cmr_recresacnet_2d.pth"


class UserError(Exception):
    """A failure explained to the user in one message (exit status 2)."""


def find_default_checkpoint() -> Path | None:
    """The checkpoint the demo uses: ``$DRDM_MODEL``, else the published CMR checkpoint in a ``shared/reference``
    folder beside the source checkout (developer machines), else ``None``."""
    env = os.environ.get("DRDM_MODEL")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "reference" / REFERENCE_CHECKPOINT_NAME
        if candidate.is_file():
            return candidate
    return None


def _load_model(path: str | None) -> DRDMModel:
    checkpoint = Path(path) if path else find_default_checkpoint()
    if checkpoint is None:
        print("No trained model found (set DRDM_MODEL or pass --model); using an UNTRAINED network, so the\n"
              "recovery steps are meaningless: this run only exercises the pipeline.", file=sys.stderr)
        return untrained_model(2)
    try:
        return load_checkpoint(checkpoint)
    except ValueError as error:
        raise UserError(str(error)) from None


def _progress_bar(total_label: str):
    from tqdm import tqdm

    bar = None

    def update(step: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=total_label, unit="step")
        bar.update(step - bar.n)
        if step == total:
            bar.close()

    return update


def run_demo(args: argparse.Namespace) -> int:
    """Deform the procedural cardiac phantom with the default model and print the field statistics."""
    model = _load_model(args.model)
    image, labels = cardiac_phantom(model.size, ndims=model.ndims, seed=args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    print(f"model: {model.name} ({model.ndims}D, {model.size} voxels, preset {model.noise_preset})")
    start = time.perf_counter()
    result = generate(model, image, labels, start_level=args.level, generator=generator, mode=args.mode,
                      progress=_progress_bar("recovering"))
    seconds = time.perf_counter() - start
    stats, rand = result.statistics, result.statistics_random
    print(f"level T'={args.level}, mode={args.mode}, seed={args.seed}, {seconds:.1f} s")
    print(f"random field : mean |u| {rand['mean_vox'][0]:.2f} px, p95 {rand['p95_vox'][0]:.2f} px, "
          f"folding {100 * rand['folding_fraction'][0]:.2f} %")
    print(f"final field  : mean |u| {stats['mean_vox'][0]:.2f} px, p95 {stats['p95_vox'][0]:.2f} px, "
          f"folding {100 * stats['folding_fraction'][0]:.2f} %, det J in "
          f"[{stats['det_min'][0]:.3f}, {stats['det_max'][0]:.3f}]")
    kept = sorted(int(v) for v in torch.unique(result.labels))
    print(f"deformed labels keep their values: {kept}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drdm", description="Deformation-Recovery Diffusion Model (DRDM)")
    parser.add_argument("--version", action="version", version=f"drdm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="deform a bundled phantom with the default model")
    demo.add_argument("--model", help="checkpoint file (default: $DRDM_MODEL or the published CMR model)")
    demo.add_argument("--level", type=int, default=56, help="start noise level T' (default 56)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--mode", choices=MODES, default="diffeomorphic")
    demo.set_defaults(func=run_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as error:
        print(f"drdm: error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"drdm: error: {error}", file=sys.stderr)
        return 2
    except (GenerationCancelled, KeyboardInterrupt):
        print("drdm: cancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
