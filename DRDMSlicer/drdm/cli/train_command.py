"""``drdm train``: Algorithm 1 from the command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def run_train(args: argparse.Namespace) -> int:
    """``drdm train``: Algorithm 1 on image files or procedural phantoms (resumable, torchrun-aware)."""
    import shlex

    from tqdm import tqdm

    from ..training.initialisation import training_config
    from ..training.loop import train

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
