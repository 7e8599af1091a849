"""Conversions between MRML nodes and the engine's arrays / SimpleITK images (no Qt).

Slicer works in RAS, ITK/SimpleITK in LPS: origin and direction rows x, y change sign. Volume arrays are
(K, J, I) = (z, y, x) array order, as in the engine.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import slicer
import torch
import vtk
from vtk.util.numpy_support import get_vtk_array_type, numpy_to_vtk, vtk_to_numpy

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def volume_geometry(volume: slicer.vtkMRMLVolumeNode) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(origin, spacing, directions)`` in RAS; ``directions`` columns are the i, j, k axes."""
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    a = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    return a[:3, 3].copy(), spacing, a[:3, :3] / spacing


def volume_array(volume: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """The voxels as a (K, J, I) array (a copy)."""
    data = volume.GetImageData()
    dims = data.GetDimensions()
    return vtk_to_numpy(data.GetPointData().GetScalars()).reshape(dims[::-1]).copy()


def volume_to_sitk(volume: slicer.vtkMRMLVolumeNode, array: np.ndarray | None = None) -> sitk.Image:
    """A SimpleITK image (LPS) with the volume's voxels (or ``array`` on its grid)."""
    origin, spacing, directions = volume_geometry(volume)
    image = sitk.GetImageFromArray(volume_array(volume) if array is None else array)
    image.SetOrigin(tuple(LPS_FROM_RAS @ origin))
    image.SetSpacing(tuple(spacing))
    image.SetDirection(tuple((LPS_FROM_RAS @ directions).ravel()))
    return image


def new_volume_like(scene: slicer.vtkMRMLScene, reference: slicer.vtkMRMLVolumeNode, array: np.ndarray, name: str,
                    node_class: str = "vtkMRMLScalarVolumeNode") -> slicer.vtkMRMLVolumeNode:
    """A new volume node on ``reference``'s grid (same IJK-to-RAS) holding ``array`` (K, J, I)."""
    data = vtk.vtkImageData()
    data.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    data.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True,
                                                array_type=get_vtk_array_type(array.dtype)))
    node = scene.AddNewNodeByClass(node_class, name)
    matrix = vtk.vtkMatrix4x4()
    reference.GetIJKToRASMatrix(matrix)
    node.SetIJKToRASMatrix(matrix)
    node.SetAndObserveImageData(data)
    node.CreateDefaultDisplayNodes()
    return node


def set_pull_field(transform: slicer.vtkMRMLTransformNode, ddf: torch.Tensor, volume: slicer.vtkMRMLVolumeNode) -> None:
    """Store a pull field as the node's TransformFromParent, in RAS mm on the volume's lattice.

    ``ddf``: ``(1, 3, K, J, I)`` voxels, channel i along array axis i (so channels are (dk, dj, di)).
    """
    origin, spacing, directions = volume_geometry(volume)
    d_ijk = ddf[0].flip(0).movedim(0, -1).double().numpy()  # (K, J, I, 3) with (di, dj, dk)
    u_ras = d_ijk @ (directions * spacing).T
    k, j, i, _ = u_ras.shape
    grid = vtk.vtkImageData()
    grid.SetDimensions(i, j, k)
    grid.SetSpacing(*spacing)
    grid.SetOrigin(*origin)
    grid.GetPointData().SetScalars(numpy_to_vtk(u_ras.reshape(-1, 3), deep=True))
    direction_matrix = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            direction_matrix.SetElement(r, c, directions[r, c])
    grid_transform = slicer.vtkOrientedGridTransform()
    grid_transform.SetDisplacementGridData(grid)
    grid_transform.SetGridDirectionMatrix(direction_matrix)
    grid_transform.SetInterpolationModeToLinear()
    transform.SetAndObserveTransformFromParent(grid_transform)


def labels_from_segmentation(segmentation: slicer.vtkMRMLSegmentationNode, volume: slicer.vtkMRMLVolumeNode,
                             segment_ids: list[str]) -> np.ndarray:
    """Segments as one (K, J, I) label array on the volume's lattice (label = position in ``segment_ids`` + 1).

    The scene is left as it was: the temporary label map goes, with the display node and colour table the export
    adds for it."""
    scene = segmentation.GetScene()
    present = _node_ids(scene)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "drdm-temporary-labels")
    try:
        ids = vtk.vtkStringArray()
        for segment_id in segment_ids:
            ids.InsertNextValue(segment_id)
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(segmentation, ids, labelmap, volume)
        if not ok:
            raise ValueError("the segmentation could not be exported onto the volume's grid")
        return volume_array(labelmap).astype(np.int32)
    finally:
        for node_id in sorted(_node_ids(scene) - present, reverse=True):
            node = scene.GetNodeByID(node_id)
            if node is not None:
                scene.RemoveNode(node)


def _node_ids(scene: slicer.vtkMRMLScene) -> set[str]:
    nodes = scene.GetNodes()
    return {nodes.GetItemAsObject(i).GetID() for i in range(nodes.GetNumberOfItems())}


def segmentation_from_labels(scene: slicer.vtkMRMLScene, labels: np.ndarray, volume: slicer.vtkMRMLVolumeNode,
                             segments: list[tuple[str, str, tuple[float, float, float]]],
                             name: str) -> slicer.vtkMRMLSegmentationNode:
    """A segmentation node from a (K, J, I) label array; ``segments``: (id, name, colour) for labels 1, 2, …"""
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    for value, (segment_id, segment_name, colour) in enumerate(segments, start=1):
        added = node.GetSegmentation().AddEmptySegment(segment_id, segment_name, colour)
        if not added:
            raise RuntimeError("segmentation converter rules are not registered (the Segmentations logic needs a scene)")
        mask = slicer.vtkOrientedImageData()
        mask.SetDimensions(labels.shape[2], labels.shape[1], labels.shape[0])
        mask.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        vtk_to_numpy(mask.GetPointData().GetScalars())[:] = (labels == value).ravel()
        mask.SetImageToWorldMatrix(matrix)
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            mask, node, added, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    return node


def volume_from_sitk(scene: slicer.vtkMRMLScene, image: sitk.Image, name: str,
                     node_class: str = "vtkMRMLScalarVolumeNode") -> slicer.vtkMRMLVolumeNode:
    """A new volume node holding a 2D or 3D scalar SimpleITK image (LPS geometry converted to RAS)."""
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    array = sitk.GetArrayFromImage(image)
    data = vtk.vtkImageData()
    data.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    data.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True,
                                                array_type=get_vtk_array_type(array.dtype)))
    directions = LPS_FROM_RAS @ np.array(image.GetDirection()).reshape(3, 3)
    matrix = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            matrix.SetElement(r, c, directions[r, c] * image.GetSpacing()[c])
        matrix.SetElement(r, 3, (LPS_FROM_RAS @ np.array(image.GetOrigin()))[r])
    node = scene.AddNewNodeByClass(node_class, name)
    node.SetIJKToRASMatrix(matrix)
    node.SetAndObserveImageData(data)
    node.CreateDefaultDisplayNodes()
    return node
