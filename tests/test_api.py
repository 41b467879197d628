"""`ampcap.api` does what the commands do: the same options give byte-identical files."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from ampcap import api
from ampcap.errors import UsageError

#: Keys that hold the time a file was written, and hashes of files that hold such times.
_CLOCK_KEYS = {"created_at", "updated_at", "started_at", "finished_at", "session_sha256",
               "alignment_sha256", "fingerprint", "date"}  # fmt: skip


def _without_clock(value):
    if isinstance(value, dict):
        return {k: _without_clock(v) for k, v in value.items() if k not in _CLOCK_KEYS}
    if isinstance(value, list):
        return [_without_clock(v) for v in value]
    return value


def _contents(folder: Path) -> dict[str, object]:
    """Every file under ``folder`` but reports: audio by its samples, models and JSON without
    the times they were written, anything else by hash."""
    found: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        if (
            not path.is_file()
            or path.name == ".ampcap.lock"
            or any("report" in part for part in path.parts)
        ):
            continue
        key = str(path.relative_to(folder))
        if path.suffix in (".json", ".nam"):
            found[key] = _without_clock(json.loads(path.read_text()))
        elif path.suffix == ".wav":
            # libsndfile's PEAK chunk holds the time of writing: compare the audio itself.
            audio, rate = sf.read(path, dtype="float32", always_2d=True)
            found[key] = (rate, audio.shape, hashlib.sha256(audio.tobytes()).hexdigest())
        else:
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def test_the_pipeline_from_python_writes_what_the_commands_write(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("cli").mkdir()
    Path("py").mkdir()
    with monkeypatch.context() as inside:
        inside.chdir("cli")
        steps = [
            ("record", "--rig", "virtual", "--knob", "isf", "--steps", "3", "--out", "s",
             "--di-seconds", "4", "--yes"),
            ("align", "s"),
            ("split", "s", "--out", "d", "--block-seconds", "0.5", "--seed", "3"),
            ("plan", "s", "--add", "2", "--out", "plan.json"),
            ("train", "d", "--out", "r", "--hidden", "4", "--epochs", "2", "--device", "cpu"),
            ("export", "r", "--format", "nam", "--knob", "isf=2.5", "--out", "isf.nam"),
        ]  # fmt: skip
        for args in steps:
            result = cli(*args)
            assert result.code == 0, (args, result.err)
    with monkeypatch.context() as inside:
        inside.chdir("py")
        api.record("virtual", "s", knobs=["isf"], steps=3, di_seconds=4, say=lambda _: None)
        api.align("s")
        api.split(["s"], "d", block_seconds=0.5, seed=3)
        Path("plan.json").write_text(json.dumps(api.plan("s", 2).to_dict(), indent=2))
        trained = api.train("d", "r", hidden=4, epochs=2, device="cpu")
        assert {p.suffix for p in trained.exports} >= {".nam", ".json"}
        exported = api.export("r", "nam", knobs={"isf": 2.5}, out="isf.nam")
        assert exported.path == Path("isf.nam")
    by_cli, by_api = _contents(tmp_path / "cli"), _contents(tmp_path / "py")
    # Timing is the only thing a run records that two runs cannot share.
    for run_file in ("r/run.json", "r/metrics.json"):
        by_cli.pop(run_file), by_api.pop(run_file)
    by_cli = {k: v for k, v in by_cli.items() if not k.endswith(".pt")}
    by_api = {k: v for k, v in by_api.items() if not k.endswith(".pt")}
    assert by_cli.keys() == by_api.keys()
    differing = [k for k in by_cli if by_cli[k] != by_api[k]]
    assert not differing
    assert "s/takes/isf=5.wav" in by_api and "d/train/input.wav" in by_api
    assert "r/exports/r-isf=5.nam" in by_api


def test_api_errors_are_ampcap_errors_with_what_to_do(tmp_path) -> None:
    with pytest.raises(UsageError, match="is neither a capture session"):
        api.report(tmp_path)
    with pytest.raises(UsageError, match="has no model.pt"):
        api.export(tmp_path, "nam")
    with pytest.raises(UsageError, match="is not a run"):
        api.plan([tmp_path, tmp_path / "x"], 1)


def test_importing_the_api_loads_no_torch() -> None:
    code = "import sys, ampcap.api; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
