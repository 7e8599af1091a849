"""Which slice view shows a volume best (Qt-free; MRML only): the acquisition plane of a thick-slice stack.

A stack whose slice spacing is at least ``THICK_RATIO`` times its in-plane spacing (a cardiac cine short-axis
stack: 1.4 × 1.4 × 8 mm) is readable only in its acquisition plane: the other two planes cut a strip a few
voxels thick. :func:`acquisition_view` names the slice view (Red/Yellow/Green) whose orientation is closest to
that plane; :func:`show_volume_planes` turns the slice views to the volume's axes and puts that view on the
middle slice. A 3D volume (near-isotropic) has no acquisition view: the usual three planes and 3D.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk

THICK_RATIO = 2.0
VIEW_NORMALS = {"Red": (0.0, 0.0, 1.0), "Yellow": (1.0, 0.0, 0.0), "Green": (0.0, 1.0, 0.0)}  # RAS normals


def slice_axis(spacing) -> int | None:
    """The IJK axis (0 = I, 1 = J, 2 = K) along which a stack's slices follow one another: the axis
    whose spacing is ≥ ``THICK_RATIO`` × the larger other spacing; ``None`` for a 3D volume.

    >>> slice_axis((1.4, 1.4, 8.0)), slice_axis((1.0, 1.0, 1.5))
    (2, None)
    """
    spacing = [float(s) for s in spacing]
    axis = int(np.argmax(spacing))
    others = max(s for i, s in enumerate(spacing) if i != axis)
    return axis if spacing[axis] >= THICK_RATIO * others else None


def ijk_to_ras_directions(volumeNode) -> np.ndarray:
    """(3, 3) unit direction columns of the volume's I, J, K axes in RAS."""
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASDirectionMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(3)] for r in range(3)])


def acquisition_view(volumeNode) -> str | None:
    """``"Red"``, ``"Yellow"`` or ``"Green"``: the slice view of a thick-slice stack's acquisition plane (whose
    normal is closest to the slice axis); ``None`` for a 3D volume."""
    axis = slice_axis(volumeNode.GetSpacing())
    if axis is None:
        return None
    normal = ijk_to_ras_directions(volumeNode)[:, axis]
    return max(VIEW_NORMALS, key=lambda name: abs(float(np.dot(normal, VIEW_NORMALS[name]))))


def middle_slice_ras(volumeNode, axis: int) -> tuple[float, float, float]:
    """RAS centre of the volume's middle slice along IJK ``axis`` (index ``n // 2``, centred in-plane)."""
    dims = volumeNode.GetImageData().GetDimensions()
    ijk = [(d - 1) / 2.0 for d in dims]
    ijk[axis] = float(dims[axis] // 2)
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    ras = matrix.MultiplyPoint((*ijk, 1.0))
    return ras[0], ras[1], ras[2]


def show_volume_planes(scene: slicer.vtkMRMLScene, volumeNode) -> str | None:
    """Turn every slice view to the volume's axes; for a thick-slice stack, put its acquisition view on the middle
    slice. Returns that view's name (``None`` for a 3D volume)."""
    main = acquisition_view(volumeNode)
    slice_nodes = scene.GetNodesByClass("vtkMRMLSliceNode")
    for index in range(slice_nodes.GetNumberOfItems()):
        node = slice_nodes.GetItemAsObject(index)
        node.RotateToVolumePlane(volumeNode)
        if main is not None and node.GetSingletonTag() == main:
            node.JumpSliceByCentering(*middle_slice_ras(volumeNode, slice_axis(volumeNode.GetSpacing())))
    return main
