"""Draw the extension icon (a grid under a smooth deformation, coloured by det J) into the Resources folders."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from drdm.spatial import integrate, jacobian_determinant  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    n = 64
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    swirl = torch.exp(-(xx**2 + yy**2) * 2.5) * 30.0
    velocity = torch.stack([swirl * xx, -swirl * yy]).unsqueeze(0) + torch.stack([-swirl * yy * 0.8, swirl * xx * 0.8])
    ddf = integrate(velocity, 6)
    det = jacobian_determinant(ddf)[0]
    fig = plt.figure(figsize=(1.28, 1.28), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(det.numpy(), cmap="RdBu_r", vmin=0, vmax=2, extent=(0, n - 1, n - 1, 0))
    pos = ddf[0] + torch.stack(torch.meshgrid(torch.arange(n * 1.0), torch.arange(n * 1.0), indexing="ij"))
    for i in range(0, n, 6):
        ax.plot(pos[1, i, :], pos[0, i, :], color="black", lw=0.9)
        ax.plot(pos[1, :, i], pos[0, :, i], color="black", lw=0.9)
    ax.set_xlim(0, n - 1)
    ax.set_ylim(n - 1, 0)
    ax.axis("off")
    for target in (ROOT / "Resources" / "Icons" / "DRDMSlicer.png", ROOT / "DRDMSlicer" / "Resources" / "Icons" / "DRDMSlicer.png"):
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
