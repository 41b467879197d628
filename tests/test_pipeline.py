"""The whole path through the real CLI in a temporary folder: record, align, split, train, report."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


@pytest.mark.slow
def test_record_align_split_train_report_on_the_virtual_rig(ampcap_process, tmp_path: Path) -> None:
    ampcap = functools.partial(ampcap_process, cwd=tmp_path, env={"COLUMNS": "120"}, check=True)
    ampcap(
        "record",
        "--rig",
        "virtual",
        "--knob",
        "isf",
        "--steps",
        "3",
        "--out",
        "captures/s",
        "--di-seconds",
        "12",
        "--yes",
    )
    session = json.loads((tmp_path / "captures/s/session.json").read_text())
    assert [t["status"] for t in session["takes"]] == ["complete"] * 3
    assert [t["knobs"]["isf"] for t in session["takes"]] == [0.0, 5.0, 10.0]

    aligned = json.loads(ampcap("align", "captures/s", "--json").out)
    assert aligned  # one JSON document on stdout
    manifest = json.loads((tmp_path / "captures/s/aligned/alignment.json").read_text())
    assert {t["verdict"] for t in manifest["takes"]} == {"ok"}
    program, _ = sf.read(tmp_path / "captures/s/program.wav")
    pair, _ = sf.read(tmp_path / "captures/s" / manifest["takes"][0]["file"])
    assert pair.shape == (len(program), 2)
    # The aligned loopback is the program itself (the virtual interface only adds noise).
    di = next(s for s in session["program"]["sections"] if s["name"] == "di")
    window = slice(di["start"], di["start"] + di["length"])
    error = pair[window, 0] - program[window]
    assert np.sqrt(np.mean(error**2)) / np.sqrt(np.mean(program[window] ** 2)) < 1e-2

    ampcap("split", "captures/s", "--out", "data/s", "--block-seconds", "1")
    dataset = json.loads((tmp_path / "data/s/manifest.json").read_text())
    assert set(dataset["splits"]) == {"train", "val", "test"}

    trained = json.loads(
        ampcap(
            "train",
            "data/s",
            "--out",
            "runs/s",
            "--hidden",
            "8",
            "--epochs",
            "2",
            "--json",
        ).out
    )
    assert trained
    assert (tmp_path / "runs/s/model.pt").is_file()
    assert list((tmp_path / "runs/s/exports").glob("*.nam"))

    session_report = ampcap("report", "captures/s")
    run_report = ampcap("report", "runs/s")
    assert "isf=5" in run_report.err + run_report.out
    assert any((tmp_path / "captures/s").rglob("*.html"))
    assert (tmp_path / "runs/s/report.html").is_file()
    assert "html" in session_report.err + session_report.out
