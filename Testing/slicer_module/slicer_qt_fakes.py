"""Stand-ins for the parts of Qt and of Slicer's Python API that DRDMSlicer/DRDMSlicer.py touches, so that the
module's wiring can run outside Slicer.

They model only documented behaviour: a Qt signal fires synchronously, and only when a value really changes;
``slicer.util.tryWithErrorDisplay`` shows the error and then re-raises it; ``VTKObservationMixin`` keeps one
observation per (object, event, method) and warns on a second add or on removing a missing one (both read in
Slicer/Slicer:Base/Python/slicer/util.py at v5.10.0). They test the module's own logic, never Qt's or Slicer's.
The widgets are built from the real ``.ui`` file (names, classes and SlicerParameterName properties).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[2]
MODULE_FILE = REPO / "DRDMSlicer" / "DRDMSlicer.py"
UI_FILE = REPO / "DRDMSlicer" / "Resources" / "UI" / "DRDMSlicer.ui"


class Signal:
    def __init__(self) -> None:
        self.slots = []

    def connect(self, slot) -> None:
        self.slots.append(slot)

    def emit(self, *args) -> None:
        for slot in list(self.slots):
            slot(*args)


class Widget:
    def __init__(self, name: str, properties: dict) -> None:
        self.name = name
        self._properties = properties
        self.enabled = True
        self.toolTip = ""
        self._blocked = False

    def property(self, name: str):
        return self._properties.get(name)

    def blockSignals(self, block: bool) -> bool:
        old, self._blocked = self._blocked, block
        return old

    def _emit(self, signal: Signal, *args) -> None:
        if not self._blocked:
            signal.emit(*args)

    def setMRMLScene(self, scene) -> None:
        self.scene = scene


class Label(Widget):
    text = ""


class ProgressBar(Widget):
    value = 0
    maximum = 100


class Button(Widget):
    def __init__(self, name, properties) -> None:
        super().__init__(name, properties)
        self.clicked = Signal()


class CheckBox(Widget):
    def __init__(self, name, properties) -> None:
        super().__init__(name, properties)
        self.toggled = Signal()
        self._checked = properties.get("checked") == "true"

    @property
    def checked(self) -> bool:
        return self._checked

    @checked.setter
    def checked(self, value: bool) -> None:
        if bool(value) != self._checked:
            self._checked = bool(value)
            self._emit(self.toggled, self._checked)


class Slider(Widget):
    def __init__(self, name, properties) -> None:
        super().__init__(name, properties)
        self.valueChanged = Signal()
        self._value = float(properties.get("value") or 0.0)

    @property
    def value(self) -> float:
        return self._value

    @value.setter
    def value(self, value: float) -> None:
        if float(value) != self._value:
            self._value = float(value)
            self._emit(self.valueChanged, self._value)


class SpinBox(Slider):
    pass


class ComboBox(Widget):
    """QComboBox as used here: setCurrentText selects an existing item only; inserting before the current item
    keeps it current without a signal; the first item added to an empty combo becomes current."""

    def __init__(self, name, properties) -> None:
        super().__init__(name, properties)
        self.items: list[str] = []
        self._index = -1
        self.currentIndexChanged = Signal()
        self.currentTextChanged = Signal()

    @property
    def currentIndex(self) -> int:
        return self._index

    @property
    def currentText(self) -> str:
        return self.items[self._index] if 0 <= self._index < len(self.items) else ""

    def setCurrentIndex(self, index: int) -> None:
        index = index if 0 <= index < len(self.items) else -1
        if index != self._index:
            self._index = index
            self._emit(self.currentIndexChanged, index)
            self._emit(self.currentTextChanged, self.currentText)

    def setCurrentText(self, text: str) -> None:
        if text in self.items:
            self.setCurrentIndex(self.items.index(text))

    def findText(self, text: str) -> int:
        return self.items.index(text) if text in self.items else -1

    def addItem(self, text: str) -> None:
        self.insertItem(len(self.items), text)

    def addItems(self, texts) -> None:
        for text in texts:
            self.addItem(text)

    def insertItem(self, index: int, text: str) -> None:
        self.items.insert(index, text)
        if len(self.items) == 1:
            self.setCurrentIndex(0)
        elif index <= self._index:
            self._index += 1

    def clear(self) -> None:
        self.items = []
        self.setCurrentIndex(-1)


class SegmentSelector(Widget):
    """qMRMLSegmentSelectorWidget with ``multiSelection`` on (Slicer/Slicer:Libs/MRML/Widgets/
    qMRMLSegmentSelectorWidget.cxx): ``setCurrentNode`` lists a node's segments and keeps the remembered checked IDs
    that exist in it (with no node the remembered IDs stay as they were); ``segmentSelectionChanged`` fires when the
    checked IDs change. The user checking segments is ``setSelectedSegmentIDs``."""

    def __init__(self, name, properties) -> None:
        super().__init__(name, properties)
        self.segmentSelectionChanged = Signal()
        self._node = None
        self._selected: list[str] = []

    def currentNode(self):
        return self._node

    def currentNodeID(self) -> str:
        return self._node.GetID() if self._node is not None else ""

    def setCurrentNode(self, node) -> None:
        if node is not self._node:
            self._node = node
            self.setSelectedSegmentIDs(self._selected)

    def selectedSegmentIDs(self) -> list[str]:
        return list(self._selected)

    def setSelectedSegmentIDs(self, segment_ids) -> None:
        if self._node is None:
            return
        segmentation = self._node.GetSegmentation()
        kept = [segment_id for segment_id in segment_ids if segmentation.GetSegment(segment_id) is not None]
        changed = kept != self._selected
        self._selected = kept
        if changed:
            self._emit(self.segmentSelectionChanged, list(kept))


WIDGET_CLASSES = {"QComboBox": ComboBox, "QCheckBox": CheckBox, "QPushButton": Button, "ctkSliderWidget": Slider,
                  "QSpinBox": SpinBox, "QDoubleSpinBox": SpinBox, "QLabel": Label, "QProgressBar": ProgressBar,
                  "qMRMLSegmentSelectorWidget": SegmentSelector}


def ui_from_file(path: Path = UI_FILE) -> SimpleNamespace:
    """One fake widget per named widget of the .ui (what ``slicer.util.childWidgetVariables`` returns)."""
    ui = {}
    for element in ET.parse(path).iter("widget"):
        properties = {}
        for prop in element.findall("property"):
            value = next(iter(prop), None)
            properties[prop.get("name")] = value.text if value is not None else None
        ui[element.get("name")] = WIDGET_CLASSES.get(element.get("class"), Widget)(element.get("name"), properties)
    return SimpleNamespace(**ui)


class FakeNode:
    def __init__(self, name: str = "node") -> None:
        self.name = name

    def GetName(self) -> str:
        return self.name

    def GetID(self) -> str:
        return f"vtkMRMLFakeNode_{self.name}"


class FakeSegmentationNode(FakeNode):
    """A segmentation node holding segments with these IDs."""

    def __init__(self, name: str, segment_ids) -> None:
        super().__init__(name)
        self.segment_ids = list(segment_ids)

    def GetSegmentation(self):
        return SimpleNamespace(GetSegment=lambda segment_id: segment_id if segment_id in self.segment_ids else None)


class FakeScene:
    StartCloseEvent = 66000
    EndCloseEvent = 66001

    def __init__(self) -> None:
        self.nodes: list = []

    def GetFirstNodeByClass(self, classname):
        return self.nodes[0] if self.nodes else None

    def IsNodePresent(self, node) -> bool:
        return any(node is n for n in self.nodes)


class VTKObservationMixin:
    def __init__(self) -> None:
        self._observations: dict = {}  # (object id, event) -> {method: object}

    def addObserver(self, obj, event, method, group="none", priority=0.0) -> None:
        methods = self._observations.setdefault((id(obj), event), {})
        if method in methods:
            warnings.warn("already has observer", stacklevel=2)
            return
        methods[method] = obj

    def removeObserver(self, obj, event, method) -> None:
        if self._observations.get((id(obj), event), {}).pop(method, None) is None:
            warnings.warn("does not have observer", stacklevel=2)

    def removeObservers(self, method=None) -> None:
        self._observations.clear()

    def hasObserver(self, obj, event, method) -> bool:
        return method in self._observations.get((id(obj), event), {})


class ParameterNode:
    """What ``@parameterNodeWrapper`` makes of the class: typed attributes with their defaults, and GUI tags."""

    def __init__(self, defaults: dict) -> None:
        self.__dict__.update(defaults)
        self.guis: dict = {}
        self.nextTag = 1

    def connectGui(self, gui) -> int:
        tag, self.nextTag = self.nextTag, self.nextTag + 1
        self.guis[tag] = gui
        return tag

    def disconnectGui(self, tag) -> None:
        self.guis.pop(tag, None)


def parameterNodeWrapper(cls):
    defaults = {name: getattr(cls, name, None) for name in cls.__annotations__}

    def make(node=None):
        return ParameterNode(defaults)

    make.annotations = dict(cls.__annotations__)
    return make


class Recorder:
    """What the user was shown or asked."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.confirmations: list[str] = []
        self.confirm_answer = True
        self.timers: list = []
        self.pip_installs: list[str] = []
        self.file_dialog_answer = ""


def make_modules(version=(5, 10), recorder: Recorder | None = None, newer_modules: bool = True) -> dict:
    """Fake ``qt``, ``vtk`` and ``slicer`` packages for Slicer ``version``; without ``newer_modules`` the
    ``slicer.i18n``/``slicer.parameterNodeWrapper`` modules (new in Slicer 5.4) are absent."""
    rec = recorder or Recorder()
    qt = types.ModuleType("qt")
    qt.QTimer = SimpleNamespace(singleShot=lambda msec, callback: rec.timers.append(callback))
    qt.QFileDialog = SimpleNamespace(getOpenFileName=lambda *args: rec.file_dialog_answer,
                                     getSaveFileName=lambda *args: rec.file_dialog_answer,
                                     getExistingDirectory=lambda *args: rec.file_dialog_answer)
    vtk = types.ModuleType("vtk")
    vtk.vtkCommand = SimpleNamespace(ModifiedEvent=33)

    slicer = types.ModuleType("slicer")
    slicer.__path__ = []
    slicer.app = SimpleNamespace(majorVersion=version[0], minorVersion=version[1],
                                 applicationVersion=f"{version[0]}.{version[1]}.1",
                                 commandOptions=lambda: SimpleNamespace(testingEnabled=False),
                                 processEvents=lambda: None)
    slicer.mrmlScene = FakeScene()
    slicer.vtkMRMLScalarVolumeNode = type("vtkMRMLScalarVolumeNode", (FakeNode,), {})
    slicer.vtkMRMLSegmentationNode = type("vtkMRMLSegmentationNode", (FakeNode,), {})

    util = types.ModuleType("slicer.util")

    def errorDisplay(text, windowTitle=None, **kwargs):
        rec.errors.append(text)

    def confirmOkCancelDisplay(text, windowTitle=None, **kwargs):
        rec.confirmations.append(text)
        return rec.confirm_answer

    @contextlib.contextmanager
    def tryWithErrorDisplay(message=None, show=True, waitCursor=False):
        try:
            yield
        except Exception as error:
            if show:
                errorDisplay(f"{message}\n\n{error}" if message is not None else str(error))
            raise

    util.errorDisplay = errorDisplay
    util.confirmOkCancelDisplay = confirmOkCancelDisplay
    util.tryWithErrorDisplay = tryWithErrorDisplay
    util.pip_install = rec.pip_installs.append
    util.mainWindow = lambda: None
    util.loadUI = lambda path: SimpleNamespace(setMRMLScene=lambda scene: None, path=path)
    util.childWidgetVariables = lambda widget: ui_from_file(Path(widget.path))
    util.VTKObservationMixin = VTKObservationMixin
    slicer.util = util

    loadable = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent) -> None:
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None) -> None:
            self.parent = parent or SimpleNamespace(isEntered=True)
            self.layout = SimpleNamespace(addWidget=lambda widget: None)

        def setup(self) -> None:
            pass

        def resourcePath(self, filename: str) -> str:
            return str(MODULE_FILE.parent / "Resources" / filename)

    class ScriptedLoadableModuleLogic:
        def __init__(self) -> None:
            pass

        def getParameterNode(self):
            return FakeNode("vtkMRMLScriptedModuleNode")

    loadable.ScriptedLoadableModule = ScriptedLoadableModule
    loadable.ScriptedLoadableModuleWidget = ScriptedLoadableModuleWidget
    loadable.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    loadable.ScriptedLoadableModuleTest = type("ScriptedLoadableModuleTest", (), {})
    slicer.ScriptedLoadableModule = loadable

    modules = {"qt": qt, "vtk": vtk, "slicer": slicer, "slicer.util": util, "slicer.ScriptedLoadableModule": loadable}
    if newer_modules:
        i18n = types.ModuleType("slicer.i18n")
        i18n.tr = lambda text: text
        wrapper = types.ModuleType("slicer.parameterNodeWrapper")
        wrapper.parameterNodeWrapper = parameterNodeWrapper
        wrapper.Choice = lambda choices: ("Choice", tuple(choices))
        wrapper.WithinRange = lambda low, high: ("WithinRange", low, high)
        slicer.i18n, slicer.parameterNodeWrapper = i18n, wrapper
        modules.update({"slicer.i18n": i18n, "slicer.parameterNodeWrapper": wrapper})
    return modules


def load_module(name: str = "DRDMSlicer_under_fakes"):
    """Execute DRDMSlicer.py against whatever ``qt``/``slicer``/``vtk`` are in ``sys.modules`` now."""
    spec = importlib.util.spec_from_file_location(name, MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
