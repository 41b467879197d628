"""Ctrl-C (SIGINT) and SIGTERM at the points where ampcap is busiest writing.

Each case starts the real command as its own process, waits until it reaches a given point (a
file it makes there appears), sends the signal, and checks: exit status 130 for SIGINT and 143
for SIGTERM, a one-line message and no traceback, no temporary file left in the output folder
or in the temporary folder, and that the next plain (or ``--resume``) run succeeds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile_helpers import AMPCAP, temp_leftovers
from train_helpers import make_dataset

SIGNALS = [
    pytest.param(signal.SIGINT, 130, id="SIGINT"),
    pytest.param(signal.SIGTERM, 143, id="SIGTERM"),
]
RECORD = ("record", "--rig", "virtual", "--knob", "isf", "--steps", "2", "--yes")


def _default_sigint() -> None:
    # A shell that starts the tests in the background ignores SIGINT, and children inherit
    # that; give the command Python's default so Ctrl-C reaches it as it would a user's.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # On a busy machine the command must not outrun the test watching it: at a lower priority
    # the test gets the CPU first and sees the step begin before the command can finish it.
    os.nice(10)


def interrupt_when(
    args: tuple[str, ...], ready: Callable[[], bool], signum: int, cwd: Path, tmp: Path
) -> tuple[int, str]:
    """Run ``ampcap ARGS``, send ``signum`` once ``ready()``; returns (exit status, output)."""
    log = cwd / f"log-{time.monotonic_ns()}.txt"
    env = {**os.environ, "TMPDIR": str(tmp), "AMPCAP_DEBUG": ""}
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(
            [*AMPCAP, *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_default_sigint,
        )
        deadline = time.monotonic() + 120
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                pytest.fail(f"ampcap {' '.join(args)} never reached the point: {log.read_text()}")
            time.sleep(0.002)
        if process.poll() is not None:
            # The command ran to its end between the check and now: on a machine busy enough
            # to stall this test for seconds it can. The signal was never sent, so there is
            # nothing to judge (a signal the command ignores fails below instead).
            log.unlink()
            pytest.skip(f"ampcap {' '.join(args)} finished before the signal could be sent")
        process.send_signal(signum)
        try:
            code = process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"ampcap {' '.join(args)} ignored the signal: {log.read_text()}")
    output = log.read_text(encoding="utf-8")
    log.unlink()
    return code, output


def check_stopped(code: int, output: str, expected: int, tmp: Path, *folders: Path) -> None:
    assert code == expected, output
    assert "Traceback" not in output and "internal error" not in output, output
    last = output.strip().splitlines()[-1]
    assert ("SIGTERM" in last) if expected == 143 else ("Interrupted" in last or "Ctrl-C" in last)
    assert not [p for p in tmp.iterdir() if p.name.startswith("ampcap-")]
    for folder in folders:
        if folder.exists():
            assert temp_leftovers(folder) == []
            assert not [p for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory, ampcap_process) -> Path:
    """A recorded, aligned session long enough (2 x 60 s) for a signal to land mid-write."""
    root = tmp_path_factory.mktemp("session")
    result = ampcap_process(*RECORD, "--out", "cap", "--di-seconds", "60", cwd=root)
    assert result.code == 0, result.output_flat
    result = ampcap_process("align", "cap", cwd=root)
    assert result.code == 0, result.output_flat
    return root / "cap"


@pytest.fixture
def private_tmp(tmp_path: Path) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    return folder


@pytest.mark.parametrize(("signum", "expected"), SIGNALS)
def test_record_stopped_while_the_program_is_built(
    cli, tmp_path: Path, private_tmp: Path, signum: int, expected: int
) -> None:
    args = (*RECORD, "--out", "cap", "--di-seconds", "60")
    building = lambda: any(p.name.startswith("ampcap-program-") for p in private_tmp.iterdir())  # noqa: E731
    code, output = interrupt_when(args, building, signum, tmp_path, private_tmp)
    check_stopped(code, output, expected, private_tmp, tmp_path / "cap")
    assert not (tmp_path / "cap" / "takes").exists() or not any(
        (tmp_path / "cap" / "takes").iterdir()
    )
    result = cli(*args, cwd=tmp_path)
    assert result.code == 0, result.output_flat
    result = cli("align", "cap", cwd=tmp_path)
    assert result.code == 0, result.output_flat


@pytest.mark.parametrize(("signum", "expected"), SIGNALS)
def test_align_stopped_mid_take(
    cli, session: Path, tmp_path: Path, private_tmp: Path, signum: int, expected: int
) -> None:
    import shutil

    cap = tmp_path / "cap"
    shutil.copytree(session, cap)
    shutil.rmtree(cap / "aligned")
    writing = lambda: (cap / "aligned").exists()  # noqa: E731
    code, output = interrupt_when(("align", "cap"), writing, signum, tmp_path, private_tmp)
    check_stopped(code, output, expected, private_tmp, cap)
    # Nothing a later step would trust: no alignment manifest, so split asks for align.
    assert not (cap / "aligned" / "alignment.json").exists()
    result = cli("split", "cap", "--out", "data", cwd=tmp_path)
    assert result.code == 2 and "has not been aligned" in result.output_flat
    result = cli("align", "cap", cwd=tmp_path)
    assert result.code == 0, result.output_flat


@pytest.mark.parametrize(("signum", "expected"), SIGNALS)
def test_split_stopped_while_writing(
    cli, session: Path, tmp_path: Path, private_tmp: Path, signum: int, expected: int
) -> None:
    building = lambda: any(p.name.startswith(".data.") for p in tmp_path.iterdir())  # noqa: E731
    args = ("split", str(session), "--out", "data", "--export", "coreaudioml")
    code, output = interrupt_when(args, building, signum, tmp_path, private_tmp)
    check_stopped(code, output, expected, private_tmp, tmp_path / "data")
    assert not (tmp_path / "data").exists()
    result = cli(*args, cwd=tmp_path)
    assert result.code == 0, result.output_flat


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(
        tmp_path_factory.mktemp("toy") / "data", blocks={"train": 12, "val": 1, "test": 1}
    )


TRAIN = ("--hidden", "8", "--threads", "1")


@pytest.mark.parametrize(("signum", "expected"), SIGNALS)
def test_train_stopped_before_the_first_validation_starts_over(
    cli, toy_data: Path, tmp_path: Path, private_tmp: Path, signum: int, expected: int
) -> None:
    run = tmp_path / "run"
    args = ("train", str(toy_data), "--out", "run", "--epochs", "2", *TRAIN)
    started = lambda: (run / "run.json").exists()  # noqa: E731
    code, output = interrupt_when(args, started, signum, tmp_path, private_tmp)
    check_stopped(code, output, expected, private_tmp, run)
    assert not (run / "checkpoints" / "last.pt").exists()
    # Every way in points to the command that works, and that command works.
    result = cli("report", "run", cwd=tmp_path)
    assert result.code == 2 and f"ampcap train {toy_data} --out run" in result.output_flat, (
        result.output_flat
    )
    result = cli(*args, "--resume", cwd=tmp_path)
    assert result.code == 2 and f"ampcap train {toy_data} --out run" in result.output_flat, (
        result.output_flat
    )
    result = cli(*args, cwd=tmp_path)
    assert result.code == 0, result.output_flat
    assert (run / "model.pt").exists()


@pytest.mark.parametrize(("signum", "expected"), SIGNALS)
def test_train_stopped_after_a_validation_resumes(
    cli, toy_data: Path, tmp_path: Path, private_tmp: Path, signum: int, expected: int
) -> None:
    run = tmp_path / "run"
    # Far more epochs than the signal lets it run: it cannot finish before the signal lands.
    args = ("train", str(toy_data), "--out", "run", "--epochs", "400", *TRAIN)
    validated = lambda: (run / "checkpoints" / "last.pt").exists()  # noqa: E731
    code, output = interrupt_when(args, validated, signum, tmp_path, private_tmp)
    check_stopped(code, output, expected, private_tmp, run)
    status = (run / "run.json").read_text()
    assert '"stopped"' in status and "--resume" in status
    result = cli(*args, cwd=tmp_path)
    assert result.code == 2 and "--resume" in result.output_flat
    result = cli("train", str(toy_data), "--out", "run", "--resume", "--epochs", "3", cwd=tmp_path)
    assert result.code == 0, result.output_flat
