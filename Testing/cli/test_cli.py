"""The drdm command line in physical space: geometry kept, transform reproduces the output, bad inputs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import DATA, field_only_model
from drdm.cli import main
from drdm.errors import MEMORY_ADVICE
from drdm.model_store.files import save_model
from drdm.physical.io import displacement_image, displacement_transform


def rotation(ndim: int) -> tuple[float, ...]:
    if ndim == 2:
        a = np.deg2rad(20)
        return tuple(np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]).ravel())
    a, b = np.deg2rad(25), np.deg2rad(-12)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return tuple((rz @ ry).ravel())


def blob_image(size: tuple[int, ...], spacing: tuple[float, ...], seed: int = 0,
               smooth: bool = False) -> tuple[sitk.Image, sitk.Image]:
    """A blob image (int16, with noise or, if ``smooth``, a smooth texture) and labels {0, 2, 5} with oblique
    geometry; size/spacing in ITK (x, y, z) order."""
    g = np.random.default_rng(seed)
    shape = size[::-1]
    coords = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    radius = np.sqrt(sum(c**2 for c in coords))
    if smooth:
        texture = 120 * np.sin(5 * coords[-1]) * np.cos(4 * coords[-2])
    else:
        texture = 30 * g.standard_normal(shape)
    array = 400 * np.exp(-4 * radius**2) + texture
    labels = np.zeros(shape, dtype=np.uint8)
    labels[radius < 0.45] = 5
    labels[(radius >= 0.45) & (radius < 0.7)] = 2
    image = sitk.GetImageFromArray(array.astype(np.int16))
    label_image = sitk.GetImageFromArray(labels)
    for im in (image, label_image):
        im.SetSpacing(spacing)
        im.SetOrigin(tuple(10.0 * (i + 1) * (-1) ** i for i in range(len(size))))
        im.SetDirection(rotation(len(size)))
    return image, label_image


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def only_sample(out: Path) -> Path:
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def assert_same_geometry(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    assert np.allclose(a.GetSpacing(), b.GetSpacing()) and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
    assert np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)


def check_sample(folder: Path, image_path: Path, labels_path: Path | None, interpolator: int = sitk.sitkLinear) -> dict:
    """Geometry kept, transform.h5 reproduces image.nii.gz, labels keep their values; returns stats.json."""
    original = sitk.ReadImage(str(image_path))
    deformed = sitk.ReadImage(str(folder / "image.nii.gz"))
    for name in ("image.nii.gz", "jacobian.nii.gz", "ddf.nii.gz"):
        assert_same_geometry(sitk.ReadImage(str(folder / name)), original)
    transform = sitk.ReadTransform(str(folder / "transform.h5"))
    again = sitk.Resample(original, original, transform, interpolator)
    ours, theirs = sitk.GetArrayFromImage(deformed).astype(float), sitk.GetArrayFromImage(again).astype(float)
    value_range = float(np.ptp(sitk.GetArrayFromImage(original)))
    assert np.abs(ours - theirs).max() <= 1e-3 * value_range
    assert np.abs(ours - sitk.GetArrayFromImage(original)).max() > 0.05 * value_range  # it did deform
    if labels_path is not None:
        labels_in = sitk.GetArrayFromImage(sitk.ReadImage(str(labels_path)))
        labels_out_image = sitk.ReadImage(str(folder / "labels.nii.gz"))
        assert_same_geometry(labels_out_image, original)
        labels_out = sitk.GetArrayFromImage(labels_out_image)
        assert set(np.unique(labels_out)) <= set(np.unique(labels_in))
        assert len(np.unique(labels_out)) >= len(np.unique(labels_in)) - 1
    stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
    assert (folder / "qa.png").stat().st_size > 10_000
    return stats


@pytest.fixture(scope="module")
def model3d_path(tmp_path_factory) -> Path:
    weights, _ = save_model(field_only_model(3, 16, seed=3), tmp_path_factory.mktemp("models") / "tiny3d.safetensors")
    return weights


def test_displacement_image_is_lps_physical():
    """A one-voxel pull along array axis 2 (ITK i) moves content by exactly one voxel, with oblique direction."""
    image, _ = blob_image((20, 18, 12), (0.8, 1.1, 2.5))
    ddf = torch.zeros(1, 3, 12, 18, 20)
    ddf[:, 2] = 1.0
    transform = displacement_transform(displacement_image(ddf, image))
    moved = sitk.GetArrayFromImage(sitk.Resample(image, image, transform, sitk.sitkLinear))
    original = sitk.GetArrayFromImage(image)
    assert np.abs(moved[:, :, :-1].astype(float) - original[:, :, 1:]).max() <= 1
    ddf = torch.zeros(1, 3, 12, 18, 20)
    ddf[:, 0] = -1.0  # pull from the previous slice
    moved = sitk.GetArrayFromImage(sitk.Resample(image, image, displacement_transform(displacement_image(ddf, image)),
                                                 sitk.sitkLinear))
    assert np.abs(moved[1:].astype(float) - original[:-1]).max() <= 1


def test_generate_oblique_anisotropic_3d(tmp_path, model3d_path):
    image, labels = blob_image((40, 36, 24), (0.8, 1.1, 2.5))
    image_path, labels_path = tmp_path / "vol.nrrd", tmp_path / "vol_labels.nrrd"
    sitk.WriteImage(image, str(image_path))
    sitk.WriteImage(labels, str(labels_path))
    before = digest(image_path), digest(labels_path)
    out = tmp_path / "out"
    code = main(["generate", str(image_path), "--labels", str(labels_path), "--model", str(model3d_path),
                 "--level", "79", "--seed", "1", "--speed", "fast", "--out", str(out)])
    assert code == 0
    stats = check_sample(only_sample(out), image_path, labels_path)
    assert stats["folding_fraction"] == 0.0 and stats["seed"] == 1 and stats["level"] == 79
    assert (digest(image_path), digest(labels_path)) == before


def test_generate_2d_oblique_with_published_model(tmp_path, checkpoint_path):
    image, labels = blob_image((200, 180), (0.9, 1.3))
    image_path, labels_path = tmp_path / "slice.nii.gz", tmp_path / "slice_labels.nii.gz"
    sitk.WriteImage(image, str(image_path))
    sitk.WriteImage(labels, str(labels_path))
    out = tmp_path / "out"
    code = main(["generate", str(image_path), "--labels", str(labels_path), "--model", str(checkpoint_path),
                 "--level", "48", "--seed", "2", "--speed", "fast", "--interpolation", "bspline", "--out", str(out)])
    assert code == 0
    check_sample(only_sample(out), image_path, labels_path, sitk.sitkBSpline)


def test_generate_thick_slice_cardiac_stack(tmp_path, checkpoint_path):
    source = DATA / "cmr" / "patient001_frame01.nii.gz"
    if not source.exists():
        pytest.skip(f"sample data not available: {source}")
    image = sitk.ReadImage(str(source))[:, :, 4:7]  # three thick slices keep the test fast
    labels = sitk.ReadImage(str(DATA / "cmr" / "patient001_frame01_gt.nii.gz"))[:, :, 4:7]
    image_path, labels_path = tmp_path / "stack.nii.gz", tmp_path / "stack_gt.nii.gz"
    sitk.WriteImage(image, str(image_path))
    sitk.WriteImage(labels, str(labels_path))
    out = tmp_path / "out"
    code = main(["generate", str(image_path), "--labels", str(labels_path), "--model", str(checkpoint_path),
                 "--level", "56", "--seed", "0", "--speed", "fast", "--out", str(out)])
    assert code == 0
    folder = only_sample(out)
    stats = check_sample(folder, image_path, labels_path)
    assert stats["slice_axis"] == 0  # the 10 mm axis
    ddf = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "ddf.nii.gz")))
    assert np.abs(ddf[..., 2]).max() < 1e-6  # no through-plane (z) displacement
    assert stats["folding_fraction"] == 0.0


def test_count_and_seed_reproducibility(tmp_path, model3d_path):
    image, _ = blob_image((24, 24, 16), (1.0, 1.0, 2.0))
    image_path = tmp_path / "v.mha"
    sitk.WriteImage(image, str(image_path))
    args = ["generate", str(image_path), "--model", str(model3d_path), "--level", "30", "--seed", "7",
            "--speed", "fast"]
    assert main(args + ["--count", "2", "--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    folders = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert folders == ["v_T30_seed7", "v_T30_seed8"]
    first = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "a" / "v_T30_seed7" / "ddf.nii.gz")))
    again = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "b" / "v_T30_seed7" / "ddf.nii.gz")))
    assert np.array_equal(first, again)


def test_jacobian_command_on_written_transform(tmp_path, model3d_path, capsys):
    image, _ = blob_image((24, 24, 16), (1.0, 0.7, 2.0))
    image_path = tmp_path / "v.nii.gz"
    sitk.WriteImage(image, str(image_path))
    assert main(["generate", str(image_path), "--model", str(model3d_path), "--level", "30", "--seed", "3",
                 "--speed", "fast", "--out", str(tmp_path / "g")]) == 0
    folder = only_sample(tmp_path / "g")
    capsys.readouterr()
    out = tmp_path / "detj.nii.gz"
    assert main(["jacobian", str(folder / "transform.h5"), "--reference", str(image_path), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    ours = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "jacobian.nii.gz")))
    assert np.abs(ours - written).max() < 1e-4
    stored = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
    assert abs(printed["mean_mm"] - stored["mean_mm"]) < 1e-6
    import drdm  # the command and the Python API are one code path

    det, stats = drdm.jacobian(folder / "transform.h5", sitk.ReadImage(str(image_path)))  # the grid as written
    assert np.array_equal(sitk.GetArrayFromImage(det), ours) and stats == printed


# -- bad inputs: one clear line, exit 2, nothing written, inputs untouched ----------------------------------


def write(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path))
    return path


@dataclass(frozen=True)
class BadInputs:
    """What a bad-input case starts from: a good image and labels written in ``folder`` and a 3D model path."""

    folder: Path
    good: sitk.Image
    good_labels: sitk.Image
    image: Path
    model: str


Case = tuple[list[str], list[Path], str]  # CLI arguments, input files, expected message fragment
BAD_CASE_BUILDERS: dict[str, Callable[[BadInputs], Case]] = {}


def bad_input_case(name: str):
    """Register a bad-input case builder under ``name``."""
    def register(builder: Callable[[BadInputs], Case]) -> Callable[[BadInputs], Case]:
        BAD_CASE_BUILDERS[name] = builder
        return builder
    return register


@bad_input_case("missing file")
def _missing(c: BadInputs) -> Case:
    return [str(c.folder / "nope.nii.gz"), "--model", c.model], [], "no such file"


@bad_input_case("corrupt file")
def _corrupt(c: BadInputs) -> Case:
    broken = c.folder / "broken.nii.gz"
    broken.write_bytes(c.image.read_bytes()[:300])
    return [str(broken), "--model", c.model], [broken], "cannot be read"


@bad_input_case("empty volume")
def _empty(c: BadInputs) -> Case:
    empty = c.folder / "empty.nhdr"
    header = "NRRD0004\ntype: short\ndimension: 3\nsizes: 0 0 0\nencoding: raw\ndata file: empty.raw\n"
    empty.write_text(header, encoding="utf-8")
    (c.folder / "empty.raw").write_bytes(b"")
    # ITK refuses a zero-size volume as a file: it never reaches the engine's own "is empty" check
    return [str(empty), "--model", c.model], [empty], "empty.nhdr: cannot be read (corrupt, truncated or unsupported"


@bad_input_case("4D image")
def _four_d(c: BadInputs) -> Case:
    four = write(sitk.Image([4, 4, 4, 3], sitk.sitkFloat32), c.folder / "four.nii.gz")
    return [str(four), "--model", c.model], [four], "4D"


@bad_input_case("RGB image")
def _rgb(c: BadInputs) -> Case:
    rgb = write(sitk.Image([16, 16], sitk.sitkVectorUInt8, 3), c.folder / "rgb.png")
    return [str(rgb), "--model", c.model], [rgb], "components"


@bad_input_case("NaN voxels")
def _nan_mha(c: BadInputs) -> Case:
    array = sitk.GetArrayFromImage(c.good).astype(np.float32)
    array[3, 4, 5] = np.nan
    nan = write(sitk.GetImageFromArray(array), c.folder / "nan.mha")
    return [str(nan), "--model", c.model], [nan], "nan.mha: contains NaN or infinite voxels"


def _not_finite_nifti(c: BadInputs, value: float) -> Case:
    array = sitk.GetArrayFromImage(c.good).astype(np.float32)
    array[3, 4, 5] = value
    bad = write(sitk.GetImageFromArray(array), c.folder / "bad.nii.gz")
    return [str(bad), "--model", c.model], [bad], "bad.nii.gz: contains NaN or infinite voxels"


# ITK's NIfTI reader alone turns NaN and Inf into 0
bad_input_case("NaN voxels (NIfTI)")(lambda c: _not_finite_nifti(c, np.nan))
bad_input_case("Inf voxels (NIfTI)")(lambda c: _not_finite_nifti(c, np.inf))


@bad_input_case("constant image")
def _constant(c: BadInputs) -> Case:
    const = write(sitk.Image([16, 16, 8], sitk.sitkInt16) + 7, c.folder / "const.nii.gz")
    return [str(const), "--model", c.model], [const], "constant"


@bad_input_case("labels geometry")
def _labels_geometry(c: BadInputs) -> Case:
    other = sitk.Image(c.good_labels)
    other.SetSpacing((1.0, 1.0, 3.0))
    moved = write(other, c.folder / "moved_labels.nii.gz")
    return [str(c.image), "--labels", str(moved), "--model", c.model], [c.image, moved], "geometry differs"


@bad_input_case("non-integer labels")
def _fractional_labels(c: BadInputs) -> Case:
    frac = write(sitk.Cast(c.good_labels, sitk.sitkFloat32) * 0.5, c.folder / "frac_labels.nii.gz")
    return [str(c.image), "--labels", str(frac), "--model", c.model], [c.image, frac], "not integers"


@bad_input_case("3D model on 2D image")
def _dimension_mismatch(c: BadInputs) -> Case:
    flat = write(c.good[:, :, 3], c.folder / "flat.nii.gz")
    return [str(flat), "--model", c.model], [flat], "3D model cannot deform a 2D image"


@bad_input_case("not a DRDM checkpoint")
def _not_a_checkpoint(c: BadInputs) -> Case:
    fake = c.folder / "fake.pth"
    torch.save({"weight": torch.zeros(3)}, fake)
    return [str(c.image), "--model", str(fake)], [c.image, fake], "not a DRDM"


@bad_input_case("level out of range")
def _level_out_of_range(c: BadInputs) -> Case:
    return [str(c.image), "--model", c.model, "--level", "500"], [c.image], "out of range"


@bad_input_case("output not writable")
def _output_not_writable(c: BadInputs) -> Case:
    blocker = c.folder / "a_file"
    blocker.write_text("x", encoding="utf-8")
    return [str(c.image), "--model", c.model, "--out", str(blocker / "sub")], [c.image], "not writable"


@bad_input_case("too large for memory")
def _too_large(c: BadInputs) -> Case:
    return [str(c.image), "--model", c.model, "--memory-limit-test"], [c.image], "of memory but only"


def bad_case(tmp_path: Path, name: str, model3d_path: Path) -> Case:
    """Build one bad-input case: (CLI arguments, input files, expected message fragment)."""
    good, good_labels = blob_image((24, 24, 16), (1.0, 1.0, 2.0))
    image = write(good, tmp_path / "good.nii.gz")
    return BAD_CASE_BUILDERS[name](BadInputs(tmp_path, good, good_labels, image, str(model3d_path)))


BAD_CASES = list(BAD_CASE_BUILDERS)


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input(case, tmp_path, model3d_path, capsys, monkeypatch):
    args, inputs, message = bad_case(tmp_path, case, model3d_path)
    if "--memory-limit-test" in args:
        args.remove("--memory-limit-test")
        monkeypatch.setenv("DRDM_MEMORY_LIMIT_BYTES", "1000000")
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    before = {p: digest(p) for p in inputs}
    capsys.readouterr()
    code = main(["generate"] + args + ["--speed", "fast", "--seed", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("drdm: error:") and len(err.splitlines()) == 1, err
    assert message.lower() in err.lower(), err
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())
    assert {p: digest(p) for p in inputs} == before


@pytest.mark.parametrize("error, message", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"), "out of GPU memory"),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99999999999 bytes"), "out of memory"),
    (MemoryError(), "out of memory"),
])
def test_out_of_memory_during_the_run_is_one_clear_line(tmp_path, model3d_path, capsys, monkeypatch, error, message):
    """An allocation that fails inside the sampler ends like the memory check before the run: one line, exit 2."""
    from drdm.physical import deform

    def out_of_memory(*args, **kwargs):
        raise error

    monkeypatch.setattr(deform, "generate", out_of_memory)
    image = write(blob_image((24, 24, 16), (1.0, 1.0, 2.0))[0], tmp_path / "v.nii.gz")
    capsys.readouterr()
    code = main(["generate", str(image), "--model", str(model3d_path), "--seed", "0", "--out", str(tmp_path / "out")])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"drdm: error: {message}: {MEMORY_ADVICE}"
    assert list((tmp_path / "out").iterdir()) == []


def test_other_runtime_errors_are_not_called_memory(tmp_path, model3d_path, monkeypatch):
    from drdm.physical import deform

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(deform, "generate", broken)
    image = write(blob_image((24, 24, 16), (1.0, 1.0, 2.0))[0], tmp_path / "v.nii.gz")
    with pytest.raises(RuntimeError, match="a bug"):
        main(["generate", str(image), "--model", str(model3d_path), "--seed", "0", "--out", str(tmp_path / "out")])


# -- augment (Algorithm 3) and synthesize (Algorithm 4) ----------------------------------------------------


def test_augment_shards_manifest_and_resume(tmp_path, model3d_path):
    data = tmp_path / "data"
    data.mkdir()
    for name, seed in (("case1", 0), ("case2", 1)):
        image, labels = blob_image((20, 20, 12), (1.0, 1.0, 2.0), seed)
        sitk.WriteImage(image, str(data / f"{name}.nii.gz"))
        sitk.WriteImage(labels, str(data / f"{name}_gt.nii.gz"))
    out = tmp_path / "aug"
    base = ["augment", str(data), "--label-suffix", "_gt", "--model", str(model3d_path), "--levels", "30", "60",
            "--speed", "fast", "--no-qa", "--out", str(out)]
    assert main(base + ["--shard", "0/2"]) == 0
    assert main(base + ["--shard", "1/2"]) == 0
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["case1_T30_seed0", "case1_T60_seed1", "case2_T30_seed2", "case2_T60_seed3"]
    rows = []
    for manifest in ("manifest-shard0of2.csv", "manifest-shard1of2.csv"):
        import csv

        with open(out / manifest, encoding="utf-8") as handle:
            rows += list(csv.DictReader(handle))
    assert sorted(int(r["job"]) for r in rows) == [0, 1, 2, 3]
    assert all(r["labels"].endswith("_gt.nii.gz") and Path(r["out_labels"]).is_file() for r in rows)
    # resume: a finished job is not redone, a missing one is
    kept = out / "case1_T30_seed0" / "image.nii.gz"
    stamp = kept.stat().st_mtime_ns
    import shutil

    shutil.rmtree(out / "case2_T60_seed3")
    assert main(base) == 0
    assert (out / "case2_T60_seed3" / "image.nii.gz").is_file() and kept.stat().st_mtime_ns == stamp


def test_synthesize_pair_direction(tmp_path, model3d_path):
    image, labels = blob_image((28, 24, 14), (0.9, 1.2, 2.0), smooth=True)
    image_path, labels_path = tmp_path / "v.nii.gz", tmp_path / "v_gt.nii.gz"
    sitk.WriteImage(image, str(image_path))
    sitk.WriteImage(labels, str(labels_path))
    out = tmp_path / "syn"
    assert main(["synthesize", str(image_path), "--labels", str(labels_path), "--model", str(model3d_path),
                 "--level", "79", "--seed", "4", "--speed", "fast", "--out", str(out)]) == 0
    folder = only_sample(out)
    moving = sitk.ReadImage(str(folder / "moving.nii.gz"), sitk.sitkFloat64)
    fixed = sitk.ReadImage(str(folder / "fixed.nii.gz"), sitk.sitkFloat64)
    transform = sitk.ReadTransform(str(folder / "transform.h5"))
    mapped = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, transform, sitk.sitkLinear))
    fixed_array, moving_array = sitk.GetArrayFromImage(fixed), sitk.GetArrayFromImage(moving)
    inner = (slice(2, -2),) * 3
    error = np.abs(mapped - fixed_array)[inner].mean()
    before = np.abs(moving_array - fixed_array)[inner].mean()
    assert error < 0.5 * before  # the ground truth registers moving onto fixed (interpolation error remains)
    for name in ("moving_labels.nii.gz", "fixed_labels.nii.gz"):
        values = set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(folder / name)))))
        assert values <= {0, 2, 5}


def test_web_without_the_extra_says_what_to_install(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trame_slicer" else real(name, *a))
    assert main(["web"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("drdm: error: drdm web needs the web extra") and "pip install 'drdm[web]'" in error


def test_web_binds_loopback_by_default_and_refuses_a_missing_volume(tmp_path, capsys):
    from drdm.cli import build_parser

    args = build_parser().parse_args(["web"])
    assert (args.host, args.port, args.export_dir, args.device) == ("127.0.0.1", 8080, "drdm-web-exports", "auto")
    assert main(["web", str(tmp_path / "missing.nii.gz")]) == 2
    assert "missing.nii.gz: no such file" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--data-dir", "{other}"], "VOLUME {volume}: outside the data folder"),
    (["--secret-file", "{empty}"], "the file is empty"),
    (["--secret-file", "{missing}"], "cannot be read"),
    (["--max-upload-mb", "0"], "--max-upload-mb 0: must be more than 0"),
    (["--idle-minutes", "-1"], "--idle-minutes -1: must be 0"),
    (["--data-dir", "{missing}"], "not a folder"),
    (["--secret-file", "{shared}"], "other users can read it (mode 0644); run: chmod 600"),
    (["--secret-file", "{weak}", "--host", "0.0.0.0"], "the secret is too weak (about 0 bits; 128 or more"),
    (["--export-dir", "{parent}"], "it holds the data folder"),
])
def test_web_refuses_bad_protection_options_before_starting(tmp_path, capsys, extra, message):
    pytest.importorskip("trame_slicer")
    sitk.WriteImage(sitk.Image(8, 8, 2, sitk.sitkFloat32), str(tmp_path / "v.nii.gz"))
    (tmp_path / "other").mkdir()
    for name, text, mode in (("empty", "", 0o600), ("shared", "Zq8vK2mW0pXr5tYb9nLc3hJd7fGs1aEu6iOo4kTz", 0o644),
                             ("weak", "a" * 16, 0o600)):
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(mode)
    names = dict(other=tmp_path / "other", empty=tmp_path / "empty", missing=tmp_path / "missing",
                 volume=tmp_path / "v.nii.gz", shared=tmp_path / "shared", weak=tmp_path / "weak",
                 parent=tmp_path.parent)
    assert main(["web", str(tmp_path / "v.nii.gz"), *[e.format(**names) for e in extra]]) == 2
    error = capsys.readouterr().err
    assert message.format(**names) in error and error.count("\n") == 1, error


def test_batched_count_runs_the_samples_as_one_batch(tmp_path, model3d_path, monkeypatch):
    """``--batched`` asks deform_images for sampler batches on the CPU; without it the CPU default (None) holds."""
    from drdm.cli import sample_commands

    asked = []
    real = sample_commands.deform_images

    def spy(*args, **kwargs):
        asked.append(kwargs.get("batch"))
        return real(*args, **kwargs)

    monkeypatch.setattr(sample_commands, "deform_images", spy)
    image, _ = blob_image((24, 24, 16), (1.0, 1.0, 2.0))
    image_path = tmp_path / "v.mha"
    sitk.WriteImage(image, str(image_path))
    args = ["generate", str(image_path), "--model", str(model3d_path), "--level", "30", "--seed", "7", "--speed",
            "faster", "--count", "2"]
    assert main(args + ["--batched", "--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    assert asked == [True, None]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["v_T30_seed7", "v_T30_seed8"]


def test_engine_errors_name_arguments_and_the_command_line_names_its_flags(tmp_path, capsys):
    """The engine names the caller's argument (``ndims``, ``out``); ``drdm`` turns the names it has into its flags."""
    import argparse

    from drdm.cli import in_flag_words
    from drdm.training.config import TrainingConfig

    with pytest.raises(ValueError, match="^`ndims` must be 2 or 3, got 4$"):
        TrainingConfig(out=str(tmp_path), ndims=4).check()
    args = argparse.Namespace(out="o", resume=False, val_fraction=0.1)
    assert in_flag_words("`ndims` 4; pass `resume` or choose another `out`; `val_fraction`; `mode`", args) == \
        "--dims 4; pass --resume or choose another --out; --val-fraction; mode"
    assert main(["train", "--out", str(tmp_path / "run"), "--size", "12", "--steps", "1"]) == 2
    assert capsys.readouterr().err.strip().endswith("--size must be a multiple of 8 and at least 16, got 12")
