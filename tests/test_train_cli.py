"""`ampcap train` and `ampcap report RUN` through the real command line, in a temporary folder."""

from __future__ import annotations

import json

import pytest
from train_helpers import make_dataset, one_thread  # noqa: F401 (autouse fixture)

from ampcap.cli import main


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("cli") / "data")


def test_train_writes_a_run_and_prints_the_per_setting_table(tmp_path, data_dir, capsys):
    out = tmp_path / "runs" / "demo"
    code, stdout, stderr = run_cli(
        [
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
            "--device",
            "cpu",
            "--threads",
            "1",
        ],
        capsys,
    )
    assert code == 0, stderr
    assert stdout == ""  # results go to stderr unless --json
    for row in ("tone=0", "tone=5", "tone=10", "pooled"):
        assert row in stderr
    # The progress line says which model its second ESR is of.
    assert "kept (lowest val loss)" in stderr
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

    # The same folder again is refused unless --resume.
    code, _, stderr = run_cli(["train", str(data_dir), "--out", str(out), "--epochs", "2"], capsys)
    assert code == 2 and "already holds a training run" in stderr and "--resume" in stderr

    # --resume with another architecture is refused, naming the difference.
    code, _, stderr = run_cli(
        ["train", str(data_dir), "--out", str(out), "--resume", "--arch", "gru"], capsys
    )
    assert code == 2 and "another architecture" in stderr and "'gru'" in stderr

    # --resume with the run's own settings continues to more epochs; --json is one document.
    code, stdout, stderr = run_cli(
        ["train", str(data_dir), "--out", str(out), "--resume", "--epochs", "4", "--json"], capsys
    )
    assert code == 0, stderr
    document = json.loads(stdout)
    assert document["summary"]["epochs"] == 4
    assert [s["setting"] for s in document["test"]["settings"]] == ["tone=0", "tone=5", "tone=10"]

    code, stdout, stderr = run_cli(["report", str(out), "--json"], capsys)
    assert code == 0, stderr
    assert json.loads(stdout)["report"].endswith("report.html")


def test_train_refuses_a_folder_that_is_not_a_dataset(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, stderr = run_cli(
        ["train", str(tmp_path / "empty"), "--out", str(tmp_path / "r")], capsys
    )
    assert code == 2 and "not an ampcap dataset" in stderr
    assert not (tmp_path / "r").exists()


def test_train_refuses_a_non_empty_folder_that_is_not_a_run(tmp_path, data_dir, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, stderr = run_cli(["train", str(data_dir), "--out", str(out)], capsys)
    assert code == 2 and "not an empty folder" in stderr
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
