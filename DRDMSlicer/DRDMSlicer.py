"""DRDMSlicer: Generate deformations — the 3D Slicer module (wiring only; the work is in DRDMSlicerLib and drdm)."""

from __future__ import annotations

import logging
import os
import random
import time
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

TORCH_REQUIREMENT = ">=2.1"
MODEL_CHOICES = ["cmr-2d", "drdm-demo-2d", "drdm-demo-3d"]  # registry names; the demo models are bundled
IMPORT_MODEL_ITEM = "Import file…"


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
            "recovery. Outputs: the deformed volume, a grid transform (the displacement field, exportable for ITK "
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
    """The module's parameters, kept in the scene."""

    inputVolume: vtkMRMLScalarVolumeNode
    inputSegmentation: vtkMRMLSegmentationNode
    level: Annotated[int, WithinRange(0, 80)] = 56
    count: Annotated[int, WithinRange(1, 100)] = 1
    seed: Annotated[int, WithinRange(0, 2**31 - 1)] = 0
    randomSeed: bool = True
    mode: Annotated[str, Choice(["diffeomorphic", "reference"])] = "diffeomorphic"
    speed: Annotated[str, Choice(["fast", "faithful"])] = "fast"
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    showJacobian: bool = True


def ensure_requirements() -> None:
    """PyTorch through the PyTorch extension, after one confirmation; the engine ships with this module."""
    try:
        import PyTorchUtils
    except ModuleNotFoundError:
        raise RuntimeError(_("This module needs the PyTorch extension. Install 'PyTorch' from the Extensions "
                             "Manager, restart Slicer, then try again.")) from None
    torch_logic = PyTorchUtils.PyTorchUtilsLogic()
    if not torch_logic.torchInstalled():
        if not slicer.util.confirmOkCancelDisplay(
                _("DRDM needs PyTorch ({requirement}), installed now by the PyTorch extension (a CUDA build when an "
                  "NVIDIA GPU is present; this can take several minutes).").format(requirement=TORCH_REQUIREMENT),
                windowTitle=_("Install PyTorch")):
            raise RuntimeError(_("PyTorch is required; nothing was installed."))
        torch = torch_logic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT)
        if torch is None:
            raise RuntimeError(_("PyTorch could not be installed; see the Python console for details."))
    try:
        import safetensors  # noqa: F401  (the project's model format)
    except ModuleNotFoundError:
        slicer.util.pip_install("safetensors>=0.4")


class DRDMSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Wires the .ui to the logic; no computation here."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._cancelRequested = False
        self._running = False
        self._samples = []
        self._importedModels = {}

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DRDMSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DRDMSlicerLogic()
        self.ui.modelComboBox.addItems(MODEL_CHOICES + [IMPORT_MODEL_ITEM])
        self.ui.modelComboBox.setCurrentText(self.logic.defaultModel())
        self.ui.modelComboBox.currentTextChanged.connect(self.onModelChosen)
        self.ui.generateButton.clicked.connect(self.onGenerate)
        self.ui.cancelButton.clicked.connect(self.onCancel)
        self.ui.exportTransformButton.clicked.connect(self.onExportTransform)
        self.ui.exportAllButton.clicked.connect(self.onExportAll)
        self.ui.showJacobianCheckBox.toggled.connect(self.onShowJacobian)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()
        self.updateButtons()

    def cleanup(self) -> None:
        self.removeObservers()
        self._cancelRequested = True

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        self._cancelRequested = True
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

    def onModelChosen(self, text: str) -> None:
        if text != IMPORT_MODEL_ITEM:
            return
        path = qt.QFileDialog.getOpenFileName(slicer.util.mainWindow(), _("Import a DRDM model"), "",
                                              _("DRDM models (*.safetensors *.json *.pth)"))
        if not path:
            self.ui.modelComboBox.setCurrentIndex(0)
            return
        with slicer.util.tryWithErrorDisplay(_("This file is not a DRDM model."), waitCursor=True):
            model = self.logic.loadModel(path)
            label = f"{model.name} ({os.path.basename(path)})"
            self._importedModels[label] = model
            self.ui.modelComboBox.insertItem(0, label)
            self.ui.modelComboBox.setCurrentIndex(0)

    def currentModel(self):
        text = self.ui.modelComboBox.currentText
        return self._importedModels.get(text, text)

    def onGenerate(self) -> None:
        params = self._parameterNode
        if params.randomSeed:
            params.seed = random.randrange(2**31 - 1)
        self._cancelRequested = False
        self._running = True
        self.updateButtons()
        started = time.monotonic()

        def progress(step: int, total: int) -> None:
            self.ui.progressBar.maximum = total
            self.ui.progressBar.value = step
            elapsed = time.monotonic() - started
            remaining = elapsed / max(step, 1) * (total - step)
            self.ui.statusLabel.text = _("Step {step}/{total}, about {seconds:.0f} s left").format(
                step=step, total=total, seconds=remaining)
            slicer.app.processEvents()  # keeps the UI responsive and lets Cancel through

        try:
            ensure_requirements()
            from drdm.sampler import GenerationCancelled

            model = self.currentModel()
            if isinstance(model, str):
                self.logic.ensureModel(model, progress=self.downloadProgress)

            try:
                self._samples = self.logic.generate(
                    params.inputVolume, params.inputSegmentation, model=model, level=params.level,
                    seed=params.seed, count=params.count, mode=params.mode, speed=params.speed, device=params.device,
                    progress=progress, cancel=lambda: self._cancelRequested)
            except GenerationCancelled:
                self.ui.statusLabel.text = _("Cancelled; no output was added.")
                return
            self.ui.statusLabel.text = _("{count} deformation(s) in {seconds:.1f} s").format(
                count=len(self._samples), seconds=time.monotonic() - started)
            self.onShowJacobian(params.showJacobian)
        except Exception as error:  # shown to the user; the scene is unchanged (the logic adds nodes only at the end)
            logging.exception("DRDM generation failed")
            slicer.util.errorDisplay(_("Generating deformations failed: {error}").format(error=error))
            self.ui.statusLabel.text = ""
        finally:
            self._running = False
            self.ui.progressBar.value = 0
            self.updateButtons()

    def downloadProgress(self, done: int, total) -> None:
        self.ui.progressBar.maximum = total or 0
        self.ui.progressBar.value = done
        self.ui.statusLabel.text = _("Downloading the model: {mb:.1f} MB").format(mb=done / 1e6)
        slicer.app.processEvents()

    def onCancel(self) -> None:
        self._cancelRequested = True
        self.ui.statusLabel.text = _("Cancelling…")

    def onShowJacobian(self, show: bool) -> None:
        if not self._samples:
            return
        sample = self._samples[-1]
        self.logic.showResult(sample, showJacobian=bool(show))

    def onExportTransform(self) -> None:
        if not self._samples:
            return
        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Export transform"), "transform.h5",
                                              _("ITK transform (*.h5 *.tfm);;Displacement field (*.nii.gz)"))
        if path:
            with slicer.util.tryWithErrorDisplay(_("Exporting the transform failed."), waitCursor=True):
                self.logic.export_transform(self._samples[-1].transformNode, path)

    def onExportAll(self) -> None:
        if not self._samples:
            return
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Export all outputs to a folder"))
        if folder:
            with slicer.util.tryWithErrorDisplay(_("Exporting failed."), waitCursor=True):
                written = self.logic.export_all(self._samples, folder)
                self.ui.statusLabel.text = _("{count} files written to {folder}").format(count=len(written), folder=folder)


class DRDMSlicerLogic(ScriptedLoadableModuleLogic):
    """Thin Slicer-side logic: the parameter node plus :class:`DRDMSlicerLib.logic.DeformationLogic` (created on
    first use, after PyTorch is available)."""

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

    def ensureModel(self, name: str, progress=None):
        """Download a registry model (sha256-verified) if it is not available yet."""
        return self.deformation.ensure_model(name, progress)

    def loadModel(self, path: str):
        """A model from a file: an authors' ``.pth`` checkpoint or a ``.safetensors``/``.json`` model."""
        from drdm.models import load_model_spec

        return load_model_spec(path)

    def defaultModel(self) -> str:
        """``cmr-2d`` when it is installed, else the bundled ``drdm-demo-2d`` (also before PyTorch is installed)."""
        try:
            from DRDMSlicerLib.logic import default_model_choice
        except ImportError:  # PyTorch is installed on first use
            return "drdm-demo-2d"
        return default_model_choice()

    def generate(self, volumeNode, segmentationNode=None, *, model, level, seed, count=1, mode="diffeomorphic",
                 speed="fast", device="auto", progress=None, cancel=None):
        return self.deformation.generate(volumeNode, segmentationNode, model=model, level=level, seed=seed,
                                         count=count, mode=mode, speed=speed, device=device, progress=progress,
                                         cancel=cancel)

    def showResult(self, sample, showJacobian: bool = True) -> None:
        slicer.util.setSliceViewerLayers(background=sample.volumeNode,
                                         foreground=sample.jacobianNode if showJacobian else None,
                                         foregroundOpacity=0.5 if showJacobian else 0.0)

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
        from drdm.phantoms import cardiac_phantom

        self.delayDisplay("Deforming a procedural phantom")
        image, _labels = cardiac_phantom(32, 2, seed=0)
        volume = slicer.util.addVolumeFromArray(image[0].numpy(), name="phantom")
        model = untrained_model(2, size=32)
        torch.nn.init.zeros_(model.network.conv_out.weight)  # recovery off: the random field alone
        torch.nn.init.zeros_(model.network.conv_out.bias)
        logic = DRDMSlicerLogic()
        [sample] = logic.generate(volume, model=model, level=79, seed=1, mode="diffeomorphic")
        deformed = slicer.util.arrayFromVolume(sample.volumeNode)
        self.assertEqual(deformed.shape, slicer.util.arrayFromVolume(volume).shape)
        self.assertGreater(float(np.abs(deformed - slicer.util.arrayFromVolume(volume)).max()), 0.01)
        self.assertGreater(float(slicer.util.arrayFromVolume(sample.jacobianNode).min()), 0.0)
        logging.info("DRDMSlicer self-test passed")
        self.delayDisplay("Test passed")
