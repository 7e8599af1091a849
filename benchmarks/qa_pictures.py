"""The README's QA pictures: the bundled cmr-2d on the ACDC cardiac stack (216 × 256 × 10, 1.56 × 1.56 × 10 mm,
from shared/data/cmr; not copied into the repository), one deformation with coherent slices (the default) and the
same seed with independent slices (the authors' way), each the CLI's QA montage (central slice and a reslice
across the slices).

    python benchmarks/qa_pictures.py [--seed 0] [--level 48] [--out Resources/Screenshots]

Writes DRDMSlicer-qa.png (coherent) and DRDMSlicer-qa-independent.png.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from common import REPO, SHARED
from drdm.cli import main as drdm

DATA = SHARED / "data" / "cmr"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--level", type=int, default=48)
    parser.add_argument("--out", default=str(REPO / "Resources" / "Screenshots"))
    args = parser.parse_args()
    volume, labels = DATA / "patient001_frame01.nii.gz", DATA / "patient001_frame01_gt.nii.gz"
    if not volume.is_file():
        print(f"error: {volume} not found (set DRDM_SHARED to the shared/ folder)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        for slices, name in (("coherent", "DRDMSlicer-qa.png"), ("independent", "DRDMSlicer-qa-independent.png")):
            out = Path(folder) / slices
            code = drdm(["generate", str(volume), "--labels", str(labels), "--model", "cmr-2d", "--seed", str(args.seed),
                         "--level", str(args.level), "--slices", slices, "--out", str(out)])
            if code:
                return code
            (qa,) = out.glob("*/qa.png")
            shutil.copy(qa, Path(args.out) / name)
            print(f"{Path(args.out) / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
