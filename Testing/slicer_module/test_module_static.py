"""DRDMSlicer.py cannot be imported outside Slicer: check it statically against the .ui, the logic and the rules of
the oldest Slicer it supports (Testing/slicer_module/test_module_widget.py runs its wiring against stand-ins)."""

from __future__ import annotations

import ast
import inspect
import re
import sys
import xml.etree.ElementTree as ET

import pytest
from conftest import REPO

MODULE = REPO / "DRDMSlicer" / "DRDMSlicer.py"
UI = REPO / "DRDMSlicer" / "Resources" / "UI" / "DRDMSlicer.ui"

# -- parameterNodeWrapper GUI connector rules of the oldest supported Slicer -----------------------------------------
# Source: repository Slicer/Slicer, file Base/Python/slicer/parameterNodeWrapper/guiConnectors.py, tag v5.10.0
# (blob c0b71ebf, unchanged through v5.12.3). createGuiConnector() takes the FIRST registered connector (file order,
# as below) whose canRepresent(widget, datatype) is true; canRepresent compares `type(widget)` exactly (a subclass of a
# listed class does not match) and the unannotated type by equality; create() then raises when the requirement of the
# last column is not met. WidgetChildrenToParameterPackConnector (for @parameterPack types) is left out: unused here.
CONNECTOR_RULES_SOURCE = ("Slicer/Slicer", "Base/Python/slicer/parameterNodeWrapper/guiConnectors.py", "v5.10.0")
PATH_TYPES = ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath")
CONNECTOR_RULES = [
    # (connector, widget classes, value types, requirement)
    ("QCheckBoxToBoolConnector", ("QCheckBox", "ctkCheckBox"), ("bool",), None),
    ("QCheckablePushButtonToBoolConnector", ("QPushButton",), ("bool",), None),
    ("ctkCheckablePushButtonToBoolConnector", ("ctkCheckablePushButton",), ("bool",), None),
    ("QSliderOrSpinBoxToIntConnector", ("QSlider", "QSpinBox"), ("int",), ("bounded", ("QSlider",))),
    ("QDoubleSpinBoxCtkSliderWidgetToFloatIntConnector",
     ("QDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget", "ctkDoubleSlider", "ctkDoubleSpinBox", "qMRMLSpinBox"),
     ("float", "int"), ("bounded", ("ctkSliderWidget", "qMRMLSliderWidget"))),
    ("QComboBoxToStringableConnector", ("QComboBox", "ctkComboBox"), ("int", "float", "str", "bool"), ("Choice", None)),
    ("QComboBoxToEnumConnector", ("QComboBox", "ctkComboBox"), ("enum",), None),
    ("QLineEditToStrConnector", ("QLineEdit",), ("str",), None),
    ("QLabelToStrConnector", ("QLabel",), ("str",), None),
    ("QTextEditPlainTextToStrConnector", ("QTextEdit",), ("str",), None),
    ("ctkRangeWidgetToRangeConnector", ("ctkRangeWidget", "ctkDoubleRangeSlider", "qMRMLRangeWidget"), ("FloatRange",),
     ("RangeBounds", None)),
    ("ctkPathLineEditToPathConnector", ("ctkPathLineEdit",), PATH_TYPES, None),
    ("ctkDirectoryButtonToPathConnector", ("ctkDirectoryButton",), PATH_TYPES, None),
    ("qMRMLNodeComboBoxToNodeConnector", ("qMRMLNodeComboBox",), ("vtkMRMLNode",), None),
    ("ctkColorPickerButtonToQColorConnector", ("ctkColorPickerButton",), ("QColor",), None),
]
# Same file at tag v5.8.1 (blob 1e12f94b), only to show why 5.8 is not supported: its float connector took no int,
# ctkCheckablePushButton and ctkColorPickerButton had no connector.
CONNECTOR_RULES_V5_8_1 = [
    ("QDoubleSpinBoxCtkSliderWidgetToFloatConnector", rule[1], ("float",), rule[3])
    if rule[0] == "QDoubleSpinBoxCtkSliderWidgetToFloatIntConnector" else rule
    for rule in CONNECTOR_RULES
    if rule[0] not in ("ctkCheckablePushButtonToBoolConnector", "ctkColorPickerButtonToQColorConnector")
]
BOUNDING = {"WithinRange"}  # or both Minimum and Maximum


def field_type(annotation: ast.expr) -> tuple[str, set[str]]:
    """(unannotated type name, names of the Annotated[...] validators) of a parameter annotation."""
    annotations: set[str] = set()
    if isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value) in ("Annotated", "typing.Annotated"):
        base, *extras = annotation.slice.elts
        annotations = {ast.unparse(e.func).split(".")[-1] for e in extras if isinstance(e, ast.Call)}
        annotation = base
    name = ast.unparse(annotation).split(".")[-1]
    return ("vtkMRMLNode" if name.startswith("vtkMRML") else name), annotations


def connector_for(widget_class: str, type_name: str, annotations: set[str], rules=CONNECTOR_RULES):
    """(connector name, None) for a binding that works; (connector name or None, reason) for one that raises."""
    for connector, widgets, types, requirement in rules:
        if widget_class not in widgets or type_name not in types:
            continue
        if requirement is not None:
            kind, only_for = requirement
            applies = only_for is None or widget_class in only_for
            if kind == "bounded" and applies and not (annotations & BOUNDING or {"Minimum", "Maximum"} <= annotations):
                return connector, f"{connector} needs a bounded value (WithinRange, or Minimum and Maximum)"
            if kind in ("Choice", "RangeBounds") and kind not in annotations:
                return connector, f"{connector} needs the {kind} annotation"
        return connector, None
    return None, f"no connector represents {type_name} with a {widget_class}"


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return ast.parse(MODULE.read_text(encoding="utf-8"), filename=str(MODULE))


def classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def methods(cls: ast.ClassDef) -> dict[str, ast.FunctionDef]:
    return {f.name: f for f in cls.body if isinstance(f, ast.FunctionDef)}


def attribute_uses(tree: ast.AST, owner: str) -> set[str]:
    """Names ``X`` used as ``self.<owner>.X``."""
    names = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and node.value.attr == owner and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"):
            names.add(node.attr)
    return names


def parameter_fields(tree: ast.Module) -> dict[str, ast.expr]:
    node = classes(tree)["DRDMSlicerParameterNode"]
    return {stmt.target.id: stmt.annotation for stmt in node.body if isinstance(stmt, ast.AnnAssign)}


def bound_widgets() -> dict[str, str]:
    """SlicerParameterName -> class of the .ui widget carrying it."""
    bound = {}
    for widget in ET.parse(UI).iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                name = prop.find("string").text
                assert name not in bound, f"{name} is bound twice"
                bound[name] = widget.get("class")
    return bound


def minimum_version(tree: ast.Module) -> tuple[int, int]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["MINIMUM_SLICER_VERSION"]:
            return ast.literal_eval(node.value)
    raise AssertionError("DRDMSlicer.py declares no MINIMUM_SLICER_VERSION")


def calls_in(function: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(function) if isinstance(node, ast.Call)]


def reachable(tree: ast.Module, roots: list[str]) -> dict[str, ast.FunctionDef]:
    """Widget methods reachable from ``roots`` through ``self.m(...)`` calls, plus the DRDMSlicerLogic methods they
    call as ``self.logic.m(...)`` and the module functions they call by name (keys: "Widget.m", "Logic.m", "m")."""
    widget, logic = methods(classes(tree)["DRDMSlicerWidget"]), methods(classes(tree)["DRDMSlicerLogic"])
    functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    seen: dict[str, ast.FunctionDef] = {}
    todo = [("Widget", name) for name in roots]
    while todo:
        owner, name = todo.pop()
        table = {"Widget": widget, "Logic": logic, "": functions}[owner]
        key = f"{owner}.{name}" if owner else name
        if key in seen or name not in table:
            continue
        seen[key] = table[name]
        for call in calls_in(table[name]):
            f = call.func
            if isinstance(f, ast.Name):
                todo.append(("", f.id))
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "self":
                todo.append((owner, f.attr))
            elif (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Attribute) and f.value.attr == "logic"
                  and isinstance(f.value.value, ast.Name) and f.value.value.id == "self"):
                todo.append(("Logic", f.attr))
    return seen


def test_module_classes_exist(tree):
    assert {"DRDMSlicer", "DRDMSlicerWidget", "DRDMSlicerLogic", "DRDMSlicerTest", "DRDMSlicerParameterNode"} <= set(classes(tree))


def test_every_ui_widget_used_exists():
    names = {w.get("name") for w in ET.parse(UI).iter("widget")}
    used = attribute_uses(ast.parse(MODULE.read_text(encoding="utf-8")), "ui")
    assert used and used <= names, used - names


def test_parameter_names_match_parameter_node(tree):
    assert set(bound_widgets()) == set(parameter_fields(tree))


# -- the connector rules ----------------------------------------------------------------------------------------------

def test_rule_table_is_the_oldest_supported_slicers(tree):
    major, minor = minimum_version(tree)
    assert CONNECTOR_RULES_SOURCE[2] == f"v{major}.{minor}.0", "update CONNECTOR_RULES for the new minimum Slicer"


def test_every_parameter_is_representable_by_its_widget(tree):
    fields, problems = parameter_fields(tree), []
    for name, widget_class in bound_widgets().items():
        type_name, annotations = field_type(fields[name])
        connector, problem = connector_for(widget_class, type_name, annotations)
        if problem:
            problems.append(f"{name}: {type_name} on {widget_class}: {problem}")
    assert not problems, problems


@pytest.mark.parametrize(("widget_class", "type_name", "annotations", "works"), [
    ("ctkSliderWidget", "int", {"WithinRange"}, True),    # int on a slider widget: fine from 5.10 on
    ("ctkSliderWidget", "float", set(), False),           # unbounded slider: create() raises
    ("ctkSliderWidget", "float", {"Minimum", "Maximum"}, True),
    ("QSpinBox", "int", set(), True),
    ("QSlider", "int", {"Minimum"}, False),
    ("QComboBox", "str", set(), False),                   # needs Choice
    ("QComboBox", "str", {"Choice"}, True),
    ("QLineEdit", "int", set(), False),
    ("ctkCheckBox", "bool", set(), True),
    ("qSlicerCheckBox", "bool", set(), False),            # exact class only
    ("qMRMLNodeComboBox", "vtkMRMLNode", set(), True),
])
def test_connector_rules_accept_and_reject(widget_class, type_name, annotations, works):
    assert (connector_for(widget_class, type_name, annotations)[1] is None) == works


def test_int_on_a_slider_widget_is_why_slicer_5_8_is_not_supported():
    """The binding `level: int` on a ctkSliderWidget works under the v5.10.0 rules and raises under v5.8.1's."""
    assert connector_for("ctkSliderWidget", "int", {"WithinRange"})[1] is None
    assert connector_for("ctkSliderWidget", "int", {"WithinRange"}, CONNECTOR_RULES_V5_8_1)[1] is not None


# -- the minimum Slicer version -----------------------------------------------------------------------------------------

def test_minimum_version_is_declared_everywhere_it_can_be(tree):
    major, minor = minimum_version(tree)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"3D Slicer {major}.{minor} or newer" in readme
    s4ext = (REPO / "DRDMSlicer.s4ext").read_text(encoding="utf-8")
    assert re.search(rf"^description .*Requires 3D Slicer {major}\.{minor} or newer", s4ext, re.MULTILINE)
    assert f"find_package(Slicer {major}.{minor} REQUIRED)" in (REPO / "CMakeLists.txt").read_text(encoding="utf-8")


def test_version_check_comes_before_newer_slicer_apis(tree):
    """The check must run on any Slicer 5 (Python 3.9): the file parses as Python 3.9, and the only imports
    before it are ones every Slicer 5 has."""
    ast.parse(MODULE.read_text(encoding="utf-8"), feature_version=(3, 9))
    gate = next(i for i, node in enumerate(tree.body)
                if isinstance(node, ast.If) and any(isinstance(n, ast.Raise) for n in ast.walk(node)))
    before = set()
    for node in tree.body[:gate]:
        if isinstance(node, ast.Import):
            before |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            before.add(node.module)
    assert before <= {"logging", "os", "random", "sys", "time", "qt", "slicer"}, before
    gate_source = ast.unparse(tree.body[gate])
    assert "ImportError" in gate_source and "errorDisplay" in gate_source


# -- the defects found by the read-through ------------------------------------------------------------------------------

# importable before PyTorch is installed (test_settings.py and test_model_choice.py prove it)
TORCH_FREE_ENGINE_MODULES = {"drdm.settings", "drdm.model_store.choice", "DRDMSlicerLib.progress"}  # pure Python


def test_engine_imported_lazily(tree):
    """The module must load in Slicer before PyTorch is installed: no top-level drdm/torch imports except the
    torch-free settings module (the one set of defaults)."""
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module not in TORCH_FREE_ENGINE_MODULES:
            top.add(node.module.split(".")[0])
    assert not top & {"drdm", "torch", "DRDMSlicerLib", "SimpleITK", "safetensors", "PyTorchUtils"}


def test_opening_the_module_reaches_no_engine_code(tree):
    """Nothing reachable from __init__/setup/enter/exit/cleanup imports the engine, touches the deformation logic
    (which imports torch) or checks requirements (which can prompt)."""
    heavy = {"drdm", "torch", "DRDMSlicerLib", "safetensors", "PyTorchUtils"}
    offenders = []
    for key, function in reachable(tree, ["__init__", "setup", "enter", "exit", "cleanup"]).items():
        for node in ast.walk(function):
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(m.split(".")[0] in heavy for m in modules):
                offenders.append(f"{key} imports {modules}")
            if isinstance(node, ast.Attribute) and node.attr == "deformation":
                offenders.append(f"{key} uses .deformation")
            if isinstance(node, ast.Name) and node.id == "ensure_requirements":
                offenders.append(f"{key} calls ensure_requirements")
    assert not offenders, offenders


def observer_calls(function: ast.AST, method: str) -> set[str]:
    """(event, callback) of ``self.<method>(self._parameterNode, event, callback)`` calls."""
    found = set()
    for call in calls_in(function):
        if (isinstance(call.func, ast.Attribute) and call.func.attr == method and len(call.args) == 3
                and ast.unparse(call.args[0]) == "self._parameterNode"):
            found.add(f"{ast.unparse(call.args[1])}, {ast.unparse(call.args[2])}")
    return found


def test_exit_removes_every_parameter_node_observer(tree):
    widget = classes(tree)["DRDMSlicerWidget"]
    added = observer_calls(widget, "addObserver")
    assert added, "the widget observes its parameter node"
    removed = set().union(*(observer_calls(f, "removeObserver") for f in reachable(tree, ["exit"]).values()))
    assert added <= removed, added - removed


def test_scene_close_drops_the_results(tree):
    close = methods(classes(tree)["DRDMSlicerWidget"])["onSceneStartClose"]
    source = ast.unparse(close)
    assert "self._samples = []" in source or "self._samples.clear()" in source


def test_model_import_checks_requirements_before_loading(tree):
    calls = []
    for function in reachable(tree, ["onModelChosen"]).values():
        for call in calls_in(function):
            calls.append((call.lineno, ast.unparse(call.func)))
    names = [name for _, name in sorted(calls)]
    assert "ensure_requirements" in names and "self.logic.loadModel" in names
    assert names.index("ensure_requirements") < names.index("self.logic.loadModel")


def test_view_state_has_one_owner(tree):
    """What the views show is decided by DeformationLogic.show_sample only."""
    assert "showResult" not in methods(classes(tree)["DRDMSlicerLogic"])
    view_calls = {"setSliceViewerLayers", "SetBackgroundVolumeID", "SetForegroundVolumeID", "SetForegroundOpacity",
                  "SetVisibility2D", "SetVisualizationMode", "CreateDefaultDisplayNodes"}
    used = {ast.unparse(c.func).split(".")[-1] for c in calls_in(tree)} & view_calls
    assert not used, used
    assert "show_sample" in attribute_uses(tree, "deformation") | {
        c.func.attr for c in calls_in(tree) if isinstance(c.func, ast.Attribute)}


def deformation_calls(tree: ast.Module) -> list[ast.Call]:
    """Calls ``self.deformation.m(...)`` (logic) and ``self.logic.deformation.m(...)`` (widget)."""
    found = []
    for call in calls_in(tree):
        f = call.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Attribute) and f.value.attr == "deformation":
            found.append(call)
    return found


def test_every_logic_method_called_exists(tree):
    logic = classes(tree)["DRDMSlicerLogic"]
    defined = set(methods(logic)) | {"getParameterNode"}
    called = attribute_uses(tree, "logic")
    assert called <= defined, called - defined
    sys.path.insert(0, str(REPO / "DRDMSlicer"))
    pytest.importorskip("slicer", reason="slicer-core is not installed")
    from DRDMSlicerLib.logic import DeformationLogic

    calls = deformation_calls(tree)
    assert {c.func.attr for c in calls} >= {"show_sample", "is_alive", "generate"}
    for call in calls:  # the method exists and accepts these arguments
        method = getattr(DeformationLogic, call.func.attr)
        arguments = [None] * len(call.args)
        keywords = {k.arg: None for k in call.keywords if k.arg is not None}
        if not isinstance(inspect.getattr_static(DeformationLogic, call.func.attr), staticmethod):
            arguments.insert(0, None)  # self
        inspect.signature(method).bind(*arguments, **keywords)


def test_help_text_cites_the_paper():
    text = MODULE.read_text(encoding="utf-8")
    assert "Medical Image Analysis" in text and "2407.07295" in text and "acknowledgementText" in text


# -- every control wired, the .ui agreeing with the parameter node (issue 26 added size, regions, auto level) -------------

CONTROL_CLASSES = {"QComboBox", "QCheckBox", "QSpinBox", "QDoubleSpinBox", "ctkSliderWidget", "QPushButton",
                   "qMRMLNodeComboBox", "qMRMLSegmentSelectorWidget"}


def ui_widgets() -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ET.parse(UI).iter("widget")}


def ui_property(widget: ET.Element, name: str):
    """The value of a property of a .ui widget as Python (bool, number or text); None when not set."""
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            value = next(iter(prop))
            if value.tag == "bool":
                return value.text == "true"
            if value.tag in ("number", "double"):
                return float(value.text)
            return value.text
    return None


def parameter_defaults(tree: ast.Module) -> dict:
    """The parameter node's defaults, evaluated with the engine's settings (torch-free) in scope."""
    from drdm.settings import DEFAULTS

    node = classes(tree)["DRDMSlicerParameterNode"]
    return {stmt.target.id: eval(ast.unparse(stmt.value), {"DEFAULTS": DEFAULTS})  # noqa: S307  (our own source)
            for stmt in node.body if isinstance(stmt, ast.AnnAssign) and stmt.value is not None}


def parameter_widgets() -> dict[str, str]:
    """SlicerParameterName -> the name of the .ui widget carrying it."""
    return {ui_property(w, "SlicerParameterName"): name for name, w in ui_widgets().items()
            if ui_property(w, "SlicerParameterName")}


def test_every_control_is_wired(tree):
    """Every control of the .ui is bound to the parameter node or used by the widget code, and every bound
    parameter is read (as ``params.X``/``self._parameterNode.X``, or through its widget)."""
    used = attribute_uses(tree, "ui")
    bound = parameter_widgets()
    unwired = [name for name, w in ui_widgets().items() if w.get("class") in CONTROL_CLASSES
               and name not in used and name not in bound.values()]
    assert not unwired, unwired
    read = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and ast.unparse(node.value) in ("params", "self._parameterNode", "node")}
    unread = [p for p, widget in bound.items() if p not in read and widget not in used]
    assert not unread, unread


def test_every_mrml_widget_gets_the_scene():
    """A qMRML widget without the scene lists nothing (the segment selectors would show no segments)."""
    root = ET.parse(UI).getroot()
    receivers = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
                 and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    mrml = {name for name, w in ui_widgets().items() if w.get("class").startswith("qMRML") and name != "DRDMSlicer"}
    assert mrml and mrml <= receivers, mrml - receivers


def test_ui_values_agree_with_the_parameter_defaults(tree):
    """What the .ui shows before a parameter node is connected is the parameter node's default (no second set of
    defaults: the level slider showed 56 while the engine's default is the model's first level)."""
    defaults, widgets = parameter_defaults(tree), ui_widgets()
    mismatches = []
    for parameter, name in parameter_widgets().items():
        widget = widgets[name]
        if parameter not in defaults:
            continue
        if widget.get("class") == "QCheckBox":
            shown = bool(ui_property(widget, "checked"))
        elif widget.get("class") in ("QDoubleSpinBox", "ctkSliderWidget"):
            shown = ui_property(widget, "value")
        else:
            continue
        if shown is not None and shown != defaults[parameter]:
            mismatches.append(f"{name}: .ui {shown!r}, parameter {parameter} {defaults[parameter]!r}")
    assert not mismatches, mismatches


def test_size_comes_first_and_regions_are_per_segment(tree):
    """Size (mm) is the first setting after the inputs; keep still / deform only pick several segments of the input
    segmentation (their own segmentation selector hidden); the level says what it does; det J starts off."""
    from drdm.settings import DEFAULTS

    widgets, defaults = ui_widgets(), parameter_defaults(tree)
    form = next(layout for layout in ET.parse(UI).iter("layout") if layout.get("name") == "formLayout")
    rows = {}
    for item in form.findall("item"):
        child = item.find("widget")
        rows.setdefault(int(item.get("row")), {})[int(item.get("column"))] = child.get("name")
    assert rows[0][1] == "inputVolumeSelector" and rows[1][1] == "inputSegmentationSelector"
    assert rows[2] == {0: "sizeLabel", 1: "sizeSpinBox"} and ui_property(widgets["sizeLabel"], "text") == "Size (mm):"
    size = widgets["sizeSpinBox"]
    assert ui_property(size, "minimum") == 0 and ui_property(size, "specialValueText").startswith("auto")
    assert defaults["magnitude"] == 0.0 and DEFAULTS.magnitude is None  # 0 = "auto" = None for the logic
    for name in ("keepSegmentSelector", "onlySegmentSelector"):
        assert widgets[name].get("class") == "qMRMLSegmentSelectorWidget"
        assert ui_property(widgets[name], "multiSelection") is True
        assert ui_property(widgets[name], "segmentationNodeSelectorVisible") is False
    assert defaults["margin"] == DEFAULTS.margin and ui_property(widgets["marginSpinBox"], "minimum") > 0
    level_help = "the starting noise of the recovery, which changes the draw more than its size"
    assert level_help in ui_property(widgets["levelSlider"], "toolTip")
    assert level_help in ui_property(widgets["label3"], "toolTip")
    assert "magnitude" not in ui_property(widgets["label3"], "text")
    assert defaults["autoLevel"] is (DEFAULTS.level is None)
    max_level = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                     and [t.id for t in n.targets if isinstance(t, ast.Name)] == ["MAX_LEVEL"])
    assert ui_property(widgets["levelSlider"], "maximum") == max_level
    assert "WithinRange(0, MAX_LEVEL)" in ast.unparse(parameter_fields(tree)["level"])
    assert defaults["showJacobian"] is False and ui_property(widgets["showJacobianCheckBox"], "checked") is False


def test_the_torch_free_modules_the_module_imports_at_load_import_no_torch():
    import subprocess
    import sys

    code = ("import sys; import drdm.settings, drdm.model_store.choice, DRDMSlicerLib.progress; "
            "print(sorted(m for m in ('torch', 'SimpleITK', 'numpy', 'slicer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
