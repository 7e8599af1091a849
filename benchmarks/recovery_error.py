"""The recovery-error table of every model offered (plus any model named with --model, e.g. a fine-tuned one).

Error = ‖W(P; D_target) + D_target‖ / ‖D_target‖ (:mod:`drdm.training.recovery_error`): 0 is a perfect recovery of the
forward-process target, 1 is what a model that recovers nothing scores (the random-field-only choices, by
construction). Data: the public CMR samples in ../shared when present (2D models), and held-out phantoms. For
scale, an untrained network of the reference architecture is measured on the same draws.
Usage: python benchmarks/recovery_error.py [--draws 2] [--model runs/ft/cmr-ft.safetensors ...]
Writes benchmarks/results/recovery_error.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from common import REPO, SHARED, machine_description
from drdm.model_store.loading import load_model_spec
from drdm.model_store.offered import offered_models
from drdm.models import untrained_model
from drdm.training.recovery_error import LEVELS, cmr_sample_datasets, evaluation_phantoms, recovery_error_table


def datasets_for(model, phantoms: int) -> list:
    sets = cmr_sample_datasets(SHARED / "data" / "cmr", model.size) if model.ndims == 2 else []
    return sets + [evaluation_phantoms(model.ndims, model.size, phantoms)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--phantoms", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", action="append", default=[], help="another model (name or file) to measure")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [c.name for c in offered_models(include_cache=False)] + args.model
    untrained = untrained_model(2, 256, seed=0)
    untrained.name = "untrained 2D network (reference architecture, for scale)"
    rows = []
    for spec in names + [None]:
        model = untrained if spec is None else load_model_spec(spec)
        started = time.perf_counter()
        # a random field recovers nothing by construction (error exactly 1): one image and draw show it
        count, draws = (args.phantoms, args.draws) if model.learned else (1, 1)
        table = recovery_error_table(model, datasets_for(model, count), draws=draws)
        seconds = time.perf_counter() - started
        for row in table["rows"]:
            rows.append({"model": model.name, "learned": model.learned, "trained_on": model.trained_on, **row})
            print(f"{rows[-1]['model']}: {row['errors']} mean {row['mean']} ({row['data']})", flush=True)
        print(f"  {seconds:.0f} s", flush=True)
    report = {"rows": rows, "levels": list(LEVELS), "args": vars(args), "machine": machine_description()}
    out = REPO / "benchmarks" / "results"
    (out / "recovery_error.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    header = " | ".join(f"t = {t}" for t in LEVELS)
    lines = ["# Recovery error per level (0 perfect, 1 = no recovery)", "",
             f"‖W(P; D_target) + D_target‖ / ‖D_target‖, {args.draws} forward draws per image and level (fixed seeds; "
             "random-field models: one image, one draw, as they score 1 by construction); "
             f"`python benchmarks/recovery_error.py {' '.join(f'--model {m}' for m in args.model)}`. "
             f"Machine: {report['machine']['cpu']}, {report['machine']['torch_threads']} threads.", ""]
    lines += [f"- `{name}`: trained on {trained}" for name, trained in dict((r["model"], r["trained_on"]) for r in rows).items()]
    lines += ["", f"| model | data | {header} | mean |", "|---|---|" + "---|" * (len(LEVELS) + 1)]
    for row in rows:
        values = " | ".join(f"{v:.3f}" for v in row["errors"])
        lines.append(f"| {row['model']} | {row['data']} | {values} | {row['mean']:.3f} |")
    (out / "recovery_error.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
