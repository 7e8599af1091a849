"""Physical-space adapter: any 2D/3D image to the model's working grid and the recovered field back.

The working grid is axis-aligned with the input's voxel lattice (same direction cosines), isotropic in
millimetres, ``S`` voxels per side (the model's size), centred on the image and padded so that the whole
field of view fits. Only the *field* is resampled back to the original grid; the image and labels are
warped once, at full resolution, by the caller.

A 2D model on a 3D volume works slice by slice along ``slice_axis`` (default: the array axis with the
largest spacing, e.g. the thick slices of a cardiac stack) with a zero through-plane displacement.

Orientation: the published models were trained on NIfTI arrays in nibabel axis order, which is the
reverse of SimpleITK/NumPy ``(z, y, x)`` order; :meth:`WorkingGrid.to_network` and
:meth:`WorkingGrid.from_network` transpose at that boundary only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..spatial import identity_grid, sample_at

NORMALISATION_GUARD = 1e-7  # the reference's (I - min) / (max - min + 1e-7)


@dataclass(frozen=True)
class WorkingGrid:
    """How an image (array order ``(z, y, x)`` or ``(y, x)``) maps onto the model's working grid.

    Attributes:
        shape: the original array shape.
        spacing: the original spacing in mm, array order.
        model_axes: array axes the model sees (all axes, or the two in-plane axes for 2D-on-3D).
        slice_axis: the axis sliced for a 2D model on a 3D volume, else ``None``.
        size: working grid side ``S`` (voxels).
        working_spacing: isotropic working spacing in mm.
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    model_axes: tuple[int, ...]
    slice_axis: int | None
    size: int
    working_spacing: float

    @property
    def batch(self) -> int:
        """Number of working images: slices for 2D-on-3D, else 1."""
        return 1 if self.slice_axis is None else self.shape[self.slice_axis]

    def _scale(self, device: torch.device) -> torch.Tensor:
        """Original voxels per working voxel along each model axis: ``s_w / spacing_a``."""
        scale = [self.working_spacing / self.spacing[a] for a in self.model_axes]
        return torch.tensor(scale, dtype=torch.float64, device=device)

    def _centre(self, device: torch.device) -> torch.Tensor:
        return torch.tensor([(self.shape[a] - 1) / 2.0 for a in self.model_axes], dtype=torch.float64, device=device)

    def working_positions(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Original continuous indices (model axes) of every working voxel: ``(1, k, S, ..., S)``."""
        device = torch.device(device)
        k = len(self.model_axes)
        view = (1, k) + (1,) * k
        grid = identity_grid((self.size,) * k, device, torch.float64)
        centre = (self.size - 1) / 2.0
        return self._centre(device).reshape(view) + (grid - centre) * self._scale(device).reshape(view)

    def original_positions(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Working-grid continuous indices of every original voxel (model axes only): ``(1, k, *in-plane shape)``."""
        device = torch.device(device)
        k = len(self.model_axes)
        view = (1, k) + (1,) * k
        plane = tuple(self.shape[a] for a in self.model_axes)
        grid = identity_grid(plane, device, torch.float64)
        centre = (self.size - 1) / 2.0
        return (grid - self._centre(device).reshape(view)) / self._scale(device).reshape(view) + centre

    # -- image to working grid --------------------------------------------------------------------

    def _as_batch(self, array: torch.Tensor) -> torch.Tensor:
        """Original array ``shape`` -> ``(batch, 1, *in-plane)`` (slices first for 2D-on-3D)."""
        if self.slice_axis is None:
            return array.reshape((1, 1) + tuple(array.shape))
        return array.movedim(self.slice_axis, 0).unsqueeze(1)

    def to_working(self, array: torch.Tensor) -> torch.Tensor:
        """Normalise and resample an original image to the working grid, in network orientation.

        ``array``: the original image, array order, any real dtype. Intensities are min–max normalised
        to [0, 1] per working image (per slice for 2D-on-3D, as the reference does), then linearly
        resampled with zero padding (0 = the image minimum). Returns float32 ``(batch, 1, S, ..., S)``.
        """
        images = self._as_batch(array.to(torch.float64))
        flat = images.flatten(1)
        low = flat.min(1).values.reshape((-1,) + (1,) * (images.dim() - 1))
        high = flat.max(1).values.reshape(low.shape)
        normalised = (images - low) / (high - low + NORMALISATION_GUARD)
        positions = self.working_positions(array.device).expand((images.shape[0],) + (-1,) * (images.dim() - 1))
        working = sample_at(normalised, positions, "linear", "zeros")
        return self.to_network(working.float())

    def resample_to_working(self, array: torch.Tensor) -> torch.Tensor:
        """Resample an original-grid map (array order, e.g. a distance map in mm) to the working grid linearly, border
        values repeating beyond the image, without normalising: float32 ``(batch, 1, S, ..., S)``, network orientation."""
        values = self._as_batch(array.to(torch.float64))
        positions = self.working_positions(array.device).expand((values.shape[0],) + (-1,) * (values.dim() - 1))
        return self.to_network(sample_at(values, positions, "linear", "border").float())

    @staticmethod
    def to_network(tensor: torch.Tensor) -> torch.Tensor:
        """Array order -> the network's (nibabel) axis order: reverse the spatial axes."""
        spatial = list(range(2, tensor.dim()))
        return tensor.permute([0, 1] + spatial[::-1]).contiguous()

    @staticmethod
    def from_network(field: torch.Tensor) -> torch.Tensor:
        """A displacement field in network orientation -> array order (spatial axes and channels reversed)."""
        spatial = list(range(2, field.dim()))
        return field.permute([0, 1] + spatial[::-1]).flip(1).contiguous()

    # -- field back to the original grid ----------------------------------------------------------

    def _original_positions_slab(self, start: int, stop: int, device: torch.device) -> torch.Tensor:
        """:meth:`original_positions` for original indices ``start:stop`` along the first model axis only."""
        plane = [self.shape[a] for a in self.model_axes]
        ranges = [torch.arange(start, stop, device=device, dtype=torch.float64)]
        ranges += [torch.arange(n, device=device, dtype=torch.float64) for n in plane[1:]]
        centre, scale, middle = self._centre(device), self._scale(device), (self.size - 1) / 2.0
        mesh = torch.meshgrid(*ranges, indexing="ij")
        return torch.stack([(index - centre[i]) / scale[i] + middle for i, index in enumerate(mesh)]).unsqueeze(0)

    def field_to_original(self, ddf_network: torch.Tensor, chunk_voxels: int = 1 << 21) -> torch.Tensor:
        """Working-grid field (network orientation, working voxels) -> original grid, original voxels.

        Returns ``(1, ndim, *shape)`` float32, channel i along original array axis i, in original voxels
        (zero through-plane channel for 2D-on-3D). The field is resampled linearly with border padding, in
        float64, ``chunk_voxels`` original voxels at a time (full-resolution CT volumes stay within memory).
        """
        field = self.from_network(ddf_network).to(torch.float64)
        k = len(self.model_axes)
        field = field * self._scale(field.device).reshape((1, k) + (1,) * k)  # working voxels -> original voxels
        out = torch.zeros((1, len(self.shape)) + self.shape, dtype=torch.float32, device=field.device)
        plane = tuple(self.shape[a] for a in self.model_axes)
        per_plane = max(1, int(torch.tensor(plane[1:]).prod()))
        if self.slice_axis is None:
            step = max(1, chunk_voxels // per_plane)
            for start in range(0, plane[0], step):
                stop = min(start + step, plane[0])
                positions = self._original_positions_slab(start, stop, field.device)
                out[:, :, start:stop] = sample_at(field, positions, "linear", "border").float()
            return out
        positions = self.original_positions(field.device)
        step = max(1, chunk_voxels // (per_plane * plane[0]))
        for start in range(0, field.shape[0], step):
            stop = min(start + step, field.shape[0])
            resampled = sample_at(field[start:stop], positions.expand((stop - start,) + (-1,) * (k + 1)), "linear", "border")
            for channel, axis in enumerate(self.model_axes):
                out[0, axis].narrow(self.slice_axis, start, stop - start).copy_(resampled[:, channel].movedim(0, self.slice_axis))
        return out


def plan_working_grid(shape: tuple[int, ...], spacing: tuple[float, ...], model_ndims: int, model_size: int,
                      slice_axis: int | None = None) -> WorkingGrid:
    """Choose the working grid for an image of ``shape``/``spacing`` (array order, mm) and a model.

    Raises ``ValueError`` for a 3D model on a 2D image (or on a volume one voxel thick) and for a bad
    ``slice_axis``.
    """
    ndim = len(shape)
    if ndim not in (2, 3) or len(spacing) != ndim:
        raise ValueError(f"expected a 2D or 3D image, got shape {shape}")
    thin = [a for a in range(ndim) if shape[a] == 1]
    if model_ndims == 3 and (ndim == 2 or thin):
        raise ValueError("a 3D model cannot deform a 2D image")
    if model_ndims == ndim:
        if slice_axis is not None:
            raise ValueError("slice_axis applies only to a 2D model on a 3D volume")
        model_axes, sliced = tuple(range(ndim)), None
    elif model_ndims == 2 and ndim == 3:
        if slice_axis is None:
            sliced = thin[0] if thin else max(range(3), key=lambda a: (spacing[a], -a))
        elif slice_axis in (0, 1, 2):
            sliced = slice_axis
        else:
            raise ValueError(f"slice_axis must be 0, 1 or 2 (array order z, y, x), got {slice_axis}")
        model_axes = tuple(a for a in range(3) if a != sliced)
    else:
        raise ValueError(f"a {model_ndims}D model cannot deform a {ndim}D image")
    extent = max(shape[a] * spacing[a] for a in model_axes)
    return WorkingGrid(shape=tuple(shape), spacing=tuple(float(s) for s in spacing), model_axes=model_axes,
                       slice_axis=sliced, size=int(model_size), working_spacing=extent / model_size)
