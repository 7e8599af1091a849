"""The MONAI and TorchIO transforms on real data: inverse round trips and the size reached (issue 26, item 3).

cmr-2d (``speed="faster"``, diffeomorphic) on the ACDC sample (patient001, end-diastolic frame, expert labels): each
slice of ``--slices`` alone (2D) deformed and undone with TorchIO's ``apply_inverse_transform`` and MONAI's
``Compose.inverse``; and the size asked on ``DRDMDeformd`` against the one reached (mean |u| of the recorded field,
mm). Usage: python benchmarks/transform_inverse.py [--seeds 3] [--slices 4 5] [--sizes 3 6 12]
Writes benchmarks/results/transform_inverse.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np
import SimpleITK as sitk
import torch
from common import REPO, SHARED, machine_description

LABELS = (1, 2, 3)  # RV cavity, myocardium, LV cavity


def dice(a: torch.Tensor, b: torch.Tensor, value: int) -> float:
    a, b = a == value, b == value
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def acdc_slice(index: int) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float]]:
    """Slice ``index``: ``(1, x, y)`` image in [0, 1] and int64 labels in nibabel order, spacing (x, y) in mm."""
    image = sitk.ReadImage(str(SHARED / "data" / "cmr" / "patient001_frame01.nii.gz"))
    labels = sitk.ReadImage(str(SHARED / "data" / "cmr" / "patient001_frame01_gt.nii.gz"))
    array = sitk.GetArrayFromImage(image)[index].astype(np.float32)  # (y, x)
    array = (array - array.min()) / (array.max() - array.min())
    label = sitk.GetArrayFromImage(labels)[index].astype(np.int64)
    return (torch.from_numpy(array.T.copy())[None], torch.from_numpy(label.T.copy())[None],
            tuple(float(s) for s in image.GetSpacing()[:2]))


def round_trip(library: str, model, image, labels, spacing, seed: int) -> dict[str, float]:
    if library == "torchio":
        import torchio as tio
        from drdm.transforms import RandomDRDMDeformation

        affine = np.diag([*spacing, 1.0, 1.0])
        subject = tio.Subject(image=tio.ScalarImage(tensor=image[..., None], affine=affine),
                              label=tio.LabelMap(tensor=labels[..., None], affine=affine))
        torch.manual_seed(seed)
        out = RandomDRDMDeformation(model, levels=(56,), speed="faster")(subject)
        back = out.apply_inverse_transform()
        moved, back_image, back_labels = out.label.data[..., 0], back.image.data[..., 0], back.label.data[..., 0]
        field = out.applied_transforms[-1][1]["field"][:2, ..., 0]
    else:
        from drdm.transforms import RandDRDMDeformd
        from monai.data import MetaTensor
        from monai.transforms import Compose

        affine = torch.diag(torch.tensor([*spacing, 1.0, 1.0], dtype=torch.float64))
        data = {"image": MetaTensor(image, affine=affine), "label": MetaTensor(labels, affine=affine)}
        pipeline = Compose([RandDRDMDeformd(keys="image", label_keys="label", model=model, levels=(56,),
                                            speed="faster")])
        pipeline.set_random_state(seed=seed)
        out = pipeline(dict(data))
        field = out["image"].applied_operations[-1]["extra_info"]["field"]
        back = pipeline.inverse(dict(out))
        moved, back_image, back_labels = out["label"].as_tensor(), back["image"].as_tensor(), back["label"].as_tensor()
    scale = torch.tensor(spacing).reshape(2, 1, 1)
    row = {f"dice_back_{v}": dice(back_labels, labels, v) for v in LABELS}
    row.update({f"dice_deformed_{v}": dice(moved, labels, v) for v in LABELS})
    row["image_mean_abs_error"] = float((back_image - image).abs().mean())
    row["image_p95_abs_error"] = float((back_image - image).abs().quantile(0.95))
    row["mean_mm"] = float((field * scale).pow(2).sum(0).sqrt().mean())
    return row


def size_reached(model, image, labels, spacing, size: float, seed: int) -> float:
    from drdm.transforms import DRDMDeformd
    from monai.data import MetaTensor

    affine = torch.diag(torch.tensor([*spacing, 1.0, 1.0], dtype=torch.float64))
    out = DRDMDeformd(keys="image", model=model, seed=seed, level=56, speed="faster", magnitude=size)(
        {"image": MetaTensor(image, affine=affine)})
    field = out["image"].applied_operations[-1]["extra_info"]["field"]
    return float((field * torch.tensor(spacing).reshape(2, 1, 1)).pow(2).sum(0).sqrt().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--slices", type=int, nargs="+", default=[4, 5])
    parser.add_argument("--sizes", type=float, nargs="+", default=[3.0, 6.0, 12.0])
    args = parser.parse_args()
    from drdm import load_model

    model = load_model("cmr-2d", device="cpu")
    runs: dict[str, list[dict]] = {"torchio": [], "monai": []}
    sizes = []
    for index in args.slices:
        image, labels, spacing = acdc_slice(index)
        for seed in range(args.seeds):
            for library in runs:
                row = dict(round_trip(library, model, image, labels, spacing, seed), slice=index, seed=seed)
                runs[library].append(row)
                print(library, {k: round(v, 4) for k, v in row.items()}, flush=True)
            for size in args.sizes:
                sizes.append({"slice": index, "seed": seed, "asked_mm": size,
                              "reached_mm": size_reached(model, image, labels, spacing, size, seed)})
                print(sizes[-1], flush=True)
    summary = {library: {key: {"mean": statistics.fmean(r[key] for r in rows), "min": min(r[key] for r in rows),
                               "max": max(r[key] for r in rows)} for key in rows[0] if key not in ("slice", "seed")}
               for library, rows in runs.items()}
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    payload = {"seeds": args.seeds, "slices": args.slices, "machine": machine_description(), "runs": runs,
               "sizes": sizes, "summary": summary}
    (out / "transform_inverse.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    lines = [f"# Transforms on ACDC patient001 ED slices {args.slices}, cmr-2d faster, {args.seeds} seeds", "",
             "| library | Dice back RV / myo / LV (min) | Dice deformed (min) | image error mean / p95 (max) | mean abs u mm |",
             "|---|---|---|---|---|"]
    for library, s in summary.items():
        lines.append(f"| {library} | " + " / ".join(f"{s[f'dice_back_{v}']['min']:.3f}" for v in LABELS) + " | "
                     + " / ".join(f"{s[f'dice_deformed_{v}']['min']:.3f}" for v in LABELS) + " | "
                     f"{s['image_mean_abs_error']['max']:.4f} / {s['image_p95_abs_error']['max']:.4f} | "
                     f"{s['mean_mm']['mean']:.2f} |")
    lines += ["", "| asked mm | reached mm (min – max) | worst error % |", "|---|---|---|"]
    for size in args.sizes:
        reached = [r["reached_mm"] for r in sizes if r["asked_mm"] == size]
        worst = max(abs(r - size) / size for r in reached)
        lines.append(f"| {size:g} | {min(reached):.2f} – {max(reached):.2f} | {100 * worst:.1f} |")
    (out / "transform_inverse.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
