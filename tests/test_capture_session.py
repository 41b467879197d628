"""Sessions: the manifest round trip, resume after an interrupt, retakes, dropouts, disk errors."""

from __future__ import annotations

import errno
import json
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from capture_helpers import DropoutEngine, SignalAt

from ampcap.capture.plan import KnobRange, grid_plan
from ampcap.capture.rig import load_rig, loads_rig
from ampcap.capture.session import (
    MAX_ATTEMPTS,
    RecordingInterrupted,
    RecordRequest,
    program_samples,
    record_session,
)
from ampcap.capture.virtual import VirtualAmp, engine_for
from ampcap.errors import CaptureError, SessionError
from ampcap.files import write_audio
from ampcap.schema.session import SessionManifest, load_session

ISF = KnobRange("isf", 0.0, 10.0)


def request(out: Path, steps: int = 3, seconds: float = 2.0, **changes: object) -> RecordRequest:
    fields: dict[str, object] = dict(
        rig=load_rig("virtual"),
        knobs=[ISF],
        plan=grid_plan([ISF], steps),
        out=out,
        di_seconds=seconds,
        assume_yes=True,
    )
    fields.update(changes)
    return RecordRequest(**fields)  # type: ignore[arg-type]


def record(req: RecordRequest, **kwargs: object):
    lines: list[str] = []
    kwargs.setdefault("interactive", False)
    result = record_session(req, say=lines.append, **kwargs)  # type: ignore[arg-type]
    return result, lines


def take_audio(folder: Path, name: str) -> np.ndarray:
    samples, _ = sf.read(str(folder / "takes" / name), dtype="float32")
    return samples


@pytest.fixture(scope="module")
def reference_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 3-take session to compare resumed ones against."""
    out = tmp_path_factory.mktemp("reference") / "session"
    record(request(out))
    return out


def test_session_files_and_manifest(reference_session: Path) -> None:
    manifest = load_session(reference_session)
    assert [t.file for t in manifest.takes] == [f"takes/isf={v}.wav" for v in ("0", "5", "10")]
    assert all(t.status == "complete" and t.attempts == 1 for t in manifest.takes)
    assert manifest.channels == ("loopback", "device")
    assert manifest.rig["name"] == "virtual" and manifest.sample_rate_hz == 48000
    assert [(k.name, k.minimum, k.maximum) for k in manifest.knobs] == [("isf", 0.0, 10.0)]
    program, rate = sf.read(str(reference_session / "program.wav"), dtype="float32")
    assert rate == 48000 and len(program) == manifest.program.length
    for take in manifest.takes:
        info = sf.info(str(reference_session / take.file))
        assert (info.frames, info.channels, info.subtype) == (len(program), 2, "FLOAT")
        assert take.frames == len(program) and take.underflows == take.overflows == 0
        assert set(take.peaks_dbfs) == {"loopback", "device"}
        assert take.started_at and take.finished_at


def test_manifest_round_trip(reference_session: Path) -> None:
    manifest = load_session(reference_session)
    data = json.loads((reference_session / "session.json").read_text())
    assert SessionManifest.from_dict(data).to_dict() == manifest.to_dict()
    assert json.loads(json.dumps(manifest.to_dict())) == data


def test_takes_hold_the_loopback_and_the_amp(reference_session: Path) -> None:
    manifest = load_session(reference_session)
    program, _ = sf.read(str(reference_session / "program.wav"), dtype="float64")
    take = take_audio(reference_session, "isf=10.wav").astype(np.float64)
    f = np.fft.rfftfreq(len(program))
    latency = manifest.rig["virtual"]["latency_samples"]

    def delayed(x: np.ndarray) -> np.ndarray:
        return np.fft.irfft(np.fft.rfft(x) * np.exp(-2j * np.pi * f * latency), len(x))

    amp = VirtualAmp(48000)
    amp.set_knobs({"isf": 10.0})
    # What is left is the -96 dBFS converter noise (and interpolation error far below it).
    for channel, expected in ((0, delayed(program)), (1, delayed(amp.process(program)))):
        residual = take[:, channel] - expected
        assert 20 * np.log10(np.std(residual)) < -90


def test_interrupted_take_is_kept_partial_and_resumes(
    tmp_path: Path, reference_session: Path
) -> None:
    out = tmp_path / "session"
    with pytest.raises(
        RecordingInterrupted,
        match=r"stopped by SIGINT during takes/isf=5\.wav: "
        r"the first \d+ frames .* are kept",
    ) as info:
        record(request(out), monitor=SignalAt(step=2, frames=100000))
    assert info.value.exit_code == 130
    manifest = load_session(out)
    assert [t.status for t in manifest.takes] == ["complete", "partial", "pending"]
    partial = manifest.takes[1]
    assert partial.frames >= 100000 and partial.frames < manifest.program.length
    assert sf.info(str(out / partial.file)).frames == partial.frames
    kept = take_audio(out, "isf=5.wav")
    np.testing.assert_array_equal(kept, take_audio(reference_session, "isf=5.wav")[: len(kept)])
    first_take = (out / "takes/isf=0.wav").stat().st_mtime_ns

    result, lines = record(request(out))
    assert result.resumed and result.skipped == ("takes/isf=0.wav",)
    assert result.recorded == ("takes/isf=5.wav", "takes/isf=10.wav")
    assert any("Resuming" in line and "1 of 3" in line for line in lines)
    manifest = load_session(out)
    assert all(t.status == "complete" for t in manifest.takes)
    assert manifest.takes[1].attempts == 2
    assert (out / "takes/isf=0.wav").stat().st_mtime_ns == first_take
    for name in ("isf=0.wav", "isf=5.wav", "isf=10.wav"):
        np.testing.assert_array_equal(take_audio(out, name), take_audio(reference_session, name))


def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path) -> None:
    with pytest.raises(RecordingInterrupted, match="SIGTERM") as info:
        record(request(tmp_path / "s"), monitor=SignalAt(1, 50000, signal.SIGTERM))
    assert info.value.exit_code == 143
    assert load_session(tmp_path / "s").takes[0].status == "partial"


def test_complete_session_is_left_alone_and_retake_replaces(tmp_path: Path) -> None:
    out = tmp_path / "s"
    record(request(out, steps=2))
    before = load_session(out)
    result, _ = record(request(out, steps=2))
    assert result.recorded == () and len(result.skipped) == 2
    assert load_session(out).takes == before.takes
    result, _ = record(request(out, steps=2, retake=True))
    assert result.recorded == ("takes/isf=0.wav", "takes/isf=10.wav")
    after = load_session(out)
    assert [t.attempts for t in after.takes] == [2, 2]
    assert not list((out / "takes").glob(".*"))


def test_interrupted_retake_keeps_the_earlier_take(tmp_path: Path) -> None:
    out = tmp_path / "s"
    record(request(out, steps=2))
    original = take_audio(out, "isf=0.wav")
    with pytest.raises(RecordingInterrupted, match="the earlier complete takes/isf=0.wav is kept"):
        record(request(out, steps=2, retake=True), monitor=SignalAt(1, 50000))
    manifest = load_session(out)
    assert [t.status for t in manifest.takes] == ["complete", "complete"]
    np.testing.assert_array_equal(take_audio(out, "isf=0.wav"), original)
    assert not list((out / "takes").glob(".*"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(seconds=3.0), r"program \(other DI files, --di-seconds or --seed\)"),
        (dict(steps=2), r"knob plan \(3 takes: isf=0, isf=5, isf=10... vs 2 takes"),
        (
            dict(rig=replace(load_rig("virtual"), description="edited")),
            r"rig 'virtual' vs 'virtual' \(differs in description\)",
        ),
    ],
)
def test_a_different_session_in_out_is_refused_untouched(
    tmp_path: Path, change: dict, message: str
) -> None:
    out = tmp_path / "s"
    record(request(out))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    with pytest.raises(SessionError, match=message + ".*Nothing was changed"):
        record(request(out, **change))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_a_folder_that_is_not_a_session_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SessionError, match="not an ampcap session; nothing was changed"):
        record(request(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_dropouts_are_recorded_again(tmp_path: Path) -> None:
    engine = DropoutEngine(bad_calls=lambda call: call <= 2)
    result, lines = record(request(tmp_path / "s", steps=2), engine_factory=lambda r, d: engine)
    manifest = result.manifest
    assert [t.status for t in manifest.takes] == ["complete", "complete"]
    assert [t.attempts for t in manifest.takes] == [3, 1]
    assert sum("dropout: 1 output underflow(s), 2 input overflow(s)" in line for line in lines) == 2


def test_repeated_dropouts_stop_the_session_keeping_earlier_takes(tmp_path: Path) -> None:
    out = tmp_path / "s"
    engine = DropoutEngine(bad_calls=lambda call: call > 1)
    with pytest.raises(
        CaptureError,
        match=f"dropouts in {MAX_ATTEMPTS} attempts in a row.*raise "
        r"blocksize.*Kept: 1 complete take\(s\) \(takes/isf=0",
    ):
        record(request(out, steps=2), engine_factory=lambda r, d: engine)
    manifest = load_session(out)
    assert [t.status for t in manifest.takes] == ["complete", "failed"]
    assert manifest.takes[1].attempts == MAX_ATTEMPTS and engine.calls == 1 + MAX_ATTEMPTS


def test_disk_error_stops_cleanly_saying_what_was_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "s"
    original = sf.SoundFile.write
    written: dict[str, int] = {}

    def failing_write(self: sf.SoundFile, data: np.ndarray) -> None:
        name = str(self.name)
        if "isf=10" in name and written.get(name, 0) >= 200000:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, data)
        written[name] = written.get(name, 0) + len(data)

    monkeypatch.setattr(sf.SoundFile, "write", failing_write)
    with pytest.raises(
        CaptureError,
        match=r"the disk is full while writing .*isf=10\.wav.*"
        r"Kept in .*2 complete take\(s\)",
    ):
        record(request(out))
    manifest = load_session(out)
    assert [t.status for t in manifest.takes] == ["complete", "complete", "partial"]
    partial = manifest.takes[2]
    assert partial.frames >= 200000
    assert sf.info(str(out / partial.file)).frames == partial.frames
    assert "disk is full" in (partial.message or "")


def test_virtual_engine_from_rig_settings() -> None:
    rig = load_rig("virtual")
    assert rig.virtual is not None
    engine = engine_for(rig.virtual)
    assert engine.sample_rate_hz == 48000 and engine.latency_samples == 183.37


def test_knob_command_runs_before_every_attempt(tmp_path: Path) -> None:
    """A command knob is set before each attempt (first try and dropout retries), so a device
    whose command also resets its state starts every attempt fresh."""
    log = tmp_path / "log.txt"
    script = tmp_path / "set_knob.py"
    script.write_text(f"import sys\nopen({str(log)!r}, 'a').write(sys.argv[1] + '\\n')\n")
    rig = loads_rig(
        (
            'name = "scripted"\nkind = "audio"\n[audio]\ndevice = "x"\nsample_rate_hz = 48000\n'
            f'[knobs.isf]\ncontrol = "command"\ncommand = "python {script} {{value}}"\n'
        ),
        "test",
    )
    engine = DropoutEngine(bad_calls=lambda call: call == 2)
    result, _ = record(
        request(tmp_path / "s", steps=2, rig=rig), engine_factory=lambda r, d: engine
    )
    assert [t.status for t in result.manifest.takes] == ["complete", "complete"]
    assert log.read_text().splitlines() == ["0", "10", "10"]


def test_prompted_session_redo_and_quit(tmp_path: Path) -> None:
    """Enter records, r records the previous take again, q stops keeping what is done."""
    rig = loads_rig(
        'name = "by-hand"\nkind = "audio"\n[audio]\ndevice = "x"\nsample_rate_hz = 48000\n',
        "test",
    )
    answers = iter(["", "r", "", "", "q"])
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    engine = engine_for(load_rig("virtual").virtual)  # type: ignore[arg-type]
    result, lines = record(
        request(tmp_path / "s", rig=rig, assume_yes=False),
        engine_factory=lambda r, d: engine,
        ask=ask,
        interactive=True,
    )
    assert result.stopped and len(prompts) == 5
    assert result.recorded == ("takes/isf=0.wav", "takes/isf=0.wav", "takes/isf=5.wav")
    assert [t.status for t in result.manifest.takes] == ["complete", "complete", "pending"]
    assert result.manifest.takes[0].attempts == 2
    assert "Take 1 of 3 (again): isf=0" in lines and "  turn isf from 5 to 0" in lines
    assert "  turn isf from 0 to 5" in lines and "  turn isf from 5 to 10" in lines
    assert not list((tmp_path / "s" / "takes").glob(".*"))


def test_program_samples_maps_the_float_wav_and_reads_anything_else(tmp_path: Path) -> None:
    samples = np.random.default_rng(0).uniform(-0.5, 0.5, 10000).astype(np.float32)
    write_audio(tmp_path / "program.wav", samples, 48000)
    mapped = program_samples(tmp_path / "program.wav", len(samples))
    assert isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(mapped, samples)
    sf.write(str(tmp_path / "pcm.wav"), samples, 48000, subtype="PCM_24")
    read = program_samples(tmp_path / "pcm.wav", len(samples))
    assert not isinstance(read, np.memmap)
    np.testing.assert_allclose(read, samples, atol=2**-22)


def test_ctrl_c_at_a_prompt_keeps_the_session_resumable(tmp_path: Path) -> None:
    rig = loads_rig(
        'name = "by-hand"\nkind = "audio"\n[audio]\ndevice = "x"\nsample_rate_hz = 48000\n',
        "test",
    )
    answers = iter([""])

    def ask(prompt: str) -> str:
        answer = next(answers, None)
        if answer is None:
            raise KeyboardInterrupt
        return answer

    engine = engine_for(load_rig("virtual").virtual)  # type: ignore[arg-type]
    with pytest.raises(RecordingInterrupted, match="before takes/isf=5.wav.*1 complete") as info:
        record(
            request(tmp_path / "s", rig=rig, assume_yes=False),
            engine_factory=lambda r, d: engine,
            ask=ask,
            interactive=True,
        )
    assert info.value.exit_code == 130
    assert [t.status for t in load_session(tmp_path / "s").takes] == [
        "complete",
        "pending",
        "pending",
    ]
