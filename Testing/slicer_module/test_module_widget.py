"""DRDMSlicer.py's widget wiring, executed against the stand-ins of Testing/slicer_module/slicer_qt_fakes.py (3D Slicer itself
cannot run here). Each test is one of the defects found by reading the module against Slicer's sources."""

from __future__ import annotations

import builtins
import sys
import warnings
from types import SimpleNamespace

import pytest
import slicer_qt_fakes as fakes
from conftest import REPO

sys.path.insert(0, str(REPO / "DRDMSlicer"))
import DRDMSlicerLib.requirements as requirements  # noqa: E402  (torch-free, Qt-free)


@pytest.fixture
def recorder() -> fakes.Recorder:
    return fakes.Recorder()


def install_fakes(monkeypatch, recorder, version=(5, 10), newer_modules=True):
    before = set(sys.modules)
    for name, module in fakes.make_modules(version, recorder, newer_modules).items():
        monkeypatch.setitem(sys.modules, name, module)
    return before


@pytest.fixture
def module(monkeypatch, recorder):
    before = install_fakes(monkeypatch, recorder)
    module = fakes.load_module()
    yield module
    for name in set(sys.modules) - before:  # nothing imported against the fake slicer may outlive the test
        if name.startswith(("DRDMSlicer_under_fakes", "DRDMSlicerLib.logic", "DRDMSlicerLib.mrml")):
            del sys.modules[name]


class FakeDeformation:
    """Stands in for DRDMSlicerLib.logic.DeformationLogic (Testing/slicer_module/test_module_static.py checks the real one has
    the methods and keywords the widget uses)."""

    def __init__(self) -> None:
        self.alive: list = []
        self.shown: list = []

    def is_alive(self, sample) -> bool:
        return any(sample is s for s in self.alive)

    def show_sample(self, sample, **kwargs) -> None:
        self.shown.append((sample, kwargs))


class FakeLogic:
    def __init__(self) -> None:
        self.deformation = FakeDeformation()
        self.calls: list = []
        self.load_error: Exception | None = None
        # what DRDMSlicerLib.model_list.model_items gives with an empty cache (Testing/slicer_module/test_model_list.py)
        self.offered = ["auto", "cmr-2d", "lct-3d (download)", "random-field-2d", "random-field-3d"]
        self.generate_error: Exception | None = None
        self.samples: list = []

    def getParameterNode(self):
        return self.parameterNode

    def modelItems(self):
        self.calls.append(("modelItems",))
        return list(self.offered)

    def loadModel(self, path):
        self.calls.append(("loadModel", path))
        if self.load_error is not None:
            raise self.load_error
        return SimpleNamespace(name="my-model")

    def ensureModel(self, name, progress=None, cancel=None):
        self.calls.append(("ensureModel", name))

    def slicesApply(self, volume, model):
        return getattr(volume, "slices_apply", False)

    def generate(self, volume, segmentation=None, **kwargs):
        self.calls.append(("generate", volume, kwargs))
        if self.generate_error is not None:
            raise self.generate_error
        return self.samples

    def export_transform(self, transformNode, path):
        self.calls.append(("export_transform", transformNode, path))

    def export_all(self, samples, folder):
        self.calls.append(("export_all", list(samples), folder))
        return []


def make_sample(name: str, **statistics):
    return SimpleNamespace(volumeNode=fakes.FakeNode(f"{name} volume"), transformNode=fakes.FakeNode(f"{name} transform"),
                           model_line="model: cmr-2d (auto: stack of thick slices)",
                           statistics={"level": 48, "seed": 0, **statistics})


@pytest.fixture
def widget(module, recorder):
    widget = module.DRDMSlicerWidget()
    widget.setup()
    logic = FakeLogic()
    logic.parameterNode = widget._parameterNode
    widget.logic = logic
    for callback in recorder.timers:  # once the GUI is up: the model list from the registry
        callback()
    return widget


def with_results(widget, count=2):
    samples = [make_sample(f"r{k}") for k in range(count)]
    widget.logic.deformation.alive = list(samples)
    widget._samples = list(samples)
    widget._sourceVolume = fakes.FakeNode("input")
    widget.updateResultList()
    widget.updateButtons()
    return samples


# -- the minimum Slicer version -------------------------------------------------------------------------------------

def test_older_slicer_gets_a_message_not_a_traceback(monkeypatch, recorder):
    """On Slicer 5.8 the module refuses to load with the reason, before importing anything newer than Slicer 5.0
    (the fake 5.8 has no slicer.i18n: reaching that import would fail with a different message)."""
    install_fakes(monkeypatch, recorder, version=(5, 8), newer_modules=False)
    with pytest.raises(ImportError, match=r"needs 3D Slicer 5\.10 or newer; this is Slicer 5\.8\.1"):
        fakes.load_module()
    assert len(recorder.timers) == 1  # the message box is shown once the application is up
    recorder.timers[0]()
    assert recorder.errors and "5.10" in recorder.errors[0] and "download.slicer.org" in recorder.errors[0]


def test_minimum_slicer_loads_the_module(module, recorder):
    assert module.MINIMUM_SLICER_VERSION == (5, 10)
    assert {"DRDMSlicerWidget", "DRDMSlicerLogic", "DRDMSlicerParameterNode"} <= set(vars(module))
    assert not recorder.errors and not recorder.timers


# -- opening the module ---------------------------------------------------------------------------------------------

def test_opening_the_module_imports_no_engine_and_preselects_the_default_model(module, monkeypatch):
    imported = []
    real_import = builtins.__import__

    def recording_import(name, *args, **kwargs):
        imported.append(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", recording_import)
    widget = module.DRDMSlicerWidget()
    widget.setup()
    widget.exit()
    widget.enter()
    monkeypatch.setattr(builtins, "__import__", real_import)
    heavy = [n for n in imported if n.split(".")[0] in {"torch", "drdm", "safetensors", "PyTorchUtils"}
             or n.startswith("DRDMSlicerLib")]
    assert not heavy, heavy
    assert widget.ui.modelComboBox.currentText == module.DEFAULT_MODEL == "auto"
    assert widget.ui.modelComboBox.items == [module.DEFAULT_MODEL, module.IMPORT_MODEL_ITEM]


def test_the_model_list_comes_from_the_registry_once_the_gui_is_up(module, recorder, monkeypatch):
    """No hard-coded model list: after opening, the offered models (the logic's modelItems, from the registry) fill
    the list; the choice made is kept; without PyTorch the list stays as it is and the engine is not asked."""
    widget = module.DRDMSlicerWidget()
    widget.setup()
    widget.logic = FakeLogic()
    widget.logic.parameterNode = widget._parameterNode
    [refresh] = recorder.timers
    with monkeypatch.context() as patch:
        patch.setattr(requirements, "unmet_requirement", lambda requirement: "torch is not installed")
        refresh()
    assert widget.ui.modelComboBox.items == [module.DEFAULT_MODEL, module.IMPORT_MODEL_ITEM]
    assert not widget.logic.calls
    refresh()
    combo = widget.ui.modelComboBox
    assert combo.items == widget.logic.offered + [module.IMPORT_MODEL_ITEM] and combo.currentText == module.DEFAULT_MODEL
    combo.setCurrentText("lct-3d (download)")
    widget.logic.offered = ["auto", "cmr-2d", "lct-3d", "random-field-2d", "random-field-3d"]  # fetched meanwhile
    refresh()
    assert combo.currentText == "lct-3d" and widget.currentModel() == "lct-3d" and widget._modelChoice == "lct-3d"


# -- parameter node observation -------------------------------------------------------------------------------------

def test_exit_removes_the_modified_observer_and_enter_restores_it(widget, module):
    node = widget._parameterNode
    modified = sys.modules["vtk"].vtkCommand.ModifiedEvent
    assert widget.hasObserver(node, modified, widget.updateButtons) and node.guis
    widget.exit()
    assert not widget.hasObserver(node, modified, widget.updateButtons)
    assert not node.guis  # GUI disconnected too
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "does not have observer" / "already has observer" would be raised
        widget.enter()
        widget.exit()
        widget.enter()
    assert widget.hasObserver(node, modified, widget.updateButtons) and len(node.guis) == 1


# -- scene close ----------------------------------------------------------------------------------------------------

def test_closing_the_scene_drops_the_results(widget, recorder):
    with_results(widget)
    assert widget.ui.exportTransformButton.enabled and widget.ui.resultComboBox.items
    widget.onSceneStartClose(None, None)
    assert widget._samples == [] and widget._sourceVolume is None and widget._cancelRequested
    assert not widget.ui.exportTransformButton.enabled and not widget.ui.exportAllButton.enabled
    assert widget.ui.resultComboBox.items == []
    widget.onExportTransform()
    widget.onExportAll()
    widget.ui.showGridCheckBox.checked = True
    assert not [c for c in widget.logic.calls if c[0].startswith("export")]
    assert not widget.logic.deformation.shown
    assert len(recorder.errors) == 2 and all("no result" in e for e in recorder.errors)


def test_deleted_result_is_not_acted_on(widget, recorder):
    first, second = with_results(widget)
    widget.logic.deformation.alive = [first]  # the user deleted the second result's nodes
    widget.ui.showGridCheckBox.checked = True
    assert widget._samples == [first] and widget.ui.resultComboBox.items == ["r0 volume"]
    [(shown, kwargs)] = widget.logic.deformation.shown
    assert shown is first and kwargs["grid"] is True
    recorder.file_dialog_answer = "/tmp/out"
    widget.onExportAll()
    assert ("export_all", [first], "/tmp/out") in widget.logic.calls


# -- the model list -------------------------------------------------------------------------------------------------

def test_failed_import_puts_the_combo_back(widget, recorder, module):
    combo = widget.ui.modelComboBox
    combo.setCurrentText("random-field-2d")
    module.ensure_requirements = lambda: None
    widget.logic.load_error = ValueError("bad.pth: not a DRDM checkpoint")
    recorder.file_dialog_answer = "/data/bad.pth"
    combo.setCurrentText(module.IMPORT_MODEL_ITEM)
    assert combo.currentText == "random-field-2d"
    assert widget.currentModel() == "random-field-2d"
    assert len(recorder.errors) == 1 and "not a DRDM checkpoint" in recorder.errors[0]
    recorder.file_dialog_answer = ""  # the file dialog cancelled
    combo.setCurrentText(module.IMPORT_MODEL_ITEM)
    assert combo.currentText == "random-field-2d" and len(recorder.errors) == 1


def test_import_without_pytorch_says_so_and_loads_nothing(widget, recorder, module, monkeypatch):
    """The real ensure_requirements runs first: PyTorchUtils is not importable here, as in a Slicer without the
    PyTorch extension."""
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)
    recorder.file_dialog_answer = "/data/model.safetensors"
    widget.ui.modelComboBox.setCurrentText(module.IMPORT_MODEL_ITEM)
    assert not [c for c in widget.logic.calls if c[0] == "loadModel"]
    assert len(recorder.errors) == 1 and "PyTorch extension" in recorder.errors[0]
    assert widget.ui.modelComboBox.currentText == module.DEFAULT_MODEL


def test_imported_model_is_listed_chosen_and_generated_with_the_chosen_device(widget, recorder, module):
    module.ensure_requirements = lambda: None
    recorder.file_dialog_answer = "/data/mine.safetensors"
    widget.ui.modelComboBox.setCurrentText(module.IMPORT_MODEL_ITEM)
    combo = widget.ui.modelComboBox
    assert combo.currentText == "my-model (mine.safetensors)" and combo.items[0] == combo.currentText
    model = widget.currentModel()
    assert model.name == "my-model"
    widget._parameterNode.inputVolume = fakes.FakeNode("input")
    widget._parameterNode.device = "auto"
    widget.logic.samples = [make_sample("r0")]
    widget.logic.deformation.alive = list(widget.logic.samples)
    widget.onGenerate()
    [(_, volume, kwargs)] = [c for c in widget.logic.calls if c[0] == "generate"]
    assert kwargs["model"] is model and kwargs["settings"].device == "auto"
    assert widget.ui.statusLabel.text.endswith("; model: cmr-2d (auto: stack of thick slices)")  # how it was chosen
    assert not [c for c in widget.logic.calls if c[0] == "ensureModel"]  # a loaded model needs no download
    assert widget.logic.deformation.shown and not recorder.errors


# -- generation errors ----------------------------------------------------------------------------------------------

def test_generation_errors_are_shown_in_a_message_box(widget, recorder, module):
    module.ensure_requirements = lambda: None
    widget._parameterNode.inputVolume = fakes.FakeNode("input")
    widget.logic.generate_error = ValueError("out of GPU memory: try a smaller volume, fewer samples or device cpu")
    widget.onGenerate()  # must not raise
    assert len(recorder.errors) == 1 and "out of GPU memory" in recorder.errors[0]
    assert not widget._running and widget.ui.generateButton.enabled and not widget.ui.cancelButton.enabled
    assert widget._samples == []


# -- view state -----------------------------------------------------------------------------------------------------

def test_output_controls_drive_show_sample(widget):
    first, second = with_results(widget)
    shown = widget.logic.deformation.shown
    widget.ui.showGridCheckBox.checked = True
    widget.ui.jacobianOpacitySlider.value = 0.8
    widget.ui.jacobianThresholdSlider.value = 0.3
    widget.ui.showDeformedCheckBox.checked = False
    widget.ui.showJacobianCheckBox.checked = False
    sample, kwargs = shown[-1]
    assert sample is second  # the newest result is selected
    assert kwargs == {"deformed": False, "jacobian": False, "jacobian_opacity": 0.8, "grid": True,
                      "original": None, "jacobian_threshold": 0.3}  # the input node is not in the (fake) scene any more
    assert not widget.ui.jacobianOpacitySlider.enabled  # no det J shown, no opacity to set
    assert not widget.ui.jacobianThresholdSlider.enabled
    widget.ui.resultComboBox.setCurrentIndex(0)
    assert shown[-1][0] is first


# -- PyTorch version --------------------------------------------------------------------------------------------------

class FakePyTorchUtils:
    def __init__(self, after_install: str | None) -> None:
        self.installs: list = []
        self.after_install = after_install
        self.versions: dict = {}
        outer = self

        class PyTorchUtilsLogic:
            def installTorch(self, askConfirmation=False, torchVersionRequirement=None, **kwargs):
                outer.installs.append(torchVersionRequirement)
                outer.versions["torch"] = outer.after_install
                return SimpleNamespace(__version__=outer.after_install) if outer.after_install else None

        self.PyTorchUtilsLogic = PyTorchUtilsLogic


def use_versions(monkeypatch, module, utils: FakePyTorchUtils, versions: dict, torch_loaded: bool):
    utils.versions.update(versions)
    monkeypatch.setitem(sys.modules, "PyTorchUtils", utils)
    monkeypatch.setattr(requirements, "installed_version", lambda name: utils.versions.get(name))
    monkeypatch.setattr(module, "sys", SimpleNamespace(modules={"torch": object()} if torch_loaded else {}))


def test_too_old_pytorch_is_installed_in_the_required_range(module, recorder, monkeypatch):
    utils = FakePyTorchUtils(after_install="2.5.1+cu121")
    use_versions(monkeypatch, module, utils, {"torch": "1.13.1", "safetensors": "0.4.5"}, torch_loaded=False)
    module.ensure_requirements()
    assert utils.installs == [requirements.version_specifier(requirements.TORCH_REQUIREMENT)]
    assert len(recorder.confirmations) == 1 and "torch 1.13.1 is installed" in recorder.confirmations[0]
    assert recorder.pip_installs == []


def test_too_old_pytorch_already_loaded_asks_for_a_restart(module, recorder, monkeypatch):
    utils = FakePyTorchUtils(after_install="2.5.1")
    use_versions(monkeypatch, module, utils, {"torch": "2.0.1", "safetensors": "0.4.5"}, torch_loaded=True)
    with pytest.raises(RuntimeError, match=r"torch 2\.0\.1 is installed.*restart Slicer"):
        module.ensure_requirements()
    assert utils.installs == [] and recorder.confirmations == []


def test_declined_or_failed_install_is_an_error(module, recorder, monkeypatch):
    utils = FakePyTorchUtils(after_install=None)
    use_versions(monkeypatch, module, utils, {"safetensors": "0.4.5"}, torch_loaded=False)
    recorder.confirm_answer = False
    with pytest.raises(RuntimeError, match="nothing was installed"):
        module.ensure_requirements()
    assert utils.installs == []
    recorder.confirm_answer = True
    with pytest.raises(RuntimeError, match="could not be installed"):
        module.ensure_requirements()


def test_good_pytorch_installs_nothing_and_missing_safetensors_is_pip_installed(module, recorder, monkeypatch):
    utils = FakePyTorchUtils(after_install="9.9")
    use_versions(monkeypatch, module, utils, {"torch": "2.4.0+cpu"}, torch_loaded=True)
    module.ensure_requirements()
    assert utils.installs == [] and recorder.confirmations == []
    assert recorder.pip_installs == [requirements.SAFETENSORS_REQUIREMENT]


# -- model choice and slices ------------------------------------------------------------------------------------

class FakeVolume(fakes.FakeNode):
    def __init__(self, dims, spacing) -> None:
        super().__init__("volume")
        self.dims, self.spacing = dims, spacing

    def GetImageData(self):
        return SimpleNamespace(GetDimensions=lambda: self.dims)

    def GetSpacing(self):
        return self.spacing


def test_slices_choice_is_offered_for_a_2d_model_on_a_volume_only(module):
    apply = module.DRDMSlicerLogic.slicesApply
    stack, isotropic, flat = FakeVolume((216, 256, 10), (1.56, 1.56, 10.0)), FakeVolume((64, 64, 40), (1.2,) * 3), \
        FakeVolume((64, 64, 1), (1.0,) * 3)
    assert apply(stack, "auto") and apply(stack, "cmr-2d") and apply(isotropic, "random-field-2d")
    assert not apply(isotropic, "auto")  # auto gives a 3D model there
    assert not apply(stack, "lct-3d") and not apply(flat, "cmr-2d") and not apply(None, "cmr-2d")
    assert apply(isotropic, SimpleNamespace(ndims=2)) and not apply(isotropic, SimpleNamespace(ndims=3))


def test_slices_control_follows_the_volume_and_model(widget, module):
    node = widget._parameterNode
    node.inputVolume = SimpleNamespace(slices_apply=True, GetName=lambda: "stack")
    widget.updateButtons()
    assert widget.ui.slicesComboBox.visible and widget.ui.slicesLabel.visible
    node.inputVolume = SimpleNamespace(slices_apply=False, GetName=lambda: "ct")
    widget.updateButtons()
    assert not widget.ui.slicesComboBox.visible and not widget.ui.slicesLabel.visible


def test_download_choice_is_fetched_with_cancel_and_generated_with_slices(widget, module):
    module.ensure_requirements = lambda: None
    widget.ui.modelComboBox.setCurrentText("lct-3d (download)")
    assert widget.currentModel() == "lct-3d"
    widget._parameterNode.inputVolume = fakes.FakeNode("input")
    widget._parameterNode.slices = "independent"
    widget.onGenerate()
    assert ("ensureModel", "lct-3d") in widget.logic.calls
    [(_, _, kwargs)] = [c for c in widget.logic.calls if c[0] == "generate"]
    assert kwargs["model"] == "lct-3d" and kwargs["settings"].slices == "independent"
    assert widget.logic.calls[-2:] == [("modelItems",), ("generate", widget._parameterNode.inputVolume, kwargs)]


# -- issue 26: size, regions, level, the first view ------------------------------------------------------------------

def test_parameter_defaults_come_from_the_engine_settings(widget, module):
    """One set of defaults: size auto (DEFAULTS.magnitude None), the margin and the level from drdm.settings; no
    hard-coded start level; det J off at first as DRDMSlicerLib decides (the .ui agrees)."""
    from drdm.settings import DEFAULTS
    from DRDMSlicerLib.jacobian_colours import JACOBIAN_SHOWN_FIRST

    node, ui = widget._parameterNode, widget.ui
    assert DEFAULTS.magnitude is None and node.magnitude == 0.0 and ui.sizeSpinBox.value == 0.0
    assert ui.sizeSpinBox.property("specialValueText").startswith("auto")  # 0 reads "auto" in the spin box
    assert node.margin == DEFAULTS.margin == ui.marginSpinBox.value
    assert DEFAULTS.level is None and node.autoLevel and ui.autoLevelCheckBox.checked and not ui.levelSlider.enabled
    assert node.showJacobian is JACOBIAN_SHOWN_FIRST is False and not ui.showJacobianCheckBox.checked
    assert "starting noise of the recovery" in ui.levelSlider.property("toolTip")
    assert ui.label3.property("text") == "Start level T′:"


def test_size_regions_margin_and_auto_level_reach_generate(widget, module):
    module.ensure_requirements = lambda: None
    node, ui = widget._parameterNode, widget.ui
    node.inputVolume = fakes.FakeNode("input")
    widget.updateButtons()
    assert not ui.keepSegmentSelector.enabled and not ui.onlySegmentSelector.enabled  # no segmentation, no regions
    segmentation = fakes.FakeSegmentationNode("seg", ["Segment_1", "Segment_2", "Segment_3"])
    node.inputSegmentation = segmentation
    widget.updateButtons()  # what the parameter node's ModifiedEvent does in Slicer
    assert ui.keepSegmentSelector.currentNode() is segmentation and ui.onlySegmentSelector.currentNode() is segmentation
    assert ui.keepSegmentSelector.enabled and not ui.marginSpinBox.enabled  # no segment chosen: no margin to set
    ui.keepSegmentSelector.setSelectedSegmentIDs(["Segment_1", "Segment_3"])  # the user checks two segments
    assert ui.marginSpinBox.enabled
    node.magnitude, node.margin = 3.0, 4.0
    widget.logic.samples = [make_sample("r0", level=64, magnitude_mm=3.0, size_reached_mm=3.0213)]
    widget.logic.deformation.alive = list(widget.logic.samples)
    widget.onGenerate()
    [(_, _, kwargs)] = [c for c in widget.logic.calls if c[0] == "generate"]
    settings = kwargs["settings"]  # the one settings object the widget builds from the panel
    assert settings.level is None and settings.magnitude == 3.0 and settings.margin == 4.0
    assert kwargs["keep"] == ["Segment_1", "Segment_3"] and kwargs["only"] == []
    assert node.level == 64  # the slider shows the level "auto" meant
    assert ui.statusLabel.text.startswith("1 deformation(s) in ") and "; size 3.02 mm (asked 3 mm); model: " in \
        ui.statusLabel.text


def test_auto_size_and_a_chosen_level(widget, module):
    module.ensure_requirements = lambda: None
    node, ui = widget._parameterNode, widget.ui
    node.inputVolume = fakes.FakeNode("input")
    ui.autoLevelCheckBox.checked = False  # the user turns auto off (bound to autoLevel in Slicer)
    node.autoLevel, node.level = False, 20
    assert ui.levelSlider.enabled
    widget.logic.samples = [make_sample("r0", level=20, seed=123456)]
    assert node.randomSeed
    widget.onGenerate()
    [(_, _, kwargs)] = [c for c in widget.logic.calls if c[0] == "generate"]
    settings = kwargs["settings"]
    assert settings.level == 20 and settings.magnitude is None  # size 0 shows "auto": the model's own size
    assert settings.seed is None and node.seed == 123456  # drawn once by the settings; the panel shows it
    assert kwargs["keep"] == kwargs["only"] == [] and node.level == 20
    assert "size" not in ui.statusLabel.text
    ui.autoLevelCheckBox.checked = True
    assert not ui.levelSlider.enabled


def test_regions_of_a_segmentation_no_longer_chosen_are_not_sent(widget, module):
    """The selector remembers checked IDs across segmentations (as Slicer's does); only the chosen segmentation's
    segments are sent, and none without a segmentation."""
    module.ensure_requirements = lambda: None
    node, ui = widget._parameterNode, widget.ui
    node.inputVolume = fakes.FakeNode("input")
    node.inputSegmentation = fakes.FakeSegmentationNode("a", ["liver", "spine"])
    widget.updateButtons()
    ui.onlySegmentSelector.setSelectedSegmentIDs(["liver"])
    node.inputSegmentation = None
    widget.updateButtons()
    assert not ui.onlySegmentSelector.enabled and not ui.marginSpinBox.enabled
    widget.onGenerate()
    node.inputSegmentation = fakes.FakeSegmentationNode("b", ["spine"])  # has no "liver"
    widget.updateButtons()
    widget.onGenerate()
    calls = [c[2] for c in widget.logic.calls if c[0] == "generate"]
    assert [(kwargs["keep"], kwargs["only"]) for kwargs in calls] == [([], []), ([], [])]


def test_first_view_after_generate_has_no_det_j_overlay_and_it_is_one_click_away(widget, module):
    module.ensure_requirements = lambda: None
    widget._parameterNode.inputVolume = fakes.FakeNode("input")
    widget.logic.samples = [make_sample("r0")]
    widget.logic.deformation.alive = list(widget.logic.samples)
    widget.onGenerate()
    shown = widget.logic.deformation.shown
    assert shown[-1][1]["jacobian"] is False and shown[-1][1]["deformed"] is True
    assert not widget.ui.jacobianOpacitySlider.enabled
    widget.ui.showJacobianCheckBox.checked = True  # one click
    assert shown[-1][1]["jacobian"] is True and widget.ui.jacobianOpacitySlider.enabled


# -- the widget on the real logic and a slicer-core scene (only Qt and the Slicer application are stand-ins) -----------

@pytest.fixture
def real_scene(mrml_scene_bundle, monkeypatch, recorder):
    """The widget wired to the real DRDMSlicerLib logic on a slicer-core scene holding a 3-slice stack, a
    segmentation (segments "bone" and "organ") and two slice views."""
    import numpy as np
    import SimpleITK as sitk
    from DRDMSlicerLib.logic import DeformationLogic  # noqa: F401  (imported against the real slicer, before the fakes)
    from DRDMSlicerLib.mrml import segmentation_from_labels, volume_from_sitk
    from vtk.util.numpy_support import vtk_to_numpy

    def displacement_mm(transform_node):
        """|u| in mm on the input's lattice, read from the grid transform node (the fakes replace vtk for
        slicer.util, so this reads the grid itself)."""
        grid = transform_node.GetTransformFromParent().GetDisplacementGrid()
        u = vtk_to_numpy(grid.GetPointData().GetScalars()).reshape(tuple(reversed(grid.GetDimensions())) + (3,))
        return np.linalg.norm(u, axis=-1)

    scene = mrml_scene_bundle.scene
    scene.Clear(0)
    shape = (3, 48, 48)
    k, j, i = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    image = sitk.GetImageFromArray((100 * np.exp(-3 * (i**2 + j**2)) + 40 * np.sin(4 * i) * np.cos(3 * j)).astype(np.float32))
    image.SetSpacing((1.5, 1.5, 6.0))
    volume = volume_from_sitk(scene, image, "stack")
    labels = np.zeros(shape, dtype=np.int32)
    labels[:, 8:20, 8:20] = 1
    labels[:, 28:40, 26:40] = 2
    segmentation = segmentation_from_labels(scene, labels, volume, [("bone", "bone", (1, 1, 1)), ("organ", "organ", (1, 0, 0))],
                                            "segmentation")
    composites = [scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode") for _ in range(2)]
    install_fakes(monkeypatch, recorder)
    sys.modules["slicer"].mrmlScene = scene
    module = fakes.load_module()
    module.ensure_requirements = lambda: None
    widget = module.DRDMSlicerWidget()
    widget.setup()
    for callback in recorder.timers:  # the model list from the real registry
        callback()
    widget.ui.modelComboBox.setCurrentText("random-field-2d")
    assert widget.ui.modelComboBox.currentText == "random-field-2d"
    node = widget._parameterNode
    node.inputVolume, node.inputSegmentation, node.speed, node.randomSeed, node.seed = volume, segmentation, "faster", False, 3
    widget.updateButtons()
    yield SimpleNamespace(widget=widget, scene=scene, labels=labels, composites=composites, displacement_mm=displacement_mm)
    sys.modules.pop("DRDMSlicer_under_fakes", None)


def test_generate_with_a_size_and_a_kept_segment_on_a_real_scene(real_scene, recorder):
    widget, scene = real_scene.widget, real_scene.scene
    widget._parameterNode.magnitude = 2.0
    widget.ui.keepSegmentSelector.setSelectedSegmentIDs(["bone"])
    before = scene.GetNumberOfNodes()
    widget.onGenerate()
    assert not recorder.errors, recorder.errors
    [sample] = widget._samples
    assert scene.GetNumberOfNodes() > before and scene.IsNodePresent(sample.volumeNode)
    u = real_scene.displacement_mm(sample.transformNode)
    assert u[real_scene.labels == 1].max() <= 0.1  # the kept segment did not move
    assert abs(u[real_scene.labels != 1].mean() - 2.0) <= 0.2  # the size, where the anatomy may move
    assert widget._parameterNode.level == sample.statistics["level"] == 48  # auto: random-field-2d's first level
    assert "; size 2.00 mm (asked 2 mm); model: random-field-2d" in widget.ui.statusLabel.text
    table = sample.tableNode
    rows = {table.GetCellText(r, 0): table.GetCellText(r, 1) for r in range(table.GetNumberOfRows())}
    assert rows["keep_segments"] == "bone" and float(rows["magnitude_mm"]) == 2.0 and float(rows["max_mm_in_kept"]) <= 0.1
    for composite in real_scene.composites:  # the deformed anatomy, no det J overlay
        assert composite.GetBackgroundVolumeID() == sample.volumeNode.GetID() and not composite.GetForegroundVolumeID()
    widget.ui.showJacobianCheckBox.checked = True
    assert all(c.GetForegroundVolumeID() == sample.jacobianNode.GetID() for c in real_scene.composites)


@pytest.mark.parametrize("setting, message", [
    (dict(magnitude=500.0), "beyond reach"),
    (dict(mode="reference", magnitude=2.0), "need mode 'diffeomorphic'"),
    (dict(keep=["bone"], only=["bone"]), "'bone' is both kept still and the only one deformed"),
])
def test_a_bad_setting_is_an_error_display_and_adds_nothing(real_scene, recorder, setting, message):
    widget, scene = real_scene.widget, real_scene.scene
    node = widget._parameterNode
    node.magnitude = setting.get("magnitude", 0.0)
    node.mode = setting.get("mode", node.mode)
    widget.ui.keepSegmentSelector.setSelectedSegmentIDs(setting.get("keep", []))
    widget.ui.onlySegmentSelector.setSelectedSegmentIDs(setting.get("only", []))
    before = scene.GetNumberOfNodes()
    widget.onGenerate()
    assert len(recorder.errors) == 1 and message in recorder.errors[0], recorder.errors
    assert scene.GetNumberOfNodes() == before and widget._samples == []
    assert widget.ui.generateButton.enabled and not widget._running
