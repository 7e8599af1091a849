"""DeformationLogic: DRDM deformations of MRML volumes and segmentations (Qt-free; runs on slicer-core).

Every sample is computed completely before any node is added, so a cancelled or failed run leaves the
scene exactly as it was.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from drdm.errors import out_of_memory_as_error
from drdm.model_store.choice import ModelChoice, resolve_model, slices_choice_applies
from drdm.model_store.loading import load_for_image
from drdm.model_store.registry import DEFAULT_BUNDLED_MODEL
from drdm.models import DRDMModel
from drdm.physical.deform import DeformationResult, deform_images
from drdm.physical.io import staged_directory
from drdm.physical.sample_folder import sample_name, sample_title, write_sample
from drdm.physical.segment_volumes import volume_change_rows
from drdm.physical.steering import SteeringError
from drdm.settings import DEFAULTS, DeformationSettings

from .jacobian_colours import (
    DEFAULT_JACOBIAN_THRESHOLD,
    JACOBIAN_COLOURS,
    JACOBIAN_RANGE,
    JACOBIAN_SHOWN_FIRST,
    jacobian_table,
)
from .mrml import (
    labels_from_segmentation,
    new_volume_like,
    segmentation_from_labels,
    set_pull_field,
    volume_geometry,
    volume_to_sitk,
)

JACOBIAN_COLOR_NODE_NAME = "DRDM det J (1 = volume kept)"


@dataclass
class DeformationSample:
    """The nodes of one generated deformation (all in one subject-hierarchy folder)."""

    volumeNode: slicer.vtkMRMLScalarVolumeNode
    transformNode: slicer.vtkMRMLGridTransformNode
    segmentationNode: slicer.vtkMRMLSegmentationNode | None
    jacobianNode: slicer.vtkMRMLScalarVolumeNode
    tableNode: slicer.vtkMRMLTableNode
    folderItemID: int
    statistics: dict = field(default_factory=dict)
    inputVolumeNode: slicer.vtkMRMLScalarVolumeNode | None = None
    result: DeformationResult | None = None  # the engine's outputs (files of the CLI's sample folder)
    inputImage: sitk.Image | None = None
    inputLabels: sitk.Image | None = None
    inputSegmentationNode: slicer.vtkMRMLSegmentationNode | None = None
    model_line: str = ""  # how the model was chosen, e.g. "model: cmr-2d (auto: stack of thick slices (...))"


@dataclass
class DeformationRequest:
    """What a computation needs, copied out of the scene by :meth:`DeformationLogic.prepare`."""

    volumeNode: slicer.vtkMRMLScalarVolumeNode
    segmentationNode: slicer.vtkMRMLSegmentationNode | None
    segments: list[tuple[str, str, tuple[float, float, float]]] | None
    image: sitk.Image
    labels: sitk.Image | None
    model: DRDMModel
    settings: DeformationSettings  # concrete for the model (level and seed set); keep/only: label values, segment k
    # of ``segments`` is label k + 1
    choice: ModelChoice | None = None  # how the model was chosen (``auto``: with its reason)

    @property
    def level(self) -> int:
        return int(self.settings.level)

    @property
    def seed(self) -> int:
        return int(self.settings.seed)

    @property
    def count(self) -> int:
        return self.settings.count

    @property
    def mode(self) -> str:
        return self.settings.mode

    @property
    def speed(self) -> str:
        return self.settings.speed

    @property
    def magnitude(self) -> float | None:
        return self.settings.magnitude

    @property
    def keep(self) -> tuple[int, ...]:
        return self.settings.keep

    @property
    def only(self) -> tuple[int, ...]:
        return self.settings.only

    def segment_names(self, labels: tuple[int, ...]) -> list[str]:
        """The names of the segments behind label values (label k is the k-th segment of ``segments``)."""
        return [self.segments[label - 1][1] for label in labels] if self.segments else []

    @property
    def model_line(self) -> str:
        """One line for the status display, e.g. ``model: cmr-2d (auto: stack of thick slices (...))``."""
        return (self.choice or ModelChoice(self.model.name)).line(self.model.name)


def default_model_choice() -> str:
    """The model offered first: the bundled ``cmr-2d`` when :func:`drdm.model_store.offered.offered_models` offers it, else
    the first choice offered."""
    from drdm.model_store.offered import offered_models

    choices = offered_models(include_cache=False)
    return next((choice.name for choice in choices if choice.name == DEFAULT_BUNDLED_MODEL), choices[0].name)


class DeformationLogic:
    """Generate DRDM deformations of volumes in a scene.

    Example::

        logic = DeformationLogic(scene)
        samples = logic.generate(volumeNode, segmentationNode, model="cmr-2d", seed=0, magnitude=3.0,
                                 keep=["spine"])  # about 3 mm mean |u|, the segment "spine" not moved
        samples[0].volumeNode, samples[0].transformNode, samples[0].jacobianNode
    """

    def __init__(self, scene: slicer.vtkMRMLScene) -> None:
        self.scene = scene

    @staticmethod
    def ensure_model(name: str, progress: Callable[[int, int | None], None] | None = None,
                     cancel: Callable[[], bool] | None = None) -> Path | None:
        """Download (verified) a registry model that is not available locally (``lct-3d``); returns its path, or
        ``None`` for names that need nothing (bundled or built-in models, files, cached models, ``auto``).
        ``cancel()`` returning True stops the download (:class:`drdm.model_store.download.DownloadCancelled`), keeping nothing."""
        from drdm.model_store.download import download_needed, fetch

        if not download_needed(name):
            return None
        return fetch(name, progress=progress, cancel=cancel)

    @staticmethod
    def model_for(volumeNode, model) -> ModelChoice:
        """The model that ``model`` (a name, a file, a loaded model, or ``auto``) means for ``volumeNode``, with the
        reason of an automatic choice (:func:`drdm.model_store.choice.choose_model`)."""
        if isinstance(model, DRDMModel):
            return ModelChoice(model.name)
        return resolve_model(model, lambda: volume_to_sitk(volumeNode))

    @staticmethod
    def slices_apply(volumeNode, model) -> bool:
        """Whether the coherent/independent slices choice matters: a 2D model on a 3D volume. ``model``: a loaded
        model, a name (``auto`` decided by the volume's geometry: :func:`drdm.model_store.choice.model_dims_hint`) or the
        model's dimensionality."""
        if volumeNode is None or volumeNode.GetImageData() is None:
            return False
        ndims = model.ndims if isinstance(model, DRDMModel) else model
        return slices_choice_applies(ndims, volumeNode.GetImageData().GetDimensions(), volumeNode.GetSpacing())

    # -- validation ---------------------------------------------------------------------------------

    @staticmethod
    def _check_volume(volumeNode) -> None:
        if volumeNode is None:
            raise ValueError("select an input volume")
        if not volumeNode.IsA("vtkMRMLScalarVolumeNode") or volumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
            raise ValueError(f"{volumeNode.GetName()}: a scalar volume is needed (not a vector, 4D or label map volume)")
        data = volumeNode.GetImageData()
        if data is None or 0 in data.GetDimensions():
            raise ValueError(f"{volumeNode.GetName()}: the volume holds no voxels")
        if data.GetNumberOfScalarComponents() != 1:
            raise ValueError(f"{volumeNode.GetName()}: has {data.GetNumberOfScalarComponents()} components per voxel "
                             "(4D/RGB); a scalar volume is needed")

    @staticmethod
    def _segments(segmentationNode) -> list[tuple[str, str, tuple[float, float, float]]]:
        segmentation = segmentationNode.GetSegmentation()
        ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
        if not ids:
            raise ValueError(f"{segmentationNode.GetName()}: the segmentation has no segments")
        return [(sid, segmentation.GetSegment(sid).GetName(), tuple(segmentation.GetSegment(sid).GetColor())) for sid in ids]

    @staticmethod
    def region_labels(segmentationNode, segments, keep, only) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The label values (segment k of ``segments`` is label k + 1, as :func:`.mrml.labels_from_segmentation`
        numbers them) of the ``keep`` and ``only`` segments, given by segment ID or name. Raises
        :class:`drdm.physical.steering.SteeringError` (one line) for regions without a segmentation, a segment that
        is not in it, or a segment in both lists."""
        keep, only = list(keep or ()), list(only or ())
        if not keep and not only:
            return (), ()
        if segmentationNode is None:
            raise SteeringError("keeping segments still or deforming only some needs an input segmentation")
        by_id = {sid: value for value, (sid, _, _) in enumerate(segments, start=1)}
        by_name: dict[str, list[int]] = {}
        for value, (_, name, _) in enumerate(segments, start=1):
            by_name.setdefault(name, []).append(value)

        def label(segment: str) -> int:
            if segment in by_id:
                return by_id[segment]
            if len(by_name.get(segment, ())) == 1:
                return by_name[segment][0]
            if segment in by_name:
                raise SteeringError(f"{segmentationNode.GetName()}: several segments are named {segment!r}; "
                                    "choose them by segment ID")
            names = ", ".join(name for _, name, _ in segments)
            raise SteeringError(f"{segmentationNode.GetName()} has no segment {segment!r} (its segments: {names})")

        keep_labels = tuple(dict.fromkeys(label(str(s)) for s in keep))
        only_labels = tuple(dict.fromkeys(label(str(s)) for s in only))
        both = [value for value in keep_labels if value in only_labels]
        if both:
            raise SteeringError(f"segment {segments[both[0] - 1][1]!r} is both kept still and the only one deformed: "
                                "choose one")
        return keep_labels, only_labels

    # -- main entry point ---------------------------------------------------------------------------

    def generate(self, volumeNode, segmentationNode=None, *, model, settings: DeformationSettings = DEFAULTS,
                 keep: Sequence[str] = (), only: Sequence[str] = (), progress: Callable[[int, int], None] | None = None,
                 cancel: Callable[[], bool] | None = None) -> list[DeformationSample]:
        """Generate ``settings.count`` deformations (seeds ``seed``, ``seed + 1``, …; None: drawn once) of ``volumeNode``.

        ``settings`` (:class:`drdm.settings.DeformationSettings`, built once by the front end): ``magnitude``, the
        size in mm, the mean |u| over the volume (over where the deformation is allowed with ``keep``/``only``),
        reached within 10 % (the search aims at 1 %) up to 1.5× the model's own size, one seed keeping its shape at
        every size (``None``: the model's own size); ``margin``; ``level``, the start level T′, the starting noise of
        the recovery, which changes the draw more than its size (``None``: the model's first level); ``mode``,
        ``speed``, ``device``, ``slices``, ``precision``. Its ``keep``/``only`` label values are replaced by the
        segments named here: ``keep``, segments of ``segmentationNode`` (IDs or names) that are not deformed;
        ``only``, the segments that alone, with ``margin`` mm around them, are deformed (:mod:`drdm.physical.steering`).

        ``progress(step, total)`` counts recovery steps over all samples; ``cancel()`` returning True stops the
        run with :class:`drdm.sampler.GenerationCancelled` and no node is added. Bad input and running out of
        memory raise ``ValueError`` (the engine's :class:`drdm.errors.DRDMError`) with a message for the user; the
        scene is then unchanged too. ``model`` may be ``"auto"`` (:func:`drdm.model_store.choice.choose_model`).
        The CUDA-graph recovery step follows the engine's rule (:func:`drdm.settings.cuda_graph_by_rule`).

        The three phases are public for front ends that compute off the main thread (the scene is not
        thread-safe): :meth:`prepare` and :meth:`add_samples` on the scene's thread, :meth:`compute` anywhere.
        """
        request = self.prepare(volumeNode, segmentationNode, model=model, settings=settings, keep=keep, only=only)
        return self.add_samples(request, self.compute(request, progress=progress, cancel=cancel))

    @out_of_memory_as_error()  # loading the model on the GPU and copying the volume can run out of memory too
    def prepare(self, volumeNode, segmentationNode=None, *, model, settings: DeformationSettings = DEFAULTS,
                keep: Sequence[str] = (), only: Sequence[str] = ()) -> DeformationRequest:
        """Check the input and copy what the computation needs out of the scene (call on the scene's thread).

        Everything checkable before the run is checked here, before the model is loaded: the settings
        (:class:`drdm.settings.DeformationSettings`: a size or a margin that is not positive, regions or a size in
        reference mode), the regions (:meth:`region_labels`) and segments that are empty on the volume's grid. A size
        beyond reach is known only once the sample is drawn: :meth:`compute` raises it."""
        self._check_volume(volumeNode)
        segments = self._segments(segmentationNode) if segmentationNode is not None else None
        keep_labels, only_labels = self.region_labels(segmentationNode, segments, keep, only)
        settings = settings.but(keep=keep_labels, only=only_labels)
        image = volume_to_sitk(volumeNode)
        labels = None
        if segments is not None:
            array = labels_from_segmentation(segmentationNode, volumeNode, [s[0] for s in segments])
            if not array.any():
                raise ValueError(f"{segmentationNode.GetName()}: the segments are empty on the input volume's grid")
            present = set(np.unique(array).tolist())
            for value in keep_labels + only_labels:
                if value not in present:
                    raise SteeringError(f"segment {segments[value - 1][1]!r} is empty on the input volume's grid "
                                        "(or hidden under another segment)")
            labels = sitk.GetImageFromArray(array)
            labels.CopyInformation(image)
        loaded, choice = load_for_image(model, image, settings.device)
        return DeformationRequest(volumeNode, segmentationNode, segments, image, labels, loaded,
                                  settings.for_model(loaded), choice)

    @staticmethod
    def compute(request: DeformationRequest, progress: Callable[[int, int], None] | None = None,
                cancel: Callable[[], bool] | None = None) -> list[DeformationResult]:
        """Run the request's deformations (touches no MRML node: safe on a worker thread).

        On CUDA the samples run as sampler batches where memory allows (:func:`drdm.physical.deform.deform_images`); on the
        CPU one by one, so sample ``k`` is a lone run with seed ``seed + k`` (batching there measured 1.39× samples/s
        at count 8 but moves a sample by up to 0.83 voxels against its lone run).
        """
        with out_of_memory_as_error():  # DRDMError (a ValueError) for bad input and for memory alike
            results = deform_images(request.model, request.image, request.labels, settings=request.settings,
                                    progress=progress, cancel=cancel)
        return results

    def add_samples(self, request: DeformationRequest, results: list[DeformationResult]) -> list[DeformationSample]:
        """Add the nodes of computed deformations to the scene (call on the scene's thread)."""
        if not self.scene.IsNodePresent(request.volumeNode):
            raise ValueError("the input volume was removed from the scene during the computation")
        return [self._add_sample_nodes(request, result) for result in results]

    # -- node creation ------------------------------------------------------------------------------

    def _add_sample_nodes(self, request: DeformationRequest, result: DeformationResult) -> DeformationSample:
        scene, volumeNode = self.scene, request.volumeNode
        seed = result.statistics["seed"]
        # as the CLI names its sample folders: one seed at several sizes gives several results
        base = sample_name(f"{volumeNode.GetName()} DRDM", request.level, seed, request.magnitude, separator=" ")
        volume = new_volume_like(scene, volumeNode, sitk.GetArrayFromImage(result.image), f"{base} volume")
        transform = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", f"{base} transform")
        set_pull_field(transform, result.ddf, volumeNode)
        jacobian = new_volume_like(scene, volumeNode, sitk.GetArrayFromImage(result.jacobian).astype(np.float32),
                                   f"{base} det J")
        self._style_jacobian(jacobian)
        segmentation = None
        if request.segments is not None:
            segmentation = segmentation_from_labels(scene, sitk.GetArrayFromImage(result.labels), volumeNode,
                                                    request.segments, f"{base} segmentation")
        stats = dict(result.statistics, mode=request.mode, speed=request.speed, model=request.model.name)
        if request.keep:  # the engine records label values; the user chose segments
            stats["keep_segments"] = request.segment_names(request.keep)
        if request.only:
            stats["only_segments"] = request.segment_names(request.only)
        if request.segments is not None and "segment_volumes" in stats:  # label k is the k-th segment
            stats["segment_volumes"] = [dict(change, name=request.segments[change["label"] - 1][1])
                                        for change in stats["segment_volumes"]]
        table = self._statistics_table(stats, f"{base} statistics")
        folder = self._folder(base, [volume, transform, jacobian, table] + ([segmentation] if segmentation else []))
        sample = DeformationSample(volume, transform, segmentation, jacobian, table, folder, stats, volumeNode, result,
                                   request.image, request.labels, request.segmentationNode, request.model_line)
        self.show_sample(sample)
        return sample

    def _folder(self, name: str, nodes: list) -> int:
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)
        folder = sh.CreateFolderItem(sh.GetSceneItemID(), name)
        for node in nodes:
            item = sh.GetItemByDataNode(node)
            if item:
                sh.SetItemParent(item, folder)
            else:  # no subject-hierarchy plugin added the item (headless scenes)
                sh.CreateItem(folder, node)
        return folder

    def _statistics_table(self, stats: dict, name: str) -> slicer.vtkMRMLTableNode:
        table = self.scene.AddNewNodeByClass("vtkMRMLTableNode", name)
        keys, values = vtk.vtkStringArray(), vtk.vtkStringArray()
        keys.SetName("statistic")
        values.SetName("value")
        for key, value in stats.items():
            if key == "segment_volumes":
                continue
            keys.InsertNextValue(str(key))
            values.InsertNextValue(self._table_value(key, value))
        for key, value in volume_change_rows(stats.get("segment_volumes")):
            keys.InsertNextValue(key)
            values.InsertNextValue(value)
        table.AddColumn(keys)
        table.AddColumn(values)
        return table

    @staticmethod
    def _table_value(key: str, value) -> str:
        if value is None and key == "magnitude_mm":
            return "auto (the model's own size)"
        if isinstance(value, float):
            return f"{value:.6g}"
        if isinstance(value, (list, tuple)):
            return ", ".join(str(item) for item in value) or "none"
        return str(value)

    def jacobian_color_node(self, threshold: float | None = None) -> slicer.vtkMRMLColorTableNode:
        """The det J colour table (one per scene; :mod:`.jacobian_colours`): blue < 1 < red, magenta ≤ 0,
        transparent where ``|log det J| < threshold`` (default: the last one set, else
        ``DEFAULT_JACOBIAN_THRESHOLD``)."""
        node = self.scene.GetFirstNodeByName(JACOBIAN_COLOR_NODE_NAME)
        if node is None:
            node = self.scene.AddNewNodeByClass("vtkMRMLColorTableNode", JACOBIAN_COLOR_NODE_NAME)
            node.SetTypeToUser()
            node.SetNumberOfColors(JACOBIAN_COLOURS)
            node.SetSaveWithScene(True)
            threshold = DEFAULT_JACOBIAN_THRESHOLD if threshold is None else threshold
        if threshold is not None and node.GetAttribute("drdm.threshold") != repr(float(threshold)):
            modifying = node.StartModify()
            for index, (name, r, g, b, alpha) in enumerate(jacobian_table(float(threshold))):
                node.SetColor(index, name, r, g, b, alpha)
            node.EndModify(modifying)
            node.SetAttribute("drdm.threshold", repr(float(threshold)))
        return node

    @staticmethod
    def jacobian_threshold(scene) -> float:
        """The threshold the scene's det J colour table was made with (the default if none yet)."""
        node = scene.GetFirstNodeByName(JACOBIAN_COLOR_NODE_NAME) if scene is not None else None
        value = node.GetAttribute("drdm.threshold") if node is not None else None
        return float(value) if value else DEFAULT_JACOBIAN_THRESHOLD

    def _style_jacobian(self, jacobian) -> None:
        display = jacobian.GetDisplayNode()
        display.SetAndObserveColorNodeID(self.jacobian_color_node().GetID())
        display.AutoWindowLevelOff()
        low, high = JACOBIAN_RANGE
        display.SetWindowLevelMinMax(low - (high - low) / 254.0, high)  # values <= 0 take the first (magenta) colour

    def is_alive(self, sample: DeformationSample) -> bool:
        """True while every node of ``sample`` is still in the scene (a closed scene or a deleted node ends it)."""
        nodes = [sample.volumeNode, sample.transformNode, sample.jacobianNode, sample.tableNode]
        nodes += [sample.segmentationNode] if sample.segmentationNode is not None else []
        return all(node is not None and self.scene.IsNodePresent(node) for node in nodes)

    def show_sample(self, sample: DeformationSample, *, deformed: bool = True, jacobian: bool = JACOBIAN_SHOWN_FIRST,
                    jacobian_opacity: float = 0.5, grid: bool = False, original=None,
                    jacobian_threshold: float | None = None) -> None:
        """The one owner of what the slice views show for a sample (Slicer module and web app alike).

        ``deformed``: the deformed volume as background (else ``original``, by default the input volume);
        ``jacobian``: det J as foreground at ``jacobian_opacity``, transparent where ``|log det J| <
        jacobian_threshold`` (``None``: keep the current threshold); off by default (``JACOBIAN_SHOWN_FIRST``), and so
        right after :meth:`generate`: the views first show the deformed anatomy alone, the overlay is one call away;
        ``grid``: the transform drawn as a deformation grid in the slice views.
        """
        if not self.is_alive(sample):
            raise ValueError("this result is no longer in the scene (it was deleted or the scene was closed)")
        original = original if original is not None else sample.inputVolumeNode
        background = sample.volumeNode if deformed or original is None else original
        if jacobian_threshold is not None:
            self.jacobian_color_node(jacobian_threshold)
        composites = self.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
        for index in range(composites.GetNumberOfItems()):
            composite = composites.GetItemAsObject(index)
            composite.SetBackgroundVolumeID(background.GetID())
            composite.SetForegroundVolumeID(sample.jacobianNode.GetID() if jacobian else None)
            composite.SetForegroundOpacity(float(jacobian_opacity) if jacobian else 0.0)
        shown = background is sample.volumeNode
        for segmentation, visible in ((sample.segmentationNode, shown), (sample.inputSegmentationNode, not shown)):
            if segmentation is not None and self.scene.IsNodePresent(segmentation) and segmentation.GetDisplayNode():
                segmentation.GetDisplayNode().SetVisibility(visible)
        self.show_grid(sample, grid)

    def show_grid(self, sample: DeformationSample, visible: bool) -> None:
        """Draw (or hide) the sample's transform as a deformation grid in the slice views."""
        transform = sample.transformNode
        if transform.GetDisplayNode() is None:
            if not visible:
                return
            transform.CreateDefaultDisplayNodes()
        display = transform.GetDisplayNode()
        if visible:
            display.SetVisualizationMode(display.VIS_MODE_GRID)
            display.SetAndObserveRegionNode(sample.volumeNode)
            spacing = min(volume_geometry(sample.volumeNode)[1])  # in-plane on anisotropic stacks
            display.SetGridSpacingMm(max(5.0 * spacing, 2.0))
        display.SetVisibility2D(bool(visible))
        display.SetVisibility3D(False)
        display.SetVisibility(bool(visible))

    # -- export -------------------------------------------------------------------------------------

    @staticmethod
    def export_transform(transformNode, path: str | os.PathLike) -> Path:
        """Write a transform node to ``.h5``/``.tfm``/``.nii.gz`` (ITK, LPS) through a transform storage node."""
        path = Path(path)
        name = path.name.lower()
        if not name.endswith((".h5", ".tfm", ".txt", ".nii.gz", ".nii", ".nrrd", ".mha")):
            raise ValueError(f"{path}: choose a .h5, .tfm or .nii.gz file")
        storage = slicer.vtkMRMLTransformStorageNode()
        storage.SetFileName(str(path))
        if not storage.WriteData(transformNode) or not path.is_file():
            raise ValueError(f"{path}: the transform could not be written")
        return path

    @staticmethod
    def export_sample_folder(sample: DeformationSample, folder: str | os.PathLike) -> Path:
        """Write ``sample`` as the CLI's sample folder (image, labels, transform.h5, ddf, jacobian, stats.json,
        qa.png) at ``folder/<input>_T<level>_seed<seed>`` (``<input>_<size>mm_seed<seed>`` when a size was asked); the
        folder appears only when complete."""
        if sample.result is None or sample.inputImage is None:
            raise ValueError("this result holds no engine outputs to export (it was not generated in this session)")
        stats = sample.statistics
        name = sample.inputVolumeNode.GetName() if sample.inputVolumeNode is not None else "volume"
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        final = Path(folder) / sample_name(stem, stats["level"], stats["seed"], stats.get("magnitude_mm"))
        with staged_directory(final) as staging:
            write_sample(staging, sample.inputImage, sample.inputLabels, sample.result, sample_title(name, stats))
        return final

    def export_all(self, samples: list[DeformationSample], folder: str | os.PathLike) -> list[Path]:
        """Write every sample's volume (.nrrd), det J (.nrrd), transform (.h5), segmentation (.seg.nrrd) and
        statistics (.csv) into ``folder``; returns the files written."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for sample in samples:
            stem = sample.volumeNode.GetName().removesuffix(" volume").replace(" ", "_")
            pairs = [(sample.volumeNode, slicer.vtkMRMLVolumeArchetypeStorageNode(), f"{stem}_volume.nrrd"),
                     (sample.jacobianNode, slicer.vtkMRMLVolumeArchetypeStorageNode(), f"{stem}_detJ.nrrd"),
                     (sample.tableNode, slicer.vtkMRMLTableStorageNode(), f"{stem}_statistics.csv")]
            if sample.segmentationNode is not None:
                pairs.append((sample.segmentationNode, slicer.vtkMRMLSegmentationStorageNode(), f"{stem}_segmentation.seg.nrrd"))
            for node, storage, filename in pairs:
                storage.SetFileName(str(folder / filename))
                if not storage.WriteData(node):
                    raise ValueError(f"{folder / filename}: could not be written")
                written.append(folder / filename)
            written.append(self.export_transform(sample.transformNode, folder / f"{stem}_transform.h5"))
        return written
