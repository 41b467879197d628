"""``ampcap record`` through PortAudio and a real JACK server, against ampcap's JACK device.

One session is recorded on the shipped ``jack-virtual`` rig, interrupted with SIGINT during its
second take, and resumed with a dropout forced into the resumed take: the session must end complete and every take must be the
program (loopback) and the virtual amp's output of it (device), sample for sample.
"""

from __future__ import annotations

import functools
import json
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import soundfile as sf
from jack_helpers import (
    FS,
    RECORD_TIMEOUT_S,
    ampcap_command,
    check_take,
    copy_session,
    file_bytes,
    record_args,
    snapshot,
    wait_for,
    write_di,
    write_rig,
)

from ampcap.capture.jack_device import VirtualAmpProcess
from ampcap.schema.session import SessionManifest, load_session

if TYPE_CHECKING:
    from conftest import CliResult

pytestmark = pytest.mark.jack


@dataclass
class Resumed:
    root: Path
    rig: Path
    di: Path
    out: Path
    interrupted_code: int
    interrupted_stderr: str
    interrupted: SessionManifest
    interrupted_copy: Path
    take_1_bytes: bytes
    resumed: CliResult


@pytest.fixture(scope="module")
def resumed(
    ampcap_process,
    tmp_path_factory: pytest.TempPathFactory,
    jack_env: dict[str, str],
    jack_device: VirtualAmpProcess,
) -> Resumed:
    root = tmp_path_factory.mktemp("jack-record")
    rig = Path("jack-virtual")  # the shipped rig for ampcap's JACK device
    di = write_di(root / "di.wav")
    out = root / "session"
    args = record_args(rig, out, di, steps=2)
    process = subprocess.Popen(
        [*ampcap_command(), *args],
        env=jack_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # About a second into the second take (float32 stereo: 8 bytes a frame).
        wait_for(lambda: file_bytes(out / "takes" / "isf=10.wav") > 8 * FS, 120, "take 2")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    interrupted = load_session(out)
    interrupted_copy = copy_session(out, root / "interrupted-copy")
    take_1_bytes = (out / "takes" / "isf=0.wav").read_bytes()
    # The resumed take's first attempt misses a deadline: it must be recorded again.
    jack_device.glitch(0.1, count=1)
    result = ampcap_process(*args, "--json", env=jack_env, timeout=RECORD_TIMEOUT_S)
    return Resumed(
        root,
        rig,
        di,
        out,
        process.returncode,
        stderr,
        interrupted,
        interrupted_copy,
        take_1_bytes,
        result,
    )


def test_sigint_keeps_the_complete_take_and_the_partial_one(resumed: Resumed) -> None:
    assert resumed.interrupted_code == 130, resumed.interrupted_stderr
    assert "Recording stopped by SIGINT during takes/isf=10.wav" in resumed.interrupted_stderr
    assert "Traceback" not in resumed.interrupted_stderr
    first, second = resumed.interrupted.takes
    assert first.status == "complete"
    assert second.status == "partial"
    # Everything recorded before the signal is on disk, in a valid WAV the manifest describes.
    info = sf.info(str(resumed.interrupted_copy / second.file))
    assert info.frames == second.frames
    assert FS <= second.frames < resumed.interrupted.program.length


def test_partial_take_holds_the_program_up_to_the_interrupt(resumed: Resumed) -> None:
    program, _ = sf.read(str(resumed.interrupted_copy / "program.wav"), dtype="float32")
    partial, _ = sf.read(str(resumed.interrupted_copy / "takes" / "isf=10.wav"), dtype="float32")
    complete = load_session(resumed.out)
    latency = check_take(resumed.out, complete, complete.takes[0])
    # Up to where the output started to fade out, the partial loopback is the program.
    fade = int(0.02 * FS)
    stop = len(partial) - fade - 1024
    assert (partial[latency:stop, 0] == program[: stop - latency]).all()


def test_resume_completes_the_session_and_retries_the_dropout(resumed: Resumed) -> None:
    assert resumed.resumed.code == 0, resumed.resumed.err
    summary = json.loads(resumed.resumed.out)
    assert summary["complete"] and summary["resumed"]
    assert summary["skipped"] == ["takes/isf=0.wav"]
    assert "dropout" in resumed.resumed.err and "recording it again" in resumed.resumed.err
    manifest = load_session(resumed.out)
    first, second = manifest.takes
    # Interrupted once, one attempt lost to the forced dropout, then a clean one (a busy machine
    # may add attempts of its own; the load test holds that to zero).
    assert second.attempts >= 3
    # The complete take was not touched by the resumed run.
    assert (resumed.out / first.file).read_bytes() == resumed.take_1_bytes


def test_every_take_is_the_program_and_the_amp_sample_for_sample(resumed: Resumed) -> None:
    manifest = load_session(resumed.out)
    latencies = {check_take(resumed.out, manifest, take) for take in manifest.takes}
    # One latency for the whole session: a whole number of JACK periods.
    assert len(latencies) == 1
    assert latencies.pop() % 1024 == 0


def test_missing_device_on_resume_changes_nothing(
    ampcap_process, resumed: Resumed, jack_env: dict[str, str]
) -> None:
    folder = copy_session(resumed.interrupted_copy, resumed.root / "no-server")
    before = snapshot(folder)
    env = {**jack_env, "JACK_DEFAULT_SERVER": "ampcap-no-such-server"}
    result = ampcap_process(*record_args(resumed.rig, folder, resumed.di), env=env, timeout=60)
    assert result.code == 2, result.err
    assert "No audio device matches 'ampcap-virtual-amp'" in result.err
    assert "Traceback" not in result.err
    assert snapshot(folder) == before


def test_write_error_stops_cleanly_and_keeps_earlier_takes(
    ampcap_process, resumed: Resumed, jack_env: dict[str, str]
) -> None:
    import resource

    folder = copy_session(resumed.interrupted_copy, resumed.root / "file-limit")
    take_1 = (folder / "takes" / "isf=0.wav").read_bytes()
    # Room for program.wav (4 bytes a frame, rebuilt in a scratch folder to recognise the
    # session), not for a whole take (8 bytes a frame): the take's writes fail.
    limit = resumed.interrupted.program.length * 6

    def limit_file_size() -> None:
        # Writes past the limit fail with EFBIG (as on a full disk) instead of killing ampcap.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = ampcap_process(
        *record_args(resumed.rig, folder, resumed.di),
        env=jack_env,
        timeout=RECORD_TIMEOUT_S,
        preexec_fn=limit_file_size,
    )
    assert result.code == 2, result.err
    assert "Recording stopped because a write failed" in result.err
    assert "earlier takes are untouched" in result.err
    assert "Traceback" not in result.err
    manifest = load_session(folder)
    assert manifest.takes[0].status == "complete"
    assert manifest.takes[1].status != "complete"
    assert (folder / "takes" / "isf=0.wav").read_bytes() == take_1


def test_full_disk_stops_cleanly_and_keeps_earlier_takes(
    ampcap_process, resumed: Resumed, jack_env: dict[str, str]
) -> None:
    mount = resumed.root / "tiny-disk"
    mount.mkdir()
    length = resumed.interrupted.program.length
    # program.wav, one take and half of the next.
    size = length * 4 + length * 8 + length * 4 + 64 * 1024
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({mounted.stderr.strip()}); the file size "
            "limit test covers write errors"
        )
    try:
        out = mount / "session"
        result = ampcap_process(
            *record_args(resumed.rig, out, resumed.di), env=jack_env, timeout=RECORD_TIMEOUT_S
        )
        assert result.code == 2, result.err
        assert "the disk is full" in result.err
        assert "Traceback" not in result.err
        manifest = load_session(out)
        assert manifest.takes[0].status == "complete"
        check_take(out, manifest, manifest.takes[0])
        saved = copy_session(out, resumed.root / "rescued")
    finally:
        subprocess.run(["umount", str(mount)], check=False)
    # With space again, the same command finishes the session.
    rerun = ampcap_process(
        *record_args(resumed.rig, saved, resumed.di), env=jack_env, timeout=RECORD_TIMEOUT_S
    )
    assert rerun.code == 0, rerun.err
    manifest = load_session(saved)
    for take in manifest.takes:
        check_take(saved, manifest, take)


def test_device_errors_exit_2_with_candidates_before_anything_plays(
    ampcap_process, tmp_path: Path, jack_env: dict[str, str], jack_server
) -> None:
    refused = functools.partial(ampcap_process, env=jack_env, timeout=60)
    di = write_di(tmp_path / "di.wav")
    rig = write_rig(tmp_path / "rig.toml")
    missing = refused(*record_args(rig, tmp_path / "a", di, 2, "--device", "no-such-device"))
    assert missing.code == 2
    assert "No audio device matches 'no-such-device' on a host API matching 'JACK'" in missing.err
    assert "ampcap-virtual-amp (JACK Audio Connection Kit, 2 in/2 out)" in missing.err
    with (
        VirtualAmpProcess(jack_server.name, "ampcap-twin-a"),
        VirtualAmpProcess(jack_server.name, "ampcap-twin-b"),
    ):
        twins = refused(*record_args(rig, tmp_path / "b", di, 2, "--device", "ampcap-twin"))
    assert twins.code == 2
    assert "'ampcap-twin' on a host API matching 'JACK' matches 2 audio devices" in twins.err
    for name in ("ampcap-twin-a", "ampcap-twin-b"):
        assert f"{name} (JACK Audio Connection Kit, 2 in/2 out)" in twins.err
    rate = write_rig(tmp_path / "rate.toml", sample_rate_hz=44100)
    wrong_rate = refused(*record_args(rate, tmp_path / "c", write_di(tmp_path / "di44.wav"), 2))
    assert wrong_rate.code == 2
    assert "refuses 44100 Hz" in wrong_rate.err
    assert "start the server with -r 44100" in wrong_rate.err
    for result in (missing, twins, wrong_rate):
        assert "Traceback" not in result.err
    # Nothing was recorded (or even created) for any of them.
    assert not any((tmp_path / name / "takes").exists() for name in "abc")


def test_over_level_program_is_refused_before_playing(
    ampcap_process, tmp_path: Path, jack_env: dict[str, str]
) -> None:
    rig = write_rig(tmp_path / "rig.toml", max_output_dbfs=-20.0)
    loud = write_di(tmp_path / "loud.wav", peak=0.5)  # -6 dBFS
    result = ampcap_process(*record_args(rig, tmp_path / "s", loud), env=jack_env, timeout=60)
    assert result.code == 2
    assert "max_output_dbfs = -20 dBFS" in result.err
    assert "nothing was played" in result.err
    assert not (tmp_path / "s" / "takes").exists()
