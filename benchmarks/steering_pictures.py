"""Pictures of steering on the ACDC stack with the bundled cmr-2d (coherent slices): one seed at three sizes, and the
same seed with the left ventricle kept still.

Writes Resources/Screenshots/DRDMSlicer-sizes.png and Resources/Screenshots/DRDMSlicer-keep.png (docs/steering.md).
Usage: python benchmarks/steering_pictures.py [--seed 1] [--speed fast] [--sizes 2 5 10]
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402
from common import REPO, SHARED  # noqa: E402
from drdm.model_store.loading import load_model  # noqa: E402
from drdm.physical.deform import deform_image  # noqa: E402
from drdm.physical.io import read_image, read_labels  # noqa: E402
from drdm.physical.qa import _draw_grid, _held_overlay  # noqa: E402
from drdm.settings import DeformationSettings  # noqa: E402

CMR = SHARED / "data" / "cmr"
OUT = REPO / "Resources" / "Screenshots"
SLICE = 5  # the central slice of the ACDC stack
CROP = (slice(40, 200), slice(30, 190))  # the heart and its surroundings (rows, columns of the slice)


def _in_plane(result) -> tuple[np.ndarray, np.ndarray]:
    """The slice's in-plane displacement (voxels along y and x) of a result on the stack."""
    return result.ddf[0, 1, SLICE].numpy(), result.ddf[0, 2, SLICE].numpy()


def _panel(axis, array: np.ndarray, title: str, grid: tuple[np.ndarray, np.ndarray] | None = None,
           held: np.ndarray | None = None, labels: np.ndarray | None = None,
           window: tuple[float, float] = (0, 1)) -> None:
    axis.imshow(array[CROP], cmap="gray", vmin=window[0], vmax=window[1])
    if grid is not None:
        _draw_grid(axis, grid[0][CROP], grid[1][CROP])
    if held is not None:
        _held_overlay(axis, held[CROP], 1.0)
    if labels is not None:
        for value, colour in ((1, "tab:red"), (2, "tab:green"), (3, "tab:blue")):
            mask = labels[CROP] == value
            if mask.any():
                axis.contour(mask.astype(float), levels=[0.5], colors=colour, linewidths=0.9)
    axis.set_title(title, fontsize=10)
    axis.set_xticks([])
    axis.set_yticks([])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--speed", default="fast")
    parser.add_argument("--sizes", type=float, nargs="+", default=[2.0, 5.0, 10.0])
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_model("cmr-2d", "cpu")
    image = read_image(CMR / "patient001_frame01.nii.gz")
    labels = read_labels(CMR / "patient001_frame01_gt.nii.gz", image)
    original = sitk.GetArrayFromImage(image)[SLICE].astype(np.float32)
    label_array = sitk.GetArrayFromImage(labels)[SLICE]
    window = tuple(np.percentile(original, [0.5, 99.5]))
    own = deform_image(model, image, labels, settings=DeformationSettings(level=48, seed=args.seed, speed=args.speed))
    sized = [deform_image(model, image, labels, settings=DeformationSettings(level=48, seed=args.seed, speed=args.speed,
        magnitude=size))
             for size in args.sizes]

    figure, axes = plt.subplots(1, 2 + len(sized), figsize=(3.2 * (2 + len(sized)), 3.6))
    _panel(axes[0], original, "original", labels=label_array, window=window)
    for axis, size, result in zip(axes[1:], args.sizes, sized):
        reached = result.statistics["mean_mm"]
        _panel(axis, sitk.GetArrayFromImage(result.image)[SLICE], f"size {size:g} mm (reached {reached:.2f})",
               grid=_in_plane(result), labels=sitk.GetArrayFromImage(result.labels)[SLICE], window=window)
    _panel(axes[-1], sitk.GetArrayFromImage(own.image)[SLICE], f"model's own ({own.statistics['mean_mm']:.1f} mm)",
           grid=_in_plane(own),
           labels=sitk.GetArrayFromImage(own.labels)[SLICE], window=window)
    figure.suptitle(f"One seed ({args.seed}), three sizes: cmr-2d on the ACDC stack, slice {SLICE}, "
                    f"diffeomorphic/{args.speed}", fontsize=11)
    OUT.mkdir(parents=True, exist_ok=True)
    figure.savefig(OUT / "DRDMSlicer-sizes.png", dpi=80, bbox_inches="tight")
    plt.close(figure)

    kept = deform_image(model, image, labels, settings=DeformationSettings(level=48, seed=args.seed, speed=args.speed,
        keep=[3], magnitude=5.0))
    free = deform_image(model, image, labels, settings=DeformationSettings(level=48, seed=args.seed, speed=args.speed,
        magnitude=5.0))
    figure, axes = plt.subplots(1, 4, figsize=(13, 3.6))
    _panel(axes[0], original, "original (cyan: LV kept still)", held=kept.held[SLICE], labels=label_array,
           window=window)
    for axis, result, title in ((axes[1], free, "5 mm, nothing kept"), (axes[2], kept, "5 mm, LV (label 3) kept")):
        _panel(axis, sitk.GetArrayFromImage(result.image)[SLICE], title,
               grid=_in_plane(result),
               labels=sitk.GetArrayFromImage(result.labels)[SLICE], window=window)
    magnitude = np.sqrt((sitk.GetArrayFromImage(kept.field)[SLICE].astype(np.float64) ** 2).sum(-1))
    shown = axes[3].imshow(magnitude[CROP], cmap="magma")
    axes[3].contour((label_array == 3)[CROP].astype(float), levels=[0.5], colors="cyan", linewidths=1.0)
    axes[3].set_title(f"|u| mm (in the LV at most {kept.statistics['max_mm_in_kept']:.3f})", fontsize=10)
    axes[3].set_xticks([])
    axes[3].set_yticks([])
    figure.colorbar(shown, ax=axes[3], fraction=0.046, pad=0.02)
    figure.suptitle(f"A structure kept still (seed {args.seed}, margin 10 mm): cmr-2d on the ACDC stack, slice {SLICE}",
                    fontsize=11)
    figure.savefig(OUT / "DRDMSlicer-keep.png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    print(f"wrote {OUT / 'DRDMSlicer-sizes.png'} and {OUT / 'DRDMSlicer-keep.png'}")


if __name__ == "__main__":
    main()
