"""GPU defaults decided by the figures, testable on the CPU: the CUDA-graph rule (drdm.settings.cuda_graph_by_rule)
against every committed GPU measurement, the sampler consulting it, and the ``precision`` choice (exact / tf32)
from the settings, the CLI, deform_image and DeformationLogic down to the network's TF32 flags."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import REPO
from drdm.models import untrained_model
from drdm.sampler import generate
from drdm.settings import (
    DEFAULTS,
    GRAPH_MAX_BATCH,
    PRECISIONS,
    DeformationSettings,
    SettingsError,
    cuda_graph_by_rule,
    use_cuda_graph,
)
from drdm.training.phantoms import cardiac_phantom

RESULTS = REPO / "benchmarks" / "results"
TOLERANCE = 0.05  # graph and eager within 5 % of each other: either choice agrees with the measurement


@pytest.fixture(scope="module")
def small_image():
    return cardiac_phantom(32, 2, seed=1)[0]


@pytest.mark.parametrize("device, ndims, batch, expected", [
    ("cuda", 2, 1, True), ("cuda", 2, 2, True), ("cuda", 2, GRAPH_MAX_BATCH, True), ("cuda", 2, GRAPH_MAX_BATCH + 1, False),
    ("cuda", 2, 8, False), ("cuda", 2, 32, False), ("cuda", 3, 1, False), ("cpu", 2, 1, False), ("mps", 2, 1, False)])
def test_cuda_graph_rule(device, ndims, batch, expected):
    assert cuda_graph_by_rule(device, ndims, batch) is expected


def test_an_explicit_cuda_graph_choice_is_obeyed():
    assert use_cuda_graph(True, "cuda", 3, 32) is True
    assert use_cuda_graph(False, "cuda", 2, 1) is False
    assert use_cuda_graph(None, "cuda", 2, 1) is True and use_cuda_graph(None, "cuda", 3, 1) is False


def measured_graph_pairs() -> list[tuple[str, dict, float]]:
    """``(file, case, eager s / graph s)`` of every fp32/exact sampler case measured eagerly and as a graph in the
    committed GPU results (``benchmarks/results/gpu_*.json``)."""
    pairs = []
    for path in sorted(RESULTS.glob("gpu_*.json")):
        report = json.loads(path.read_text(encoding="utf-8"))
        if report.get("smoke"):
            continue
        times: dict[tuple, dict[bool, float]] = {}
        rows = report.get("sampler", [])  # the first format (2026-11-28); since issue 22 one list per phase
        rows += [row for name in ("graph", "throughput", "sampler_3d") for row in (report.get(name) or {}).get("rows", [])]
        for row in rows:
            case, result = row.get("case", {}), row.get("result") or {}
            if case.get("precision") not in ("fp32", "exact") or "s_per_batch" not in result:
                continue
            key = tuple(case[k] for k in ("dims", "size", "batch", "mode", "speed"))
            times.setdefault(key, {})[bool(case["graph"])] = result["s_per_batch"]
        for (dims, size, batch, mode, speed), pair in times.items():
            if len(pair) == 2:
                case = {"dims": dims, "size": size, "batch": batch, "mode": mode, "speed": speed}
                pairs.append((path.name, case, pair[False] / pair[True]))
    return pairs


def test_the_rule_agrees_with_every_measured_case():
    """Where the rule turns the graph on it was measured faster, where off not faster (within 5 %): a new GPU run
    that contradicts the rule fails here until the rule (settings.GRAPH_MAX_BATCH) follows the figures."""
    pairs = measured_graph_pairs()
    assert len(pairs) >= 8, pairs  # the H200 run of 2026-11-28 alone has 8
    for name, case, speedup in pairs:
        on = cuda_graph_by_rule("cuda", case["dims"], case["batch"])
        assert (speedup > 1 - TOLERANCE) if on else (speedup < 1 + TOLERANCE), (name, case, speedup)
    assert any(speedup > 1.5 for _, case, speedup in pairs if case["batch"] == 1 and case["dims"] == 2)


def test_the_sampler_asks_the_rule_with_its_batch_and_dimensionality(small_model, small_image, monkeypatch):
    import drdm.sampler

    asked = []

    def spy(choice, device_type, ndims, batch):
        asked.append((choice, device_type, ndims, batch))
        return use_cuda_graph(choice, device_type, ndims, batch)

    monkeypatch.setattr(drdm.sampler, "use_cuda_graph", spy)
    image = small_image.expand(3, -1, -1, -1).contiguous()
    result = generate(small_model, image, mode="reference", speed="faithful", start_level=20,
                      levels=[1, 0], generator=torch.Generator().manual_seed(0))
    generate(small_model, image, mode="reference", speed="faithful", start_level=20, levels=[1, 0],
             generator=torch.Generator().manual_seed(0), cuda_graph=True)
    assert asked == [(None, "cpu", 2, 3), (True, "cpu", 2, 3)]
    assert result.cuda_graph is False  # never on the CPU


def test_precisions_give_identical_samples_on_the_cpu(small_model, small_image):
    runs = [generate(small_model, small_image, speed="faithful", mode="diffeomorphic",
                     precision=precision, start_level=30, levels=[3, 2, 1, 0],
                         generator=torch.Generator().manual_seed(5)) for precision in PRECISIONS]
    assert torch.equal(runs[0].ddf, runs[1].ddf) and torch.equal(runs[0].image, runs[1].image)
    assert [r.precision for r in runs] == list(PRECISIONS)
    assert runs[0].ddf.abs().max() > 0


@pytest.mark.parametrize("precision, expected", [("exact", (False, False)), ("tf32", (True, True))])
def test_precision_sets_tf32_around_the_network_and_restores_it(small_model, small_image, monkeypatch, precision, expected):
    seen = []
    forward = type(small_model.network).forward

    def spy(self, *args, **kwargs):
        seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(small_model.network), "forward", spy)
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32  # cuBLAS's flag: no monkeypatch
    before = (not expected[0], not expected[1])
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
    try:
        generate(small_model, small_image, mode="reference", speed="faithful",
                 precision=precision, start_level=20, levels=[1, 0], generator=torch.Generator().manual_seed(0))
        after = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    assert seen == [expected, expected]
    assert after == before


def test_unknown_precision_is_refused_everywhere(small_model, small_image):
    """The sampler refuses it; above it the one settings object does, with the one vocabulary message."""
    with pytest.raises(ValueError, match="unknown precision"):
        generate(small_model, small_image, mode="reference", speed="faithful", precision="fp16",
                 start_level=20, levels=[0])
    with pytest.raises(SettingsError, match="^unknown precision 'half'; choose one of exact, tf32$"):
        DeformationSettings(precision="half")


def test_every_front_end_defaults_to_exact_precision_and_the_graph_rule():
    import inspect

    from drdm.cli import build_parser
    from drdm.physical.deform import compute_fields, deform_image, deform_images

    assert DEFAULTS.precision == "exact"
    for function in (deform_image, deform_images, compute_fields):  # below the front ends: the settings object
        parameters = inspect.signature(function).parameters
        assert "precision" not in parameters and parameters["settings"].default is inspect.Parameter.empty
        assert parameters["cuda_graph"].default is None
    assert inspect.signature(generate).parameters["cuda_graph"].default is None
    parser = build_parser()
    for command in (["generate", "x.nii.gz"], ["augment", "x.nii.gz"], ["synthesize", "x.nii.gz"]):
        assert parser.parse_args(command + ["--out", "o"]).precision == "exact"
        assert parser.parse_args(command + ["--out", "o", "--precision", "tf32"]).precision == "tf32"
    with pytest.raises(SystemExit):
        parser.parse_args(["generate", "x.nii.gz", "--out", "o", "--precision", "fp16"])


def test_deform_image_records_precision_and_graph_in_its_statistics(small_model):
    from drdm.physical.deform import deform_image

    image = sitk.GetImageFromArray(cardiac_phantom(40, 2, seed=2)[0][0, 0].numpy())
    results = {precision: deform_image(small_model, image, settings=DeformationSettings(level=20, seed=3, speed="faster",
        precision=precision))
               for precision in PRECISIONS}
    for precision, result in results.items():
        assert result.statistics["precision"] == precision and result.statistics["cuda_graph"] is False
    assert torch.equal(results["exact"].ddf, results["tf32"].ddf)  # identical on the CPU


def test_the_cli_writes_the_precision_into_stats_json(tmp_path, small_model):
    from drdm.cli import main
    from drdm.model_store.files import save_model

    weights, _ = save_model(small_model, tmp_path / "small.safetensors")
    image = tmp_path / "image.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(cardiac_phantom(40, 2, seed=2)[0][0, 0].numpy()), str(image))
    assert main(["generate", str(image), "--model", str(weights), "--level", "20", "--seed", "1", "--speed", "faster",
                 "--precision", "tf32", "--device", "cpu", "--out", str(tmp_path / "out")]) == 0
    (stats,) = (tmp_path / "out").glob("*/stats.json")
    recorded = json.loads(stats.read_text(encoding="utf-8"))
    assert recorded["precision"] == "tf32" and recorded["cuda_graph"] is False


def test_deformation_logic_passes_the_precision_to_the_engine():
    slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")
    vtk = pytest.importorskip("vtk")
    from DRDMSlicerLib.logic import DeformationLogic
    from vtk.util.numpy_support import numpy_to_vtk

    scene = slicer.vtkMRMLScene()
    array = cardiac_phantom(20, 3, seed=2)[0][0, 0].numpy()
    data = vtk.vtkImageData()
    data.SetDimensions(20, 20, 20)
    data.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(array).ravel().astype(np.float32), deep=True))
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "input")
    volume.SetAndObserveImageData(data)
    logic = DeformationLogic(scene)
    model = untrained_model(3, size=16)
    request = logic.prepare(volume, settings=DeformationSettings(level=20, seed=0, speed="faster", device="cpu",
        precision="tf32"), model=model)
    assert request.settings.precision == "tf32"
    (result,) = DeformationLogic.compute(request)
    assert result.statistics["precision"] == "tf32" and result.statistics["cuda_graph"] is False
    assert logic.prepare(volume, settings=DeformationSettings(level=20, seed=0, device="cpu"),
                         model=model).settings.precision == DEFAULTS.precision
    with pytest.raises(ValueError, match="unknown precision"):
        logic.prepare(volume, settings=DeformationSettings(level=20, seed=0, device="cpu", precision="fp8"), model=model)
