"""Convert the authors' published 2D cardiac checkpoint into the bundled ``cmr-2d`` model, with provenance and
its measured recovery-error table.

The weights are copied tensor for tensor (float32, so the outputs are bit-identical:
``Testing/model_store/test_bundled_model.py``); the JSON beside them records the upstream file, its sha256, licence,
citation and the recovery error on the ACDC sample slices, the authors' preprocessed CMR sample and held-out
short-axis phantoms (:mod:`drdm.training.recovery_error`). Needs the checkpoint and the sample images (``../shared``)::

    PYTHONPATH=DRDMSlicer python scripts/bundle_published_model.py [--shared ../shared]

Writes ``DRDMSlicer/drdm/model_store/bundled/cmr-2d.{safetensors,json}`` (about 2 minutes on 2 CPU threads).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from drdm.model_store.files import save_model
from drdm.model_store.registry import BUNDLED_FOLDER, PUBLISHED_CMR_SHA256, PUBLISHED_CMR_URL
from drdm.models import file_digest, load_checkpoint
from drdm.training.recovery_error import cmr_sample_datasets, evaluation_phantoms, recovery_error_table

REPO = Path(__file__).resolve().parents[1]
SOURCE_REPOSITORY = "https://github.com/jianqingzheng/def_diff_rec"
SOURCE_COMMIT = "b7da2aa73bb8acbfed418863fd706d87a1bc4fa9"  # "release 1.0" (2024-09-13), where the file appeared
SOURCE_FILE = "models/cmr_recresacnet/000000_cmr_recresacnet.pth"
CITATION = ("Zheng J-Q, Mo Y, Sun Y, Li J, Wu F, Wang Z, Vincent T, Papież BW. Deformation-Recovery Diffusion Model "
            "(DRDM): Instance Deformation for Image Manipulation and Synthesis. Medical Image Analysis 110, 103987 "
            "(2026). doi:10.1016/j.media.2026.103987")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="folder with reference/ and data/")
    parser.add_argument("--draws", type=int, default=2, help="forward draws per image and level")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = args.shared / "reference" / "cmr_recresacnet_2d.pth"
    if not checkpoint.is_file():
        print(f"bundle_published_model: {checkpoint} not found", file=sys.stderr)
        return 2
    digest = file_digest(checkpoint)
    if digest != PUBLISHED_CMR_SHA256:
        print(f"bundle_published_model: {checkpoint} has sha256 {digest}, not the published {PUBLISHED_CMR_SHA256}",
              file=sys.stderr)
        return 2
    model = load_checkpoint(checkpoint)
    model.name = "cmr-2d"
    model.extra["training_command"] = "the authors' DRDM_train.py with Config/config_cmr.yaml (not this project)"
    model.extra["licence"] = "Apache-2.0"

    datasets = cmr_sample_datasets(args.shared / "data" / "cmr", model.size)
    if len(datasets) != 2:
        print(f"bundle_published_model: the CMR samples are missing from {args.shared / 'data' / 'cmr'}", file=sys.stderr)
        return 2
    datasets.append(evaluation_phantoms(2, model.size))
    table = recovery_error_table(model, datasets, draws=args.draws)
    for row in table["rows"]:
        print(f"{row['mean']:.3f} {row['errors']} {row['data']}")
    weights, metadata = save_model(
        model, BUNDLED_FOLDER / "cmr-2d",
        source_url=PUBLISHED_CMR_URL, source_repository=SOURCE_REPOSITORY, source_commit=SOURCE_COMMIT,
        source_file=SOURCE_FILE, source_sha256=digest,
        copyright="the DRDM authors (Jian-Qing Zheng et al.), repository jianqingzheng/def_diff_rec",
        citation=CITATION, notice="see NOTICE beside this file",
        conversion_command="PYTHONPATH=DRDMSlicer python scripts/bundle_published_model.py",
        recovery_error=table)
    print(f"wrote {weights} and {metadata}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
