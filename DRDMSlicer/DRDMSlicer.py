"""DRDMSlicer: Generate deformations — the 3D Slicer module (wiring only; the work is in DRDMSlicerLib and drdm)."""

import logging
import os
import sys
import time

import qt
import slicer

# The oldest Slicer this module supports. 5.10 is the first release on Python 3.12 (5.0-5.8 ship Python 3.9.10,
# Slicer/Slicer:SuperBuild/External_python.cmake), and the engine needs Python >= 3.10 (pyproject.toml). Every Slicer
# API used below was read at tag v5.10.0; Testing/slicer_module/test_module_static.py checks the GUI bindings against that tag's
# parameterNodeWrapper/guiConnectors.py. Checked before anything newer than Slicer 5.0 is imported, so an older
# Slicer shows this message instead of a traceback (this file keeps to Python 3.9 syntax for that reason).
MINIMUM_SLICER_VERSION = (5, 10)


def _too_old_message():
    """A message for the user when this Slicer is older than MINIMUM_SLICER_VERSION, else None."""
    if (slicer.app.majorVersion, slicer.app.minorVersion) >= MINIMUM_SLICER_VERSION:
        return None
    major, minor = MINIMUM_SLICER_VERSION
    return (f"The DRDM module (Generate Deformations) needs 3D Slicer {major}.{minor} or newer; this is Slicer "
            f"{slicer.app.applicationVersion}. Install the current Slicer from https://download.slicer.org, then the "
            "DRDMSlicer extension from its Extensions Manager.")


_TOO_OLD = _too_old_message()
if _TOO_OLD is not None:
    logging.error(_TOO_OLD)
    if not slicer.app.commandOptions().testingEnabled:
        qt.QTimer.singleShot(0, lambda: slicer.util.errorDisplay(_TOO_OLD, windowTitle="DRDM"))  # once the GUI is up
    raise ImportError(_TOO_OLD)  # the module is not registered: its widget would fail on this Slicer

from typing import Annotated  # noqa: E402  (after the version check, on purpose)

import vtk  # noqa: E402
from drdm.model_store.choice import AUTO, DOWNLOAD_SUFFIX, slices_choice_applies  # noqa: E402  (torch-free: the auto rule)
from drdm.settings import (  # noqa: E402  (torch-free: the one set of defaults)
    DEFAULTS,
    DEVICES,
    MAX_INTERACTIVE_COUNT,
    MODES,
    SLICE_MODES,
    SPEEDS,
    DeformationSettings,
)
from DRDMSlicerLib.progress import ProgressClock  # noqa: E402  (pure Python: the one time-left estimate)
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode  # noqa: E402
from slicer.i18n import tr as _  # noqa: E402
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper  # noqa: E402
from slicer.ScriptedLoadableModule import (  # noqa: E402
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin  # noqa: E402

# auto (decided from the volume: drdm.model_store.choice) is preselected without asking the engine, so opening the
# module stays cheap; the registry's offered models join it once the GUI is up (DRDMSlicerWidget.refreshModelList)
DEFAULT_MODEL = AUTO
IMPORT_MODEL_ITEM = "Import file…"
MAX_LEVEL = 80  # the level slider's end: the models offered have 80 levels (an imported model may have more: auto reaches them)


class DRDMSlicer(ScriptedLoadableModule):
    """Module description shown by Slicer."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Generate Deformations (DRDM)")
        self.parent.categories = [_("Registration")]
        self.parent.dependencies = []
        self.parent.contributors = ["DRDMSlicer developers"]
        self.parent.helpText = _(
            "Generate new, plausible, topology-preserving deformations of a volume (and its segmentation) with the "
            "Deformation-Recovery Diffusion Model: a random multi-scale deformation, then step-by-step learned "
            "recovery. Size (mm) sets how far the anatomy moves (the mean displacement; auto: the model's own size); "
            "segments of the input segmentation can be kept still, or be the only ones deformed. "
            "Outputs: the deformed volume, a grid transform (the displacement field, exportable for ITK "
            "and registration tools), the deformed segmentation, a Jacobian-determinant map of the pull map (blue, det J "
            "< 1: anatomy locally enlarged; red, > 1: shrunk; magenta: folded) and a table of statistics.<br>"
            "Zheng J., Mo Y., Sun Y., Li J., Wu F., Wang Z., Vincent T., Papież B.W. "
            "<i>Deformation-Recovery Diffusion Model (DRDM): Instance Deformation for Image Manipulation and "
            "Synthesis.</i> Medical Image Analysis 110, 103987 (2026); arXiv:2407.07295."
        )
        self.parent.acknowledgementText = _(
            "Built on the authors' public DRDM code and published cardiac checkpoint (Apache-2.0) and on the 3D Slicer "
            "PyTorch extension."
        )


@parameterNodeWrapper
class DRDMSlicerParameterNode:
    """The module's parameters, kept in the scene (each is bound to the .ui widget whose SlicerParameterName matches)."""

    inputVolume: vtkMRMLScalarVolumeNode
    inputSegmentation: vtkMRMLSegmentationNode
    # the size in mm (mean |u|); 0 shows as "auto": the model's own size (DEFAULTS.magnitude is None)
    magnitude: Annotated[float, WithinRange(0.0, 100.0)] = DEFAULTS.magnitude or 0.0
    margin: Annotated[float, WithinRange(0.5, 100.0)] = DEFAULTS.margin  # mm around kept / only segments
    autoLevel: bool = DEFAULTS.level is None  # the model's first level (DeformationSettings.start_level)
    # used when autoLevel is off; a run with autoLevel on shows the level it used here
    level: Annotated[int, WithinRange(0, MAX_LEVEL)] = DEFAULTS.level or 0  # an int on a ctkSliderWidget: new in Slicer 5.10
    count: Annotated[int, WithinRange(1, MAX_INTERACTIVE_COUNT)] = DEFAULTS.count
    seed: Annotated[int, WithinRange(0, 2**31 - 1)] = 0
    randomSeed: bool = True
    mode: Annotated[str, Choice(list(MODES))] = DEFAULTS.mode
    speed: Annotated[str, Choice(list(SPEEDS))] = DEFAULTS.speed
    device: Annotated[str, Choice(list(DEVICES))] = DEFAULTS.device
    slices: Annotated[str, Choice(list(SLICE_MODES))] = DEFAULTS.slices
    showDeformed: bool = True
    showJacobian: bool = False  # DRDMSlicerLib.jacobian_colours.JACOBIAN_SHOWN_FIRST: the anatomy first, det J one click away
    jacobianOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    jacobianThreshold: Annotated[float, WithinRange(0.0, 0.5)] = 0.2  # DRDMSlicerLib.jacobian_colours default
    showGrid: bool = False


def ensure_requirements() -> None:
    """PyTorch in the required version range through the PyTorch extension (after one confirmation), and
    safetensors; the engine itself ships with this module. Raises RuntimeError with a message for the user."""
    from DRDMSlicerLib.requirements import (
        SAFETENSORS_REQUIREMENT,
        TORCH_REQUIREMENT,
        unmet_requirement,
        version_specifier,
    )

    try:
        import PyTorchUtils
    except ModuleNotFoundError:
        raise RuntimeError(_("This module needs the PyTorch extension. Install 'PyTorch' from the Extensions "
                             "Manager, restart Slicer, then try again.")) from None
    problem = unmet_requirement(TORCH_REQUIREMENT)
    if problem is not None:
        if "torch" in sys.modules:  # an unsuitable torch is already loaded: it cannot be replaced in this session
            raise RuntimeError(_("DRDM cannot use the PyTorch loaded in this session ({problem}). Update PyTorch in "
                                 "the PyTorch Utils module, restart Slicer, then try again.").format(problem=problem))
        if not slicer.util.confirmOkCancelDisplay(
                _("DRDM needs PyTorch ({problem}). Install it now with the PyTorch extension (a CUDA build when an "
                  "NVIDIA GPU is present; this can take several minutes)?").format(problem=problem),
                windowTitle=_("Install PyTorch")):
            raise RuntimeError(_("PyTorch is required ({problem}); nothing was installed.").format(problem=problem))
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
            askConfirmation=False, torchVersionRequirement=version_specifier(TORCH_REQUIREMENT))
        problem = unmet_requirement(TORCH_REQUIREMENT)
        if torch is None or problem is not None:
            raise RuntimeError(_("PyTorch could not be installed ({problem}); see the Python console for "
                                 "details.").format(problem=problem or _("the installer returned nothing")))
    if unmet_requirement(SAFETENSORS_REQUIREMENT) is not None:
        slicer.util.pip_install(SAFETENSORS_REQUIREMENT)


class DRDMSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Wires the .ui to the logic; no computation here. What the views show is decided by
    ``DeformationLogic.show_sample`` (the same call as the web app's)."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._cancelRequested = False
        self._running = False
        self._samples = []  # DeformationSample of the last run; emptied when the scene closes
        self._sourceVolume = None  # the input volume of those samples ("original" in the views)
        self._importedModels = {}  # combo label -> DRDMModel loaded from a file
        self._modelChoice = DEFAULT_MODEL  # the last model item chosen (restored when an import fails)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DRDMSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DRDMSlicerLogic()
        self.ui.modelComboBox.addItems([DEFAULT_MODEL, IMPORT_MODEL_ITEM])
        self.ui.modelComboBox.setCurrentText(DEFAULT_MODEL)
        self.ui.modelComboBox.currentTextChanged.connect(self.onModelChosen)
        qt.QTimer.singleShot(0, self.refreshModelList)  # after opening: the list reads the registry (imports PyTorch)
        self.ui.generateButton.clicked.connect(self.onGenerate)
        self.ui.cancelButton.clicked.connect(self.onCancel)
        self.ui.exportTransformButton.clicked.connect(self.onExportTransform)
        self.ui.exportAllButton.clicked.connect(self.onExportAll)
        self.ui.resultComboBox.currentIndexChanged.connect(self.updateView)
        self.ui.showDeformedCheckBox.toggled.connect(self.updateView)
        self.ui.showJacobianCheckBox.toggled.connect(self.updateView)
        self.ui.jacobianOpacitySlider.valueChanged.connect(self.updateView)
        self.ui.jacobianThresholdSlider.valueChanged.connect(self.updateView)
        self.ui.showGridCheckBox.toggled.connect(self.updateView)
        self.ui.autoLevelCheckBox.toggled.connect(self.updateButtons)
        self.ui.keepSegmentSelector.segmentSelectionChanged.connect(self.updateButtons)
        self.ui.onlySegmentSelector.segmentSelectionChanged.connect(self.updateButtons)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()
        self.updateButtons()

    def cleanup(self) -> None:
        self._cancelRequested = True
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        # Like the template: the GUI is disconnected and the ModifiedEvent observer removed; enter() reconnects.
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self._cancelRequested = True
        self._samples = []  # their nodes are being removed: nothing may act on them any more
        self._sourceVolume = None
        self.updateResultList()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
        self.updateButtons()

    def updateButtons(self, caller=None, event=None) -> None:
        ready = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.generateButton.enabled = ready and not self._running
        self.ui.cancelButton.enabled = self._running
        self.ui.exportTransformButton.enabled = bool(self._samples) and not self._running
        self.ui.exportAllButton.enabled = bool(self._samples) and not self._running
        self.ui.seedSpinBox.enabled = bool(self._parameterNode) and not self._parameterNode.randomSeed
        self.ui.jacobianOpacitySlider.enabled = self.ui.showJacobianCheckBox.checked
        self.ui.jacobianThresholdSlider.enabled = self.ui.showJacobianCheckBox.checked
        slices = bool(self._parameterNode) and self.logic.slicesApply(self._parameterNode.inputVolume, self.currentModel())
        self.ui.slicesLabel.visible = self.ui.slicesComboBox.visible = slices  # a 2D model on a 3D volume only
        self.ui.levelSlider.enabled = not self.ui.autoLevelCheckBox.checked
        self.updateRegionSelectors()

    def updateRegionSelectors(self) -> None:
        """The keep-still / deform-only selectors list the segments of the input segmentation; the margin matters
        only once a segment is chosen."""
        segmentation = self._parameterNode.inputSegmentation if self._parameterNode else None
        for selector in (self.ui.keepSegmentSelector, self.ui.onlySegmentSelector):
            if selector.currentNodeID() != (segmentation.GetID() if segmentation else ""):
                selector.setCurrentNode(segmentation)
            selector.enabled = segmentation is not None
        self.ui.marginSpinBox.enabled = bool(self.regionSegments(self.ui.keepSegmentSelector)
                                             or self.regionSegments(self.ui.onlySegmentSelector))

    def regionSegments(self, selector) -> list:
        """The segment IDs checked in ``selector``, none without an input segmentation (the selector keeps the IDs
        of a segmentation no longer chosen)."""
        if not (self._parameterNode and self._parameterNode.inputSegmentation):
            return []
        return list(selector.selectedSegmentIDs())

    # -- model choice ----------------------------------------------------------------------------------

    def refreshModelList(self) -> None:
        """The model list from the registry (:func:`DRDMSlicerLib.model_list.model_items`), the imported models first,
        keeping the current choice; left as it is while PyTorch is missing (nothing is installed from here)."""
        from DRDMSlicerLib.requirements import SAFETENSORS_REQUIREMENT, TORCH_REQUIREMENT, unmet_requirement

        if unmet_requirement(TORCH_REQUIREMENT) or unmet_requirement(SAFETENSORS_REQUIREMENT):
            return
        try:
            items = list(self._importedModels) + self.logic.modelItems() + [IMPORT_MODEL_ITEM]
        except Exception:  # an unreadable cache must not break the module: the list stays as it is
            logging.exception("DRDM: the model list could not be read")
            return
        current = self._modelChoice
        if current not in items:  # "lct-3d (download)", once fetched, is "lct-3d"
            bare = current.removesuffix(DOWNLOAD_SUFFIX)
            current = bare if bare in items else DEFAULT_MODEL
        self.ui.modelComboBox.clear()
        self.ui.modelComboBox.addItems(items)
        self.ui.modelComboBox.setCurrentText(current)

    def onModelChosen(self, text: str) -> None:
        if text != IMPORT_MODEL_ITEM:
            self._modelChoice = text
            self.updateButtons()
            return
        path = qt.QFileDialog.getOpenFileName(slicer.util.mainWindow(), _("Import a DRDM model"), "",
                                              _("DRDM models (*.safetensors *.json *.pth)"))
        model = self.importModel(path) if path else None
        if model is None:  # cancelled or failed: back on the model chosen before, never left on "Import file…"
            self.ui.modelComboBox.setCurrentText(self._modelChoice)
            return
        label = f"{model.name} ({os.path.basename(path)})"
        self._importedModels[label] = model
        if self.ui.modelComboBox.findText(label) < 0:
            self.ui.modelComboBox.insertItem(0, label)
        self.ui.modelComboBox.setCurrentText(label)

    def importModel(self, path: str):
        """The model in ``path``, or None once the reason is shown (PyTorch first: without it nothing loads)."""
        try:
            with slicer.util.tryWithErrorDisplay(_("The model could not be imported.")):
                ensure_requirements()
            with slicer.util.tryWithErrorDisplay(_("The model could not be imported."), waitCursor=True):
                return self.logic.loadModel(path)
        except Exception:  # tryWithErrorDisplay has shown it (and re-raises)
            return None

    def currentModel(self):
        text = self.ui.modelComboBox.currentText
        return self._importedModels.get(text, text.removesuffix(DOWNLOAD_SUFFIX))

    # -- generation ------------------------------------------------------------------------------------

    def onGenerate(self) -> None:
        params = self._parameterNode
        if not params or not params.inputVolume:
            return
        inputVolume = params.inputVolume
        self._cancelRequested = False
        self._running = True
        self.updateButtons()
        clock = ProgressClock()

        def progress(step: int, total: int) -> None:
            self.ui.progressBar.maximum = total
            self.ui.progressBar.value = step
            clock.update(step, total)
            self.ui.statusLabel.text = _("Step {step}/{total}, about {seconds:.0f} s left").format(
                step=step, total=total, seconds=clock.seconds_left() or 0.0)
            slicer.app.processEvents()  # keeps the UI responsive and lets Cancel (and a scene close) through

        try:
            ensure_requirements()
            from drdm.model_store.download import DownloadCancelled
            from drdm.sampler import GenerationCancelled

            model = self.currentModel()
            try:
                if isinstance(model, str):
                    self.logic.ensureModel(model, progress=self.downloadProgress, cancel=lambda: self._cancelRequested)
                    self.refreshModelList()  # PyTorch and the model are there now ("lct-3d (download)" is "lct-3d")
                settings = DeformationSettings(  # the one settings object of this click (seed None: drawn once)
                    level=None if params.autoLevel else params.level, seed=None if params.randomSeed else params.seed,
                    count=params.count, mode=params.mode, speed=params.speed, device=params.device,
                    slices=params.slices, magnitude=params.magnitude or None, margin=params.margin)
                samples = self.logic.generate(
                    inputVolume, params.inputSegmentation, model=model, settings=settings,
                    keep=self.regionSegments(self.ui.keepSegmentSelector),
                    only=self.regionSegments(self.ui.onlySegmentSelector),
                    progress=progress, cancel=lambda: self._cancelRequested)
            except (GenerationCancelled, DownloadCancelled):
                self.ui.statusLabel.text = _("Cancelled; no output was added and nothing was downloaded.")
                return
            self._samples = samples
            self._sourceVolume = inputVolume
            self.updateResultList()
            if params.randomSeed and samples:  # show the seed that was drawn: typing it in repeats the run
                params.seed = int(samples[0].statistics["seed"])
            used = int(samples[0].statistics["level"]) if samples else None
            if params.autoLevel and used is not None and 0 <= used <= MAX_LEVEL:  # show the level "auto" meant
                params.level = used
            line = samples[0].model_line if samples else ""
            self.ui.statusLabel.text = _("{count} deformation(s) in {seconds:.1f} s; {size}{model}").format(
                count=len(samples), seconds=time.monotonic() - clock.started, size=self.sizeLine(samples), model=line)
            self.updateView()
        except Exception as error:  # shown to the user, never a traceback; the logic adds nodes only at the end
            # (bad input, a wrong model, CUDA out of memory: the logic words them as ValueError)
            logging.exception("DRDM generation failed")
            slicer.util.errorDisplay(_("Generating deformations failed: {error}").format(error=error))
            self.ui.statusLabel.text = ""
        finally:
            self._running = False
            self.ui.progressBar.value = 0
            self.updateButtons()

    @staticmethod
    def sizeLine(samples) -> str:
        """``"size 3.02 mm (asked 3 mm); "`` for a run with a size, ``""`` otherwise."""
        stats = samples[0].statistics if samples else {}
        if stats.get("magnitude_mm") is None or stats.get("size_reached_mm") is None:
            return ""
        return _("size {reached:.2f} mm (asked {asked:g} mm); ").format(reached=stats["size_reached_mm"],
                                                                        asked=stats["magnitude_mm"])

    def downloadProgress(self, done: int, total) -> None:
        self.ui.progressBar.maximum = total or 0
        self.ui.progressBar.value = done
        self.ui.statusLabel.text = _("Downloading the model: {mb:.1f} MB").format(mb=done / 1e6)
        slicer.app.processEvents()

    def onCancel(self) -> None:
        self._cancelRequested = True
        self.ui.statusLabel.text = _("Cancelling…")

    # -- results ---------------------------------------------------------------------------------------

    def liveSamples(self) -> list:
        """The samples whose nodes are all still in the scene (a deleted result is dropped from the list)."""
        if self._samples:
            alive = [sample for sample in self._samples if self.logic.deformation.is_alive(sample)]
            if len(alive) != len(self._samples):
                self._samples = alive
                self.updateResultList()
                self.updateButtons()
        return self._samples

    def updateResultList(self) -> None:
        combo = self.ui.resultComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for sample in self._samples:
            combo.addItem(sample.volumeNode.GetName())
        combo.setCurrentIndex(len(self._samples) - 1)
        combo.blockSignals(wasBlocked)

    def selectedSample(self):
        samples = self.liveSamples()
        if not samples:
            return None
        index = self.ui.resultComboBox.currentIndex
        return samples[index] if 0 <= index < len(samples) else samples[-1]

    def updateView(self, *unused) -> None:
        """Show the selected result as the output controls say (widget values: they are current even before the
        parameter node has been told)."""
        self.updateButtons()
        sample = self.selectedSample()
        if sample is None:
            return
        original = self._sourceVolume
        if original is not None and not slicer.mrmlScene.IsNodePresent(original):
            original = None
        if original is None and not self.ui.showDeformedCheckBox.checked:
            self.ui.statusLabel.text = _("The original volume is no longer in the scene; showing the deformed one.")
        try:
            self.logic.deformation.show_sample(
                sample, deformed=self.ui.showDeformedCheckBox.checked, jacobian=self.ui.showJacobianCheckBox.checked,
                jacobian_opacity=self.ui.jacobianOpacitySlider.value, grid=self.ui.showGridCheckBox.checked,
                original=original, jacobian_threshold=self.ui.jacobianThresholdSlider.value)
        except Exception as error:  # a message box, never a traceback
            logging.exception("DRDM: showing a result failed")
            slicer.util.errorDisplay(_("The result could not be shown: {error}").format(error=error))

    def onExportTransform(self) -> None:
        sample = self.selectedSample()
        if sample is None:
            slicer.util.errorDisplay(_("There is no result to export (it was deleted or the scene was closed)."))
            return
        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Export transform"), "transform.h5",
                                              _("ITK transform (*.h5 *.tfm);;Displacement field (*.nii.gz)"))
        if path:
            with slicer.util.tryWithErrorDisplay(_("Exporting the transform failed."), waitCursor=True):
                self.logic.export_transform(sample.transformNode, path)
                self.ui.statusLabel.text = _("Transform written to {path}").format(path=path)

    def onExportAll(self) -> None:
        samples = self.liveSamples()
        if not samples:
            slicer.util.errorDisplay(_("There is no result to export (it was deleted or the scene was closed)."))
            return
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Export all outputs to a folder"))
        if folder:
            with slicer.util.tryWithErrorDisplay(_("Exporting failed."), waitCursor=True):
                written = self.logic.export_all(samples, folder)
                self.ui.statusLabel.text = _("{count} files written to {folder}").format(count=len(written), folder=folder)


class DRDMSlicerLogic(ScriptedLoadableModuleLogic):
    """Thin Slicer-side logic: the parameter node plus :class:`DRDMSlicerLib.logic.DeformationLogic` (created on
    first use, after PyTorch is available). View state belongs to ``DeformationLogic.show_sample``."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._deformation = None

    @property
    def deformation(self):
        if self._deformation is None:
            from DRDMSlicerLib.logic import DeformationLogic

            self._deformation = DeformationLogic(slicer.mrmlScene)
        self._deformation.scene = slicer.mrmlScene
        return self._deformation

    def getParameterNode(self):
        return DRDMSlicerParameterNode(super().getParameterNode())

    def ensureModel(self, name: str, progress=None, cancel=None):
        """Download a registry model (verified) if it is not available yet; ``cancel()`` True stops it."""
        return self.deformation.ensure_model(name, progress, cancel)

    @staticmethod
    def slicesApply(volumeNode, model) -> bool:
        """Whether to offer the slices choice: a 2D model on a 3D volume (torch-free; ``auto`` by geometry)."""
        if volumeNode is None or volumeNode.GetImageData() is None:
            return False
        dims = volumeNode.GetImageData().GetDimensions()
        return slices_choice_applies(getattr(model, "ndims", model), dims, volumeNode.GetSpacing())

    def loadModel(self, path: str):
        """A model from a file (on the CPU; generation moves it to the chosen device): an authors' ``.pth``
        checkpoint or a ``.safetensors``/``.json`` model."""
        from drdm.model_store.loading import load_model_spec

        return load_model_spec(path)

    @staticmethod
    def modelItems() -> list:
        """The model list's items from the registry's offered models (:func:`DRDMSlicerLib.model_list.model_items`)."""
        from DRDMSlicerLib.model_list import model_items

        return model_items()

    def generate(self, volumeNode, segmentationNode=None, *, model, settings=DEFAULTS, keep=(), only=(),
                 progress=None, cancel=None):
        """:meth:`DRDMSlicerLib.logic.DeformationLogic.generate`: ``settings`` a
        :class:`drdm.settings.DeformationSettings` (level None: the model's first level; magnitude the size in mm,
        None: the model's own), ``keep``/``only`` segment IDs of ``segmentationNode``."""
        return self.deformation.generate(volumeNode, segmentationNode, model=model, settings=settings, keep=keep,
                                         only=only, progress=progress, cancel=cancel)

    def export_transform(self, transformNode, path):
        return self.deformation.export_transform(transformNode, path)

    def export_all(self, samples, folder):
        return self.deformation.export_all(samples, folder)


class DRDMSlicerTest(ScriptedLoadableModuleTest):
    """Slicer self-test: a small deformation of a synthetic volume."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_DRDMSlicer1()

    def test_DRDMSlicer1(self) -> None:
        import numpy as np
        import torch
        from drdm.models import untrained_model
        from drdm.training.phantoms import cardiac_phantom

        self.delayDisplay("Deforming a procedural phantom")
        image, _labels = cardiac_phantom(32, 2, seed=0)
        volume = slicer.util.addVolumeFromArray(image[0].numpy(), name="phantom")
        model = untrained_model(2, size=32)
        torch.nn.init.zeros_(model.network.conv_out.weight)  # recovery off: the random field alone
        torch.nn.init.zeros_(model.network.conv_out.bias)
        logic = DRDMSlicerLogic()
        [sample] = logic.generate(volume, model=model, settings=DeformationSettings(level=79, seed=1))
        deformed = slicer.util.arrayFromVolume(sample.volumeNode)
        self.assertEqual(deformed.shape, slicer.util.arrayFromVolume(volume).shape)
        self.assertGreater(float(np.abs(deformed - slicer.util.arrayFromVolume(volume)).max()), 0.01)
        self.assertGreater(float(slicer.util.arrayFromVolume(sample.jacobianNode).min()), 0.0)
        logging.info("DRDMSlicer self-test passed")
        self.delayDisplay("Test passed")
