"""DRDMSlicerLib on the real MRML core (slicer-core): outputs, directions, round trips, cancel, errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import DATA, REPO, field_only_model

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")
vtk = pytest.importorskip("vtk")
from vtk.util.numpy_support import numpy_to_vtk, vtk_to_numpy  # noqa: E402

sys.path.insert(0, str(REPO / "DRDMSlicer"))
from drdm.sampler import GenerationCancelled  # noqa: E402
from drdm.settings import DeformationSettings  # noqa: E402
from DRDMSlicerLib.logic import DeformationLogic  # noqa: E402
from DRDMSlicerLib.mrml import set_pull_field, volume_array  # noqa: E402


@pytest.fixture(scope="session")
def scene_bundle(mrml_scene_bundle):
    return mrml_scene_bundle


@pytest.fixture()
def scene(scene_bundle):
    scene_bundle.scene.Clear(0)
    return scene_bundle.scene


@pytest.fixture(scope="module")
def field_only_3d():
    return field_only_model(3, 16, seed=1)


def add_volume(scene, array: np.ndarray, spacing, origin, directions, name="input"):
    data = vtk.vtkImageData()
    data.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    data.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(array).ravel().astype(np.float32), deep=True))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.SetSpacing(*spacing)
    node.SetOrigin(*origin)
    matrix = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            matrix.SetElement(r, c, directions[r][c])
    node.SetIJKToRASDirectionMatrix(matrix)
    node.SetAndObserveImageData(data)
    node.CreateDefaultDisplayNodes()
    return node


def oblique_volume(scene, shape=(20, 30, 36)):
    a, b = np.deg2rad(25), np.deg2rad(15)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    k, j, i = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    array = 100 * np.exp(-3 * (i**2 + j**2 + k**2)) + 40 * np.sin(4 * i) * np.cos(3 * j) + 20 * k
    return add_volume(scene, array, (1.2, 0.9, 2.5), (12.0, -20.0, 7.0), rz @ rx)


def add_segmentation(scene, volume, labels: np.ndarray, names_colours):
    from DRDMSlicerLib.mrml import segmentation_from_labels

    segments = [(n, n, c) for n, c in names_colours]
    return segmentation_from_labels(scene, labels, volume, segments, "input segmentation")


def harden_onto_input_grid(scene, logics, volume, transform):
    """What hardening ``transform`` onto a copy of ``volume`` computes, on the input's own lattice.

    ``hardenTransform`` resamples with vtkImageReslice through the node's TransformFromParent but grows the
    extent (its lattice is shifted by fractions of a voxel, SLICER.md §2.4), so the same reslice is run here
    onto the input lattice; the hardened copy is still made, to check that hardening works on our node.
    """
    copy = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "hardened")
    copy.Copy(volume)
    image = vtk.vtkImageData()
    image.DeepCopy(volume.GetImageData())
    copy.SetAndObserveImageData(image)
    copy.SetAndObserveTransformNodeID(transform.GetID())
    assert logics["Transforms"].hardenTransform(copy) and copy.GetParentTransformNode() is None
    ijk_to_ras, ras_to_ijk = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijk_to_ras)
    volume.GetRASToIJKMatrix(ras_to_ijk)
    chain = vtk.vtkGeneralTransform()
    chain.PostMultiply()
    chain.Concatenate(ijk_to_ras)
    chain.Concatenate(transform.GetTransformFromParent())
    chain.Concatenate(ras_to_ijk)
    reslice = vtk.vtkImageReslice()
    reslice.SetInputData(volume.GetImageData())
    reslice.SetResliceTransform(chain)
    reslice.SetInterpolationModeToLinear()
    dims = volume.GetImageData().GetDimensions()
    reslice.SetOutputOrigin(0, 0, 0)
    reslice.SetOutputSpacing(1, 1, 1)
    reslice.SetOutputExtent(0, dims[0] - 1, 0, dims[1] - 1, 0, dims[2] - 1)
    reslice.SetBackgroundLevel(0)
    reslice.Update()
    return vtk_to_numpy(reslice.GetOutput().GetPointData().GetScalars()).reshape(dims[::-1])


def test_oblique_volume_outputs_and_hardening(scene, scene_bundle, field_only_3d, tmp_path):
    volume = oblique_volume(scene)
    labels = np.zeros(volume_array(volume).shape, dtype=np.int32)
    labels[6:14, 8:22, 10:26] = 1
    labels[8:12, 12:18, 14:20] = 2
    colours = [("liver", (0.9, 0.4, 0.2)), ("lesion", (0.2, 0.8, 0.3))]
    segmentation = add_segmentation(scene, volume, labels, colours)
    nodes_before = scene.GetNumberOfNodes()
    logic = DeformationLogic(scene)
    calls = []
    [sample] = logic.generate(volume, segmentation, settings=DeformationSettings(level=79, seed=3, mode="diffeomorphic"),
                              model=field_only_3d, progress=lambda s, n: calls.append((s, n)))
    assert calls[-1][0] == calls[-1][1]
    assert scene.GetNumberOfNodes() > nodes_before
    # deformed volume on the input grid
    m_in, m_out = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m_in)
    sample.volumeNode.GetIJKToRASMatrix(m_out)
    assert all(abs(m_in.GetElement(r, c) - m_out.GetElement(r, c)) < 1e-9 for r in range(4) for c in range(4))
    deformed = volume_array(sample.volumeNode)
    original = volume_array(volume)
    value_range = float(np.ptp(original))
    assert np.abs(deformed - original).max() > 0.05 * value_range
    # hardening the transform onto a copy of the input reproduces the deformed volume inside the field of view
    hardened = harden_onto_input_grid(scene, scene_bundle.logics, volume, sample.transformNode)
    inside = (slice(2, -2),) * 3
    assert np.abs(hardened - deformed)[inside].max() <= 1e-3 * value_range
    # transform: a grid transform with the pull field as FromParent
    assert sample.transformNode.IsA("vtkMRMLGridTransformNode")
    assert sample.transformNode.GetTransformFromParent() is not None
    # the exported .h5, read by SimpleITK, resamples the input into the same image
    path = logic.export_transform(sample.transformNode, tmp_path / "t.h5")
    from DRDMSlicerLib.mrml import volume_to_sitk

    image = volume_to_sitk(volume)
    again = sitk.GetArrayFromImage(sitk.Resample(image, image, sitk.ReadTransform(str(path)), sitk.sitkLinear))
    assert np.abs(again - deformed)[inside].max() <= 1e-3 * value_range
    for suffix in (".tfm", ".nii.gz"):
        assert logic.export_transform(sample.transformNode, tmp_path / f"t{suffix}").stat().st_size > 0
    # segmentation keeps names, colours and label values
    seg = sample.segmentationNode.GetSegmentation()
    assert [seg.GetSegment(seg.GetNthSegmentID(i)).GetName() for i in range(seg.GetNumberOfSegments())] == ["liver", "lesion"]
    assert np.allclose(seg.GetSegment(seg.GetNthSegmentID(0)).GetColor(), colours[0][1])
    # det J map with the diverging colour table, statistics table, one subject-hierarchy folder
    display = sample.jacobianNode.GetDisplayNode()
    assert display.GetColorNode().GetName().startswith("DRDM det J")
    assert display.GetWindowLevelMin() < 0 < 1 < display.GetWindowLevelMax()
    assert volume_array(sample.jacobianNode).min() > 0  # diffeomorphic: nothing folded
    assert sample.tableNode.GetNumberOfRows() > 5
    # per-segment volume change, named after the segments (drdm.physical.segment_volumes)
    table = sample.tableNode
    rows = {table.GetCellText(r, 0): table.GetCellText(r, 1) for r in range(table.GetNumberOfRows())}
    changes = sample.statistics["segment_volumes"]
    assert [c["name"] for c in changes] == ["liver", "lesion"] and all(c["unit"] == "mL" for c in changes)
    assert rows["liver volume"] == f"{changes[0]['before']:.2f} → {changes[0]['after']:.2f} mL " \
                                   f"({changes[0]['change_percent']:+.1f} %)"
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert "T79 seed3" in sh.GetItemName(sample.folderItemID)
    assert sh.GetItemParent(sh.GetItemByDataNode(sample.volumeNode)) == sample.folderItemID


def test_step_edge_direction(scene, scene_bundle):
    """SLICER.md §2.10: a uniform +2 mm pull along R stored as FromParent moves an edge 2 mm toward −R."""
    shape = (4, 6, 40)
    array = np.zeros(shape)
    array[..., 20:] = 100.0  # edge between i = 19 and 20, i along R (identity directions, 1 mm)
    volume = add_volume(scene, array, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    transform = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "edge pull")
    ddf = torch.zeros(1, 3, *shape)
    ddf[:, 2] = 2.0  # +2 voxels = +2 mm along i = R
    set_pull_field(transform, ddf, volume)
    hardened = harden_onto_input_grid(scene, scene_bundle.logics, volume, transform)
    row = hardened[2, 3]
    assert row[17] == 0 and row[18] == 100.0  # the edge moved from 19.5 to 17.5: 2 mm toward −R


def test_mrb_round_trip(scene, scene_bundle, field_only_3d, tmp_path):
    volume = oblique_volume(scene, (12, 16, 16))
    labels = np.zeros(volume_array(volume).shape, dtype=np.int32)
    labels[3:9, 4:12, 4:12] = 1
    segmentation = add_segmentation(scene, volume, labels, [("organ", (1.0, 0.0, 0.0))])
    [sample] = DeformationLogic(scene).generate(volume, segmentation, settings=DeformationSettings(level=60, seed=0),
                                                model=field_only_3d)
    bundle = tmp_path / "scene.mrb"
    assert scene.WriteToMRB(str(bundle))
    u_before = slicer.util.arrayFromGridTransform(sample.transformNode).copy()
    names = [sample.volumeNode.GetName(), sample.jacobianNode.GetName(), sample.segmentationNode.GetName(),
             sample.tableNode.GetName(), sample.transformNode.GetName()]
    arrays = [volume_array(sample.volumeNode), volume_array(sample.jacobianNode)]
    fresh = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(fresh)
    remote_io = slicer.vtkMRMLRemoteIOLogic()
    remote_io.SetMRMLScene(fresh)
    remote_io.SetMRMLApplicationLogic(app_logic)
    remote_io.GetCacheManager().SetRemoteCacheDirectory(str(tmp_path / "cache"))
    io_logic = slicer.vtkDataIOManagerLogic()
    io_logic.SetMRMLScene(fresh)
    io_logic.SetMRMLApplicationLogic(app_logic)
    io_logic.SetAndObserveDataIOManager(remote_io.GetDataIOManager())
    remote_io.AddDataIOToScene()
    assert fresh.ReadFromMRB(str(bundle))
    for name in names:
        assert fresh.GetFirstNodeByName(name) is not None, name
    for name, array in zip(names[:2], arrays):
        assert np.array_equal(volume_array(fresh.GetFirstNodeByName(name)), array)
    u_after = slicer.util.arrayFromGridTransform(fresh.GetFirstNodeByName(names[4]))
    assert np.allclose(u_after, u_before)


def test_cancel_leaves_scene_unchanged(scene, field_only_3d):
    volume = oblique_volume(scene, (12, 16, 16))
    before = scene.GetNumberOfNodes()
    polls = []

    def cancel():
        polls.append(1)
        return len(polls) > 3

    with pytest.raises(GenerationCancelled):
        DeformationLogic(scene).generate(volume, settings=DeformationSettings(level=60, seed=0, count=2), model=field_only_3d,
                                         cancel=cancel)
    assert scene.GetNumberOfNodes() == before


@pytest.mark.parametrize("case", ["no volume", "4D volume", "model dimension", "empty segmentation", "bad model file"])
def test_errors_leave_scene_unchanged(scene, field_only_3d, case, tmp_path):
    volume = oblique_volume(scene, (12, 16, 16))
    args, kwargs = [volume], dict(model=field_only_3d, settings=DeformationSettings(level=40, seed=0))
    if case == "no volume":
        args = [None]
    elif case == "4D volume":
        vector = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
        data = vtk.vtkImageData()
        data.SetDimensions(8, 8, 8)
        data.AllocateScalars(vtk.VTK_FLOAT, 3)
        vector.SetAndObserveImageData(data)
        args = [vector]
    elif case == "model dimension":
        flat = add_volume(scene, np.random.default_rng(0).random((1, 32, 32)), (1, 1, 1), (0, 0, 0), np.eye(3), "slice")
        args = [flat]
    elif case == "empty segmentation":
        empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
        args = [volume, empty]
    elif case == "bad model file":
        kwargs["model"] = str(tmp_path / "missing.pth")
    before = scene.GetNumberOfNodes()
    with pytest.raises(ValueError) as error:
        DeformationLogic(scene).generate(*args, **kwargs)
    assert scene.GetNumberOfNodes() == before
    assert str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("error, message", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB"), "out of GPU memory"),
    (MemoryError(), "out of memory"),
])
def test_out_of_memory_is_a_clear_error_and_leaves_the_scene(scene, field_only_3d, monkeypatch, error, message):
    from drdm.errors import MEMORY_ADVICE, OutOfMemory
    from DRDMSlicerLib import logic

    def out_of_memory(*args, **kwargs):
        raise error

    monkeypatch.setattr(logic, "deform_images", out_of_memory)
    volume = oblique_volume(scene, (12, 16, 16))
    before = scene.GetNumberOfNodes()
    with pytest.raises(OutOfMemory) as raised:
        DeformationLogic(scene).generate(volume, settings=DeformationSettings(level=40, seed=0), model=field_only_3d)
    assert str(raised.value) == f"{message}: {MEMORY_ADVICE}" and isinstance(raised.value, ValueError)
    assert scene.GetNumberOfNodes() == before


def test_engine_errors_reach_the_caller_unwrapped(scene, field_only_3d):
    """The engine's InputError comes through as itself (a DRDMError, a ValueError), not re-wrapped."""
    from drdm.errors import DRDMError
    from drdm.physical.io import InputError

    flat = add_volume(scene, np.random.default_rng(0).random((1, 32, 32)), (1, 1, 1), (0, 0, 0), np.eye(3), "slice")
    with pytest.raises(InputError, match="3D model cannot deform a 2D image") as raised:
        DeformationLogic(scene).generate(flat, settings=DeformationSettings(level=40, seed=0), model=field_only_3d)
    assert isinstance(raised.value, DRDMError) and isinstance(raised.value, ValueError)


def test_cmr_sample_with_published_model(scene, scene_bundle, cmr_model):
    source = DATA / "cmr" / "patient001_frame01.nii.gz"
    if not source.exists():
        pytest.skip(f"sample data not available: {source}")
    image = sitk.ReadImage(str(source))[:, :, 4:6]
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    ras = np.diag([-1.0, -1.0, 1.0])
    volume = add_volume(scene, array, image.GetSpacing(), tuple(ras @ np.array(image.GetOrigin())), ras @ direction, "cmr")
    [sample] = DeformationLogic(scene).generate(volume, settings=DeformationSettings(level=56, seed=1, mode="diffeomorphic"),
                                                model=cmr_model)
    deformed = volume_array(sample.volumeNode)
    hardened = harden_onto_input_grid(scene, scene_bundle.logics, volume, sample.transformNode)
    inside = (slice(None), slice(2, -2), slice(2, -2))
    assert np.abs(hardened - deformed)[inside].max() <= 1e-3 * float(np.ptp(array))
    assert np.abs(deformed - array).max() > 0.05 * float(np.ptp(array))


def test_default_model_is_the_bundled_one_when_nothing_is_installed(tmp_path, monkeypatch):
    from drdm.model_store import offered
    from DRDMSlicerLib.logic import DeformationLogic, default_model_choice

    monkeypatch.setenv("DRDM_HOME", str(tmp_path))
    monkeypatch.delenv("DRDM_MODEL", raising=False)
    assert default_model_choice() == "cmr-2d"
    local = [c for c in offered.offered_models() if not c.download]  # lct-3d (download) is fetched on first use
    assert [DeformationLogic.ensure_model(c.name) for c in local] == [None] * len(local)
    assert list(tmp_path.iterdir()) == []  # nothing downloaded


def test_view_state_has_one_owner(scene, field_only_3d):
    """show_sample drives the slice composites and the grid display; a sample of a cleared scene is refused."""
    volume = oblique_volume(scene, (12, 16, 16))
    for name in ("Red", "Green"):
        composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
        composite.SetLayoutName(name)
    logic = DeformationLogic(scene)
    [sample] = logic.generate(volume, settings=DeformationSettings(level=40, seed=0, mode="diffeomorphic"), model=field_only_3d)
    composites = [scene.GetNodesByClass("vtkMRMLSliceCompositeNode").GetItemAsObject(i) for i in range(2)]
    # after Generate: the deformed anatomy alone (the det J overlay would hide it), the overlay one call away
    assert all(c.GetBackgroundVolumeID() == sample.volumeNode.GetID() and not c.GetForegroundVolumeID()
               and c.GetForegroundOpacity() == 0.0 for c in composites)
    logic.show_sample(sample, jacobian=True)
    assert all(c.GetForegroundVolumeID() == sample.jacobianNode.GetID() and c.GetForegroundOpacity() == 0.5
               and c.GetBackgroundVolumeID() == sample.volumeNode.GetID() for c in composites)
    logic.show_sample(sample)  # the default is the first view's: no overlay
    assert all(not c.GetForegroundVolumeID() for c in composites)
    logic.show_sample(sample, deformed=False, original=volume, jacobian=False, grid=True)
    assert all(c.GetBackgroundVolumeID() == volume.GetID() and not c.GetForegroundVolumeID() for c in composites)
    display = sample.transformNode.GetDisplayNode()
    assert display.GetVisibility2D() and display.GetVisualizationMode() == display.VIS_MODE_GRID
    logic.show_sample(sample, jacobian=True, jacobian_opacity=0.8, grid=False)
    assert all(c.GetForegroundOpacity() == pytest.approx(0.8) for c in composites)
    assert not display.GetVisibility2D()
    scene.Clear(0)
    assert not logic.is_alive(sample)
    with pytest.raises(ValueError, match="no longer in the scene"):
        logic.show_sample(sample)


def test_slices_choice_and_auto_model_on_a_volume(scene, monkeypatch, tmp_path):
    """A 2D model on a 3D volume: coherent (default) is smooth through the slices, independent is not; ``auto``
    picks the model from the volume and says why; the statistics table carries the roughness ratio."""
    from drdm.models import random_field_model

    monkeypatch.setenv("DRDM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DRDM_MODEL", raising=False)
    k, j, i = np.meshgrid(*[np.linspace(-1, 1, n) for n in (12, 30, 36)], indexing="ij")
    array = 100 * np.exp(-3 * (i**2 + j**2 + k**2)) + 40 * np.sin(4 * i) * np.cos(3 * j) + 20 * k
    a = np.deg2rad(25)
    rotation = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    volume = add_volume(scene, array, (1.2, 1.1, 1.4), (12.0, -20.0, 7.0), rotation)  # near-isotropic, oblique
    logic = DeformationLogic(scene)
    assert logic.slices_apply(volume, 2) and not logic.slices_apply(volume, 3) and not logic.slices_apply(None, 2)
    model = random_field_model("random-field-2d")
    ratios = {}
    for slices in ("coherent", "independent"):
        (sample,) = logic.generate(volume, settings=DeformationSettings(level=48, seed=3, slices=slices), model=model)
        ratios[slices] = sample.statistics["through_plane_roughness_ratio"]
        table = sample.tableNode.GetTable()
        rows = {table.GetValue(r, 0).ToString(): table.GetValue(r, 1).ToString() for r in range(table.GetNumberOfRows())}
        assert rows["slices"] == slices and float(rows["through_plane_roughness_ratio"]) == pytest.approx(ratios[slices], rel=1e-5)
    assert ratios["coherent"] <= 1.5 < 3 < ratios["independent"]
    request = logic.prepare(volume, settings=DeformationSettings(level=10, seed=0), model="auto")
    assert request.model.name == "random-field-3d"
    assert request.model_line.startswith("model: random-field-3d (auto: near-isotropic 3D volume")
    assert "drdm models fetch lct-3d" in request.model_line


def test_jacobian_colours_clear_near_one_and_mark_folding(scene):
    """The det J table: transparent at det J = 1 and within the threshold, opaque where the volume changes by more
    than twice it, folding magenta and opaque; the threshold is the user's."""
    from DRDMSlicerLib.jacobian_colours import DEFAULT_JACOBIAN_THRESHOLD, entry_value

    logic = DeformationLogic(scene)
    table = logic.jacobian_color_node()
    rgba = [0.0] * 4

    def entry(det):
        index = min(range(1, 256), key=lambda i: abs(entry_value(i) - det))
        table.GetColor(index, rgba)
        return list(rgba)

    assert entry_value(128) == 1.0 and entry(1.0)[3] == 0.0
    assert entry(1.2)[3] == 0.0 and entry(0.85)[3] == 0.0  # within |log| < 0.2
    assert entry(1.3)[3] == 1.0 and entry(1.3)[0] == 1.0 and entry(1.3)[2] < 0.9  # shrunk by > 20 %: red
    assert entry(2.0)[2] < entry(1.3)[2]  # more change, more saturated
    assert entry(0.75)[3] == 1.0 and entry(0.75)[2] == 1.0 and entry(0.75)[0] < 0.8  # enlarged: blue
    table.GetColor(0, rgba)
    assert list(rgba) == [1.0, 0.0, 1.0, 1.0]  # folded
    assert DeformationLogic.jacobian_threshold(scene) == DEFAULT_JACOBIAN_THRESHOLD
    logic.jacobian_color_node(0.0)  # threshold 0: everything coloured
    assert entry(1.0)[3] == 1.0 and DeformationLogic.jacobian_threshold(scene) == 0.0
    logic.jacobian_color_node(0.3)
    assert entry(1.3)[3] == 0.0 and entry(1.5)[3] == 1.0


def test_thick_slice_stack_gets_its_acquisition_view_on_the_middle_slice(scene):
    from DRDMSlicerLib.view_layout import acquisition_view, show_volume_planes, slice_axis

    assert slice_axis((1.4, 1.4, 8.0)) == 2 and slice_axis((1.0, 1.0, 1.9)) is None and slice_axis((6, 1, 1)) == 0
    for tag in ("Red", "Yellow", "Green"):
        node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
        node.SetLayoutName(tag)
        node.SetSingletonTag(tag)
        node.SetOrientation({"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal"}[tag])
    a = np.deg2rad(20)  # a stack of 5 slices 8 mm apart, tilted 20° about S: still an axial acquisition
    directions = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    stack = add_volume(scene, np.zeros((5, 24, 24)), (1.4, 1.4, 8.0), (0.0, 0.0, 100.0), directions)
    assert acquisition_view(stack) == "Red"
    assert show_volume_planes(scene, stack) == "Red"
    red = scene.GetSingletonNode("Red", "vtkMRMLSliceNode")
    to_ras = red.GetSliceToRAS()
    assert to_ras.GetElement(2, 3) == pytest.approx(100.0 + 8.0 * 2)  # the middle slice (index 2 of 5)
    assert abs(to_ras.GetElement(2, 2)) == pytest.approx(1.0)  # normal along the slice axis
    sagittal_stack = add_volume(scene, np.zeros((24, 24, 4)), (9.0, 1.0, 1.0), (0, 0, 0), np.eye(3))
    assert acquisition_view(sagittal_stack) == "Yellow"  # slices along I (R): sagittal
    assert acquisition_view(add_volume(scene, np.zeros((8, 8, 8)), (1.0, 1.0, 1.5), (0, 0, 0), np.eye(3))) is None


def test_scene_snapshot_removes_everything_added_since(scene, field_only_3d):
    from DRDMSlicerLib.scene_snapshot import SceneSnapshot

    before = scene.GetNumberOfNodes()
    snapshot = SceneSnapshot(scene)
    volume = oblique_volume(scene, (12, 16, 16))
    logic = DeformationLogic(scene)
    [sample] = logic.generate(volume, settings=DeformationSettings(level=40, seed=0, mode="diffeomorphic"), model=field_only_3d)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert sh.GetItemName(sample.folderItemID)
    assert snapshot.restore() > 5
    left = {scene.GetNthNode(i).GetClassName() for i in range(before, scene.GetNumberOfNodes())}
    assert snapshot.added_data_nodes() == [] and left <= {"vtkMRMLSubjectHierarchyNode"}, left  # SH: created here
    assert not logic.is_alive(sample) and not scene.IsNodePresent(volume)
    assert sh.GetItemName(sample.folderItemID) == ""  # the result folder (named after the input) is gone too


# -- issue 26: a size in mm, segments kept still or alone deformed --------------------------------------------------

STACK_SPACING = (1.5, 1.5, 6.0)  # a stack of thick slices, (I, J, K) mm: a 2D model deforms it coherently


@pytest.fixture(scope="module")
def random_field_2d():
    from drdm.models import random_field_model

    return random_field_model("random-field-2d")


def region_stack(scene, empty_segment: bool = False):
    """A 3 × 48 × 48 stack (1.5 × 1.5 × 6 mm) with segments "bone" (ID bone, label 1) and "organ" (ID organ_id,
    label 2), and optionally a third segment that is empty."""
    shape = (3, 48, 48)
    k, j, i = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    array = 100 * np.exp(-3 * (i**2 + j**2)) + 40 * np.sin(4 * i) * np.cos(3 * j) + 10 * k
    volume = add_volume(scene, array, STACK_SPACING, (5.0, -3.0, 2.0), np.eye(3), "stack")
    labels = np.zeros(shape, dtype=np.int32)
    labels[:, 8:20, 8:20] = 1
    labels[:, 28:40, 26:40] = 2
    from DRDMSlicerLib.mrml import segmentation_from_labels

    segments = [("bone", "bone", (1.0, 1.0, 0.9)), ("organ_id", "organ", (0.8, 0.2, 0.2))]
    segments += [("empty", "empty", (0.0, 0.0, 1.0))] if empty_segment else []
    return volume, segmentation_from_labels(scene, labels, volume, segments, "regions"), labels


def displacement_mm(sample) -> np.ndarray:
    """|u| in mm on the input's lattice, read from the grid transform node (what Slicer applies)."""
    return np.linalg.norm(slicer.util.arrayFromGridTransform(sample.transformNode), axis=-1)


def table_rows(sample) -> dict[str, str]:
    table = sample.tableNode
    return {table.GetCellText(r, 0): table.GetCellText(r, 1) for r in range(table.GetNumberOfRows())}


def distance_mm(mask: np.ndarray) -> np.ndarray:
    """Distance (mm, 3D, on the stack's lattice) to ``mask``; 0 inside."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(STACK_SPACING)
    return sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False,
                                                               useImageSpacing=True)).clip(min=0)


def test_size_in_mm_is_reached_with_the_same_shape(scene, random_field_2d):
    """The size is the mean |u| of the grid transform over the volume, within 10 % for every seed and size, and one
    seed keeps its shape (the fields at two sizes point the same way); the results are named by size and the
    table records what was asked and reached."""
    volume, segmentation, _ = region_stack(scene)
    logic = DeformationLogic(scene)
    for seed in (0, 1):
        [own] = logic.generate(volume, settings=DeformationSettings(seed=seed, speed="faster"), model=random_field_2d)
        natural = displacement_mm(own).mean()
        assert own.statistics["mean_mm"] == pytest.approx(natural, rel=1e-4)
        u_own = slicer.util.arrayFromGridTransform(own.transformNode)
        for target in (0.5, round(0.5 * natural, 2), round(1.1 * natural, 2)):
            [sample] = logic.generate(volume, segmentation, settings=DeformationSettings(seed=seed, speed="faster",
                                      magnitude=target), model=random_field_2d)
            reached = displacement_mm(sample).mean()
            assert abs(reached - target) <= 0.1 * target, (seed, target, reached)
            assert sample.statistics["size_reached_mm"] == pytest.approx(reached, rel=1e-4)
            u = slicer.util.arrayFromGridTransform(sample.transformNode)
            assert (u * u_own).sum() / np.linalg.norm(u) / np.linalg.norm(u_own) > 0.9  # the same deformation, smaller
            assert volume_array(sample.jacobianNode).min() > 0  # no size folds
            rows = table_rows(sample)
            assert float(rows["magnitude_mm"]) == pytest.approx(target)
            assert float(rows["size_reached_mm"]) == pytest.approx(reached, rel=1e-4)
            assert float(rows["natural_mm"]) == pytest.approx(natural, rel=1e-4)
            assert sample.volumeNode.GetName() == f"stack DRDM {target:g}mm seed{seed} volume"
    assert "T48 seed1" in own.volumeNode.GetName()  # without a size: named by the level, as before


def test_level_defaults_to_the_models_first_level(scene, random_field_2d):
    volume, _, _ = region_stack(scene)
    logic = DeformationLogic(scene)
    first = random_field_2d.forward_process().first_level
    request = logic.prepare(volume, settings=DeformationSettings(seed=0), model=random_field_2d)
    assert request.level == first and request.magnitude is None and request.keep == request.only == ()
    [sample] = logic.generate(volume, settings=DeformationSettings(seed=0, speed="faster"), model=random_field_2d)
    assert sample.statistics["level"] == first and table_rows(sample)["level"] == str(first)
    assert logic.prepare(volume, settings=DeformationSettings(level=12, seed=0), model=random_field_2d).level == 12


def test_kept_segment_does_not_move(scene, random_field_2d):
    """|u| ≤ 0.1 mm on every voxel of the kept segment (read from the grid transform), the size reached over the
    voxels allowed to move, motion elsewhere; chosen by name or by segment ID alike."""
    volume, segmentation, labels = region_stack(scene)
    logic = DeformationLogic(scene)
    results = [logic.generate(volume, segmentation, settings=DeformationSettings(seed=2, speed="faster", magnitude=2.0,
                              margin=4.0), model=random_field_2d, keep=[chosen])[0] for chosen in ("bone", "bone")]
    [by_id] = logic.generate(volume, segmentation, settings=DeformationSettings(seed=2, speed="faster", magnitude=2.0,
                             margin=4.0), model=random_field_2d, keep=["organ_id"])
    for sample, kept in ((results[0], 1), (by_id, 2)):
        u = displacement_mm(sample)
        assert u[labels == kept].max() <= 0.1
        assert sample.statistics["max_mm_in_kept"] <= 0.1
        assert abs(u[labels != kept].mean() - 2.0) <= 0.2  # the size refers to where the deformation is allowed
        assert u[distance_mm(labels == kept) > 8.0].max() > 1.0  # and away from it the anatomy moves
    rows = table_rows(results[0])
    assert rows["keep"] == "1" and rows["keep_segments"] == "bone" and float(rows["margin_mm"]) == 4.0
    assert float(rows["max_mm_in_kept"]) <= 0.1 and "only_segments" not in rows
    assert by_id.statistics["keep_segments"] == ["organ"]


def test_kept_segment_of_an_oblique_volume_with_a_3d_model(scene, field_only_3d):
    volume = oblique_volume(scene, (12, 16, 16))
    labels = np.zeros(volume_array(volume).shape, dtype=np.int32)
    labels[4:8, 5:11, 5:11] = 1
    segmentation = add_segmentation(scene, volume, labels, [("lesion", (0.2, 0.8, 0.3))])
    [sample] = DeformationLogic(scene).generate(volume, segmentation, settings=DeformationSettings(level=60, seed=1,
                                                margin=3.0), model=field_only_3d, keep=["lesion"])
    u = displacement_mm(sample)
    assert u[labels == 1].max() <= 0.1 < u.max()
    assert sample.statistics["max_mm_in_kept"] <= 0.1


def test_only_region_moves_alone(scene, random_field_2d):
    """Beyond the deform-only segment plus the margin |u| ≤ 0.1 mm; inside it the anatomy moves."""
    volume, segmentation, labels = region_stack(scene)
    [sample] = DeformationLogic(scene).generate(volume, segmentation, settings=DeformationSettings(seed=4, speed="faster",
                                                margin=5.0), model=random_field_2d, only=["organ"])
    u = displacement_mm(sample)
    organ = labels == 2
    assert u[distance_mm(organ) >= 5.0].max() <= 0.1
    assert u[organ].max() > 0.5
    assert sample.statistics["max_mm_outside_region"] <= 0.1
    rows = table_rows(sample)
    assert rows["only_segments"] == "organ" and rows["only"] == "2" and float(rows["margin_mm"]) == 5.0
    assert rows["keep"] == "none" and "keep_segments" not in rows
    assert rows["magnitude_mm"] == "auto (the model's own size)"
    assert float(rows["size_reached_mm"]) == pytest.approx(sample.statistics["size_reached_mm"], rel=1e-5)


@pytest.mark.parametrize("case, kwargs, message", [
    ("keep without a segmentation", dict(keep=["bone"]), "needs an input segmentation"),
    ("absent segment", dict(keep=["spine"]), "has no segment 'spine' (its segments: bone, organ, empty)"),
    ("empty segment", dict(only=["empty"]), "segment 'empty' is empty on the input volume's grid"),
    ("in both lists", dict(keep=["bone"], only=["organ_id", "bone"]), "'bone' is both kept still"),
    ("margin 0", dict(keep=["bone"], margin=0.0), "the margin must be a positive number of mm"),
    ("size 0", dict(magnitude=0.0), "the size must be a positive number of mm"),
    ("size beyond reach", dict(magnitude=500.0), "beyond reach"),
    ("size in reference mode", dict(magnitude=2.0, mode="reference"), "need mode 'diffeomorphic'"),
])
def test_size_and_region_errors_leave_the_scene_unchanged(scene, random_field_2d, case, kwargs, message):
    from drdm.errors import DRDMError

    volume, segmentation, _ = region_stack(scene, empty_segment=True)
    segmentation_arg = None if case == "keep without a segmentation" else segmentation
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    before, items_before = scene.GetNumberOfNodes(), sh.GetNumberOfItems()
    segments = {name: kwargs.pop(name) for name in ("keep", "only") if name in kwargs}
    with pytest.raises(DRDMError) as raised:  # the settings the front end builds, or the logic, refuse in one line
        DeformationLogic(scene).generate(volume, segmentation_arg, model=random_field_2d,
                                         settings=DeformationSettings(seed=0, speed="faster", **kwargs), **segments)
    assert message in str(raised.value) and "\n" not in str(raised.value), str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert scene.GetNumberOfNodes() == before and sh.GetNumberOfItems() == items_before


def test_a_sample_at_a_size_exports_under_its_size(scene, random_field_2d, tmp_path):
    volume, segmentation, _ = region_stack(scene)
    [sample] = DeformationLogic(scene).generate(volume, segmentation, settings=DeformationSettings(seed=5, speed="faster",
                                                magnitude=1.5), model=random_field_2d, keep=["bone"])
    folder = DeformationLogic.export_sample_folder(sample, tmp_path)
    assert folder.name == "stack_1.5mm_seed5"
    import json

    stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
    assert stats["magnitude_mm"] == 1.5 and stats["keep"] == [1] and stats["max_mm_in_kept"] <= 0.1
