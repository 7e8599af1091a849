"""What the bundled demo models learned: per-level recovery error on held-out phantoms, versus untrained.

Error = ‖W(P; D_target) + D_target‖ / ‖D_target‖ (:func:`drdm.training.recovery_error`): 0 is a perfect
recovery of the forward-process target, 1 is what a network that outputs zero scores. Each model is compared
with the same architecture at its initial (untrained) weights on the same deformations. For scale, the
authors' published cmr-2d model is measured on the public CMR sample and on a 256² phantom when ../shared
is present. Usage: python benchmarks/recovery_error.py [--images 8] [--draws 2]
Writes benchmarks/results/recovery_error.{json,md}.
"""

from __future__ import annotations

import argparse
import json

import torch
from common import REPO, SHARED, machine_description
from drdm.models import load_checkpoint, load_model_spec, untrained_model
from drdm.phantoms import cardiac_phantom
from drdm.training import EVALUATION_LEVELS, recovery_error
from drdm.training_data import VALIDATION_PHANTOM_SEED


def held_out_phantoms(size: int, ndims: int, count: int) -> list[torch.Tensor]:
    """Phantoms with seeds the training never uses (training: 0..count-1)."""
    return [cardiac_phantom(size, ndims, seed=VALIDATION_PHANTOM_SEED + 500 + i)[0][0] for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in ("drdm-demo-2d", "drdm-demo-3d"):
        model = load_model_spec(name)
        training = model.extra.get("training_command", "")
        seed = int(training.split("--seed ")[1].split()[0]) if "--seed " in training else 0
        initial = untrained_model(model.ndims, model.size, seed=seed, width=model.network.width,
                                  noise_overrides=model.noise_overrides)
        initial.noise_preset = model.noise_preset
        images = held_out_phantoms(model.size, model.ndims, args.images)
        for label, candidate in ((name, model), (f"{name} untrained (initial weights)", initial)):
            errors = recovery_error(candidate, images, draws=args.draws)
            rows.append({"model": label, "data": f"{len(images)} held-out phantoms", "errors": errors})
            print(label, {k: round(v, 3) for k, v in errors.items()}, flush=True)
    checkpoint = SHARED / "reference" / "cmr_recresacnet_2d.pth"
    if checkpoint.is_file():
        import numpy as np

        published = load_checkpoint(checkpoint)
        with np.load(SHARED / "reference" / "vectors_public.npz") as data:
            sample = torch.from_numpy(data["net_x"])[0]
        for label, images in (("CMR sample (net_x)", [sample]), ("256² phantoms", held_out_phantoms(256, 2, 2))):
            errors = recovery_error(published, images, draws=max(args.draws, 4) if len(images) == 1 else args.draws)
            rows.append({"model": "cmr-2d (published, for scale)", "data": label, "errors": errors})
            print("cmr-2d", label, {k: round(v, 3) for k, v in errors.items()}, flush=True)
    report = {"rows": rows, "levels": list(EVALUATION_LEVELS), "args": vars(args), "machine": machine_description()}
    out = REPO / "benchmarks" / "results"
    (out / "recovery_error.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    header = " | ".join(f"t = {t}" for t in EVALUATION_LEVELS)
    lines = ["# Recovery error per level (0 perfect, 1 = a network that outputs zero)", "",
             f"‖W(P; D_target) + D_target‖ / ‖D_target‖, {args.draws} forward draws per image and level (fixed seeds).",
             "", f"| model | data | {header} |", "|---|---|" + "---|" * len(EVALUATION_LEVELS)]
    for row in rows:
        values = " | ".join(f"{row['errors'][t]:.3f}" for t in EVALUATION_LEVELS)
        lines.append(f"| {row['model']} | {row['data']} | {values} |")
    (out / "recovery_error.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
