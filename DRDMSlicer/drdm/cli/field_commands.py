"""``drdm jacobian`` and ``drdm evaluate``: what a transform does, how well a registration tool did."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..physical.field_summary import transform_jacobian
from ..physical.io import (
    check_writable,
    read_image,
    write_image,
)


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
    from ..registration.evaluation import evaluate

    report = evaluate(args.pairs, args.predicted, args.out)
    pairs = len({row["pair"] for row in report.rows})
    flagged = f", {len(report.warnings)} with a direction warning" if report.warnings else ""
    print(f"{pairs} pairs scored{flagged}: {report.out / 'summary.md'}, {report.out / 'results.csv'}")
    return 0
