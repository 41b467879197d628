"""`ampcap train` and `ampcap report RUN` through the real command line, in a temporary folder."""

from __future__ import annotations

import json

import pytest
from train_helpers import make_dataset, one_thread  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("cli") / "data")


def test_train_writes_a_run_and_prints_the_per_setting_table(tmp_path, data_dir, cli):
    out = tmp_path / "runs" / "demo"
    result = cli(
        "train",
        str(data_dir),
        "--out",
        str(out),
        "--hidden",
        "8",
        "--epochs",
        "2",
        "--lr",
        "5e-3",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--threads",
        "1",
    )
    assert result.code == 0, result.err
    assert result.out == ""  # results go to stderr unless --json
    for row in ("tone=0", "tone=5", "tone=10", "pooled"):
        assert row in result.err
    # The progress line says which model its second ESR is of.
    assert "kept (lowest val loss)" in result.err
    for name in (
        "run.json",
        "model.pt",
        "checkpoints/last.pt",
        "metrics.json",
        "report.html",
        "report_curves.png",
        "report_overlays.png",
    ):
        assert (out / name).is_file(), name
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished"
    assert run["model_config"]["arch"] == "lstm" and run["model_config"]["hidden_size"] == 8
    assert run["train_config"]["epochs"] == 2 and run["train_config"]["learning_rate"] == 5e-3
    assert run["train_config"]["threads"] == 1 and run["train_config"]["device"] == "cpu"
    assert run["train_config"]["batch_size"] == 4

    # The same folder again is refused unless --resume.
    result = cli("train", str(data_dir), "--out", str(out), "--epochs", "2")
    assert (
        result.code == 2
        and "already holds a training run" in result.err
        and "--resume" in result.err
    )

    # --resume with another architecture is refused, naming the difference.
    result = cli("train", str(data_dir), "--out", str(out), "--resume", "--arch", "gru")
    assert result.code == 2 and "another architecture" in result.err and "'gru'" in result.err

    # --resume with the run's own settings continues to more epochs; --json is one document.
    result = cli("train", str(data_dir), "--out", str(out), "--resume", "--epochs", "4", "--json")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["summary"]["epochs"] == 4
    assert [s["setting"] for s in document["test"]["settings"]] == ["tone=0", "tone=5", "tone=10"]

    result = cli("report", str(out), "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["report"].endswith("report.html")


def test_train_refuses_a_folder_that_is_not_a_dataset(tmp_path, cli):
    (tmp_path / "empty").mkdir()
    result = cli("train", str(tmp_path / "empty"), "--out", str(tmp_path / "r"))
    assert result.code == 2 and "not an ampcap dataset" in result.err
    assert not (tmp_path / "r").exists()


def test_train_refuses_a_non_empty_folder_that_is_not_a_run(tmp_path, data_dir, cli):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = cli("train", str(data_dir), "--out", str(out))
    assert result.code == 2 and "not an empty folder" in result.err
    assert (out / "notes.txt").read_text() == "mine"


def test_train_model_from_python_writes_what_the_command_writes(tmp_path, data_dir):
    from ampcap.training import train_model

    plans, events, warnings = [], [], []
    result = train_model(
        data_dir,
        tmp_path / "run",
        hidden=8,
        epochs=2,
        lr=5e-3,
        device="cpu",
        threads=1,
        on_start=plans.append,
        on_progress=events.append,
        warn=warnings.append,
    )
    assert result.outcome.status == "finished" and result.outcome.epochs == 2
    # The same files as `ampcap train`: one .nam per knob setting, and the report.
    names = sorted(p.name for p in result.exports)
    assert [n for n in names if n.endswith(".nam")] == [
        "run-tone=0.nam",
        "run-tone=10.nam",
        "run-tone=5.nam",
    ]
    assert all(p.is_file() for p in result.exports)
    assert result.report == tmp_path / "run" / "report.html" and result.report.is_file()
    assert list(result.warnings) == warnings
    # The defaults are the configs' own; the settings given replace them.
    (plan,) = plans
    assert plan.model_config.arch == "lstm" and plan.model_config.hidden_size == 8
    assert plan.config.patience_epochs == 50 and plan.config.seed == 0
    assert [e.epoch for e in events if e.kind == "validation"] == [2]


def test_a_nan_loss_is_recovered_from_and_said_on_the_terminal(
    tmp_path, data_dir, cli, monkeypatch
):
    from ampcap.train import loop

    real_loss = loop.esr_dc_loss
    calls = {"n": 0}

    def poisoned(output, target, **kwargs):
        calls["n"] += 1
        value = real_loss(output, target, **kwargs)
        return value * float("nan") if calls["n"] == 5 else value

    monkeypatch.setattr(loop, "esr_dc_loss", poisoned)
    out = tmp_path / "run"
    result = cli(
        "train", data_dir, "--out", out, "--hidden", "8", "--epochs", "4", "--device", "cpu"
    )
    assert result.code == 0, result.err
    assert "warning: The training loss became nan" in result.err_flat
    assert "halved the learning rate" in result.err_flat
    assert json.loads((out / "run.json").read_text())["summary"]["recoveries"] == 1
