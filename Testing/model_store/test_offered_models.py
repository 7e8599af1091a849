"""What the front ends offer (drdm.model_store.offered.offered_models) and the random-field-only choice."""

from __future__ import annotations

import json

import pytest
import SimpleITK as sitk
import torch
from drdm.cli import main
from drdm.model_store import download
from drdm.model_store.files import recovery_error_summary, save_model
from drdm.model_store.loading import load_model_spec
from drdm.model_store.offered import MAX_OFFERED_RECOVERY_ERROR, offered_models
from drdm.models import file_digest, random_field_model, untrained_model
from drdm.sampler import generate
from drdm.spatial import folds
from drdm.training.recovery_error import evaluation_phantoms, recovery_error, recovery_error_table


def test_offered_choices_load_and_say_what_they_are(empty_cache):
    choices = offered_models()
    assert [c.name for c in choices] == ["cmr-2d", "lct-3d", "random-field-2d", "random-field-3d"]
    assert [c.name for c in choices if c.default] == ["cmr-2d"]
    (download,) = [c for c in choices if c.download]  # the published 3D model: fetched before its first use
    assert download.name == "lct-3d" and download.label.startswith("lct-3d (download)") and download.recovery_error is None
    choices = [c for c in choices if not c.download]
    for choice in choices:
        model = load_model_spec(choice.name)
        assert (model.ndims, model.num_steps, model.learned) == (choice.ndims, choice.num_steps, choice.learned)
        assert choice.label.startswith(choice.name) and f"{choice.ndims}D" in choice.label
    cmr = choices[0]
    assert cmr.learned and cmr.recovery_error == recovery_error_summary(load_model_spec("cmr-2d").metadata) < 1
    assert f"recovery error {cmr.recovery_error:.2f}" in cmr.label
    for choice in choices[1:]:
        assert not choice.learned and choice.recovery_error == 1.0
        assert "random field only (no learned recovery)" in choice.label
    assert [c.name for c in offered_models(ndims=3)] == ["lct-3d", "random-field-3d"]


def test_models_that_recover_nothing_are_not_offered(empty_cache):
    zero = untrained_model(2, size=32, width=2)
    torch.nn.init.zeros_(zero.network.conv_out.weight)
    torch.nn.init.zeros_(zero.network.conv_out.bias)
    zero.name = "outputs-zero"
    table = recovery_error_table(zero, [evaluation_phantoms(2, 32, count=1)], draws=1)
    assert table["summary"] == 1.0 >= MAX_OFFERED_RECOVERY_ERROR  # measured: a network that outputs zero scores 1
    save_model(zero, empty_cache / "outputs-zero", recovery_error=table)
    save_model(untrained_model(2, size=32, width=2), empty_cache / "unmeasured")
    published = load_model_spec("cmr-2d")
    published.name = "cmr-copy"
    save_model(published, empty_cache / "cmr-copy", recovery_error=published.metadata["recovery_error"])
    names = {c.name: c for c in offered_models()}
    assert "outputs-zero" not in names
    assert "not measured" in names["unmeasured"].label and names["unmeasured"].origin == "cache"
    assert names["cmr-copy"].recovery_error == names["cmr-2d"].recovery_error
    assert "cmr-copy" not in {c.name for c in offered_models(include_cache=False)}


def test_models_list_shows_states_and_recovery_error_tables(empty_cache, capsys):
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:] if line and not line.startswith(" ")}
    assert rows["cmr-2d"].split()[1:6] == ["bundled", "2D", "80", f"{offered_models()[0].recovery_error:.2f}", "yes"]
    assert rows["random-field-3d"].split()[1:4] == ["built", "in", "3D"]
    assert rows["lct-3d"].split()[1:3] == ["download", "(size"]
    bundled_sha = file_digest(download.cached_path("cmr-2d"))
    published = load_model_spec("cmr-2d").metadata
    assert rows["cmr-2d"].split()[6:9] == [bundled_sha[:12], "Apache-2.0", "bundled,"]
    assert rows["cmr-2d"].endswith(published["source_url"])
    assert rows["random-field-2d"].split()[8:] == ["-", "Apache-2.0", "built", "in", "(this", "project)"]
    table = load_model_spec("cmr-2d").metadata["recovery_error"]
    assert sum(1 for line in lines if line.startswith("  ") and "mean" in line) == len(table["rows"])


def test_random_field_only_is_the_diffeomorphic_forward_field_without_network(empty_cache):
    model = random_field_model("random-field-2d")
    assert model.network is None and not model.learned
    image = evaluation_phantoms(2, model.size, count=1)[1][0][None]
    labels = (image > 0.5).long()
    calls = []
    result = generate(model, image, labels, speed="faithful", statistics=True, start_level=48,
                      generator=torch.Generator().manual_seed(5),
                      mode="diffeomorphic", progress=lambda *a: calls.append(a))
    expected, _ = model.forward_process().sample(48, model.size, 1, torch.Generator().manual_seed(5), diffeomorphic=True)
    assert torch.equal(result.ddf, expected) and torch.equal(result.ddf_random, expected)
    assert result.levels == [] and calls == []  # no recovery step
    assert not bool(folds(result.ddf)[0]) and result.statistics["folding_fraction"][0] == 0.0
    assert float(result.ddf.abs().mean()) > 1.0  # it does deform
    assert result.labels is not None and set(result.labels.unique().tolist()) <= {0, 1}
    with pytest.raises(ValueError, match="random field only"):
        generate(model, image, speed="faithful", statistics=True, start_level=48, mode="reference")
    assert recovery_error(model, [image[0]], levels=(10, 70)) == {10: 1.0, 70: 1.0}


def test_random_field_3d_in_the_cli_gives_every_output(empty_cache, tmp_path, capsys):
    image = sitk.GetImageFromArray(evaluation_phantoms(3, 24, count=1)[1][0][0].numpy())
    image.SetSpacing((1.5, 1.0, 1.0))
    path = tmp_path / "volume.nii.gz"
    sitk.WriteImage(image, str(path))
    labels = sitk.Cast(image > 0.5, sitk.sitkUInt8)
    sitk.WriteImage(labels, str(tmp_path / "labels.nii.gz"))
    assert main(["generate", str(path), "--labels", str(tmp_path / "labels.nii.gz"), "--model", "random-field-3d",
                 "--seed", "1", "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    (folder,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    for name in ("image.nii.gz", "labels.nii.gz", "transform.h5", "ddf.nii.gz", "jacobian.nii.gz", "stats.json", "qa.png"):
        assert (folder / name).is_file(), name
    stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
    assert stats["model"] == "random-field-3d" and stats["folding_fraction"] == 0.0 and stats["mean_mm"] > 0.1
    assert main(["generate", str(path), "--model", "random-field-3d", "--mode", "reference",
                 "--out", str(tmp_path / "ref")]) == 2
    assert "random field only" in capsys.readouterr().err
