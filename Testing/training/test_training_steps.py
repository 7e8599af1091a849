"""The named steps of :func:`drdm.training.loop.train`: set-up, data, one step, checkpoint, metrics, the saved model."""

from __future__ import annotations

import csv
from dataclasses import asdict

import pytest
import torch
from drdm.model_store.files import load_model_file
from drdm.training.initialisation import initial_model
from drdm.training.loader import step_batches
from drdm.training.log import METRICS_FILE, MetricsLog
from drdm.training.loop import (
    TrainingConfig,
    resume_point,
    save_trained_model,
    set_up,
    training_images,
    training_step,
)
from drdm.training.state import STATE_FILE, make_optimisation


def _config(tmp_path, **changes) -> TrainingConfig:
    values = dict(out=str(tmp_path / "run"), size=32, width=2, levels=80, batch=2, phantoms=4, val_samples=2,
                  device="cpu", steps=4)
    return TrainingConfig(**{**values, **changes})


def _prepared(config: TrainingConfig, resume: bool = False):
    setup = set_up(config, resume=resume)
    model = initial_model(config, setup.device)
    model.network.set_layout("reference")
    optimisation = make_optimisation(model.network.train(), config.lr, config.amp, setup.device, 1)
    images = training_images(config)
    return setup, model, optimisation, images


def _batch(images, config, step):
    return next(iter(step_batches(images, config, step, 0, config.batch, torch.device("cpu"))))


def test_set_up_refuses_impossible_settings_and_an_existing_run(tmp_path):
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        set_up(_config(tmp_path, amp="fp16"), resume=False)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / STATE_FILE).write_bytes(b"")
    with pytest.raises(ValueError, match="pass `resume`"):  # the Python words; the CLI says --resume
        set_up(_config(tmp_path), resume=False)
    assert set_up(_config(tmp_path), resume=True).out == tmp_path / "run"


def test_training_images_are_the_phantoms_without_data(tmp_path):
    images = training_images(_config(tmp_path, phantoms=3))
    assert "phantom" in images.description
    assert images.validation_image(0).shape == (1, 32, 32)


def test_one_step_changes_the_weights_and_is_deterministic(tmp_path):
    config = _config(tmp_path)
    results = []
    for _ in range(2):
        _, model, optimisation, images = _prepared(config)
        before = {k: v.clone() for k, v in model.network.state_dict().items()}
        losses = training_step(optimisation, model.forward_process(), config, _batch(images, config, 0), torch.device("cpu"))
        assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
        after = model.network.state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before if after[k].is_floating_point())
        results.append((losses, after))
    assert results[0][0] == results[1][0]
    assert all(torch.equal(results[0][1][k], results[1][1][k]) for k in results[0][1])


def test_checkpoint_restores_the_exact_state_and_refuses_changed_settings(tmp_path):
    config = _config(tmp_path)
    setup, model, optimisation, images = _prepared(config)
    setup.out.mkdir(parents=True)
    training_step(optimisation, model.forward_process(), config, _batch(images, config, 0), setup.device)
    optimisation.save(setup.out / STATE_FILE, 1, asdict(config), 12.5)
    assert not list(setup.out.glob(".*partial"))

    _, fresh_model, fresh, _ = _prepared(config, resume=True)
    assert resume_point(fresh, setup, config, resume=True) == (1, 12.5)
    saved, restored = model.network.state_dict(), fresh_model.network.state_dict()
    assert all(torch.equal(saved[k], restored[k]) for k in saved)
    assert fresh.optimizer.state_dict()["state"].keys() == optimisation.optimizer.state_dict()["state"].keys()
    with pytest.raises(ValueError, match="settings differ.*lr"):
        fresh.restore(setup.out / STATE_FILE, asdict(_config(tmp_path, lr=0.5)))


def test_metrics_log_keeps_rows_up_to_the_checkpoint_on_resume(tmp_path):
    losses = {"loss": 1.0, "dist": 0.5, "angle": -0.2, "reg": 0.0}
    log = MetricsLog(tmp_path)
    for step in (1, 2, 3):
        log.record(step, losses, float(step), (0.9, 0.8) if step == 2 else None)
    log.close()
    MetricsLog(tmp_path, resume_step=2).close()
    with open(tmp_path / METRICS_FILE, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert rows[1]["val_relative_error"] == "0.8" and rows[0]["val_loss"] == ""


def test_saved_model_carries_its_recovery_error_table(tmp_path):
    config = _config(tmp_path, name="tiny")
    setup, model, _, images = _prepared(config)
    setup.out.mkdir(parents=True)
    weights, metadata = save_trained_model(model, images, config, setup.out, (0.5, 0.7), 3.0)
    assert weights.is_file()
    loaded = load_model_file(metadata)
    table = loaded.extra.get("recovery_error") or loaded.metadata.get("recovery_error")
    assert table, "the recovery-error table is missing"
