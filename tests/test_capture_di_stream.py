"""The program made a block at a time: the same samples, hashes and file as made in memory."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from ampcap.capture import di, program
from ampcap.capture.di import builtin_di, builtin_di_streams, di_file_streams, load_di_files
from ampcap.capture.plan import KnobRange, grid_plan
from ampcap.capture.program import build_program, build_program_file
from ampcap.capture.rig import SafetySettings, load_rig
from ampcap.capture.session import RecordRequest, record_session
from ampcap.errors import AudioFileError, CaptureError
from ampcap.files import sha256_array

FS = 48000
SAFE = SafetySettings(max_output_dbfs=-1.0, fade_ms=20.0)

# The program for the built-in DI of 6 s, seed 5, at 48 kHz with SAFE, as the in-memory
# builder wrote it before programs were made a block at a time (numpy 2 / scipy 1.x float64
# arithmetic; the built-in DI is documented as bit-exact on the same numpy/scipy).
PINNED_PROGRAM_SHA256 = "9a994d096015193c1a85c032f18bbacc6e57daa1426e787181404ce8137294c1"
PINNED_SOURCES = (
    (
        "builtin-guitar",
        240000,
        144000,
        "d97778bf5d27a3d4c623324503a9517c545e67fc30362414f327d220b7342f00",
    ),
    (
        "builtin-bass",
        396000,
        144000,
        "30c6a0df905f1f50b823844738298aabc4303ce6990e7ae014775d3d7d1a3bb7",
    ),
)
PINNED_SECTIONS = (
    ("preroll", 0, 24000),
    ("marker_start", 24000, 48000),
    ("reference_1", 72000, 168000),
    ("di", 240000, 324000),
    ("reference_2", 564000, 168000),
    ("marker_end", 732000, 48000),
    ("tail", 780000, 72000),
)
# The same program's WAV file with the write time in its PEAK chunk set to zero (libsndfile
# stamps every float WAV with the second it was written, so only that field may differ).
PINNED_FILE_SHA256 = "a5a4f00ce81c53cb98842ec24cf63203cfc39bc2d4619daa3542c445ac68ba55"


def _file_sha256_without_time(path: Path) -> str:
    data = bytearray(path.read_bytes())
    peak = data.index(b"PEAK", 12, 200)  # chunk id, size, version, then the 4-byte time
    data[peak + 12 : peak + 16] = bytes(4)
    return hashlib.sha256(bytes(data)).hexdigest()


def _check_pinned(described: program.Program) -> None:
    assert described.sha256 == PINNED_PROGRAM_SHA256
    assert described.length == 852000 and described.peak_dbfs == -3.0
    assert tuple((s.name, s.start, s.length, s.sha256) for s in described.sources) == (
        PINNED_SOURCES
    )
    assert tuple((s.name, s.start, s.length) for s in described.sections) == PINNED_SECTIONS


@pytest.mark.parametrize("block_frames", [program.BLOCK_FRAMES, 500, 7919])
def test_streamed_program_file_matches_the_pinned_in_memory_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_frames: int
) -> None:
    """Blocks shorter than the 960-sample fades and blocks that straddle every boundary give
    the same file, byte for byte, as the whole program written at once."""
    monkeypatch.setattr(program, "BLOCK_FRAMES", block_frames)
    streams = builtin_di_streams(6.0, FS, tmp_path, seed=5)
    built = build_program_file(streams, FS, SAFE, tmp_path / "program.wav", "virtual")
    _check_pinned(built.program)
    assert _file_sha256_without_time(built.path) == PINNED_FILE_SHA256
    samples, rate = sf.read(str(built.path), dtype="float32")
    assert rate == FS and sha256_array(samples) == PINNED_PROGRAM_SHA256


def test_in_memory_program_matches_the_pinned_program() -> None:
    built = build_program(builtin_di(6.0, FS, seed=5), FS, SAFE, "virtual")
    _check_pinned(built.program)
    assert sha256_array(built.samples) == PINNED_PROGRAM_SHA256


def test_builtin_streams_read_the_same_samples_as_builtin_di(tmp_path: Path) -> None:
    whole = builtin_di(5.0, FS, seed=2, peak_dbfs=-7.0)
    streams = builtin_di_streams(5.0, FS, tmp_path, seed=2, peak_dbfs=-7.0)
    for source, stream in zip(whole, streams, strict=True):
        assert (stream.name, stream.kind, stream.origin) == (source.name, source.kind, "built-in")
        assert stream.frames == len(source.samples)
        edges = [0, 1, 4799, 48000, 48001, 100000, stream.frames]
        pieces = [stream.read(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]
        assert all(p.dtype == np.float32 for p in pieces)
        np.testing.assert_array_equal(np.concatenate(pieces), source.samples)


def test_block_energies_match_one_cumulative_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loudest-window search adds the squares in the same order as one cumulative sum."""
    monkeypatch.setattr(program, "BLOCK_FRAMES", 1234)
    rng = np.random.default_rng(0)
    samples = (rng.standard_normal(20000) * np.linspace(0.01, 0.5, 20000)).astype(np.float32)
    stream = di.stream_of(di.DiSource("x", "guitar", samples, "test"))
    scan = program._scan(stream, 3000, 480)
    energy = np.concatenate([[0.0], np.cumsum(samples.astype(np.float64) ** 2)])
    starts = np.arange(0, len(samples) - 3000 + 1, 480)
    np.testing.assert_array_equal(scan.window_sums, energy[starts + 3000] - energy[starts])
    assert scan.peak == float(np.max(np.abs(samples)))


def _write(path: Path, samples: np.ndarray, rate: int, subtype: str = "FLOAT") -> Path:
    sf.write(str(path), samples, rate, subtype=subtype)
    return path


def test_file_streams_read_what_the_whole_file_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(di, "FILE_BLOCK_FRAMES", 1000)
    rng = np.random.default_rng(1)
    tone = (0.3 * rng.standard_normal(12345)).clip(-0.9, 0.9).astype(np.float32)
    mono = _write(tmp_path / "riff.wav", tone, FS, "PCM_24")
    twin = _write(tmp_path / "bass_twin.wav", np.column_stack([tone, tone]), FS)
    streams, notices = di_file_streams([str(mono), str(twin)], FS, tmp_path)
    assert [(s.name, s.kind, s.frames) for s in streams] == [
        ("riff", "guitar", 12345),
        ("bass_twin", "bass", 12345),
    ]
    assert notices == [f"{twin} has 2 identical channels; using the first."]
    for stream, path in zip(streams, (mono, twin), strict=True):
        whole, _ = sf.read(str(path), dtype="float32", always_2d=True)
        np.testing.assert_array_equal(stream.read(0, stream.frames), whole[:, 0])
        np.testing.assert_array_equal(stream.read(999, 2001), whole[999:2001, 0])
    sources, _ = load_di_files([str(mono)], FS)
    np.testing.assert_array_equal(sources[0].samples, streams[0].read(0, 12345))


def test_resampled_file_stream_is_the_whole_file_resampled(tmp_path: Path) -> None:
    t = np.arange(22050) / 44100
    tone = (0.3 * np.sin(2 * np.pi * 441 * t)).astype(np.float32)
    path = _write(tmp_path / "slow.wav", tone, 44100)
    work = tmp_path / "work"
    work.mkdir()
    streams, notices = di_file_streams([str(path)], FS, work)
    expected = signal.resample_poly(tone.astype(np.float64), 160, 147).astype(np.float32)
    assert streams[0].frames == len(expected) == 24000
    np.testing.assert_array_equal(streams[0].read(0, 24000), expected)
    np.testing.assert_array_equal(streams[0].read(100, 5000), expected[100:5000])
    assert notices == [f"{path} is at 44100 Hz; resampled to the rig's {FS} Hz."]


def test_channels_that_differ_late_and_silent_files_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(di, "FILE_BLOCK_FRAMES", 1000)
    tone = (0.2 * np.sin(np.arange(5000) / 10)).astype(np.float32)
    other = tone.copy()
    other[4500] += 0.1  # only the fifth block differs
    stereo = _write(tmp_path / "stereo.wav", np.column_stack([tone, other]), FS)
    with pytest.raises(AudioFileError, match="2 different channels; a DI is one signal"):
        di_file_streams([str(stereo)], FS, tmp_path)
    silent = _write(tmp_path / "silent.wav", np.zeros(5000, dtype=np.float32), FS)
    with pytest.raises(AudioFileError, match=r"silent\.wav is silent \(peak below -120 dBFS\)"):
        di_file_streams([str(silent)], FS, tmp_path)


def test_over_level_program_file_is_refused_and_removed(tmp_path: Path) -> None:
    streams = builtin_di_streams(3.0, FS, tmp_path)
    path = tmp_path / "program.wav"
    with pytest.raises(CaptureError, match=r"peak at -3\.00 dBFS.*nothing was played"):
        build_program_file(streams, FS, SafetySettings(-6.0, 20.0), path, "motu")
    assert not path.exists()


def test_over_level_session_plays_nothing_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refusal comes before the engine opens; neither --out nor a working file is left."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    loud = _write(tmp_path / "loud.wav", (0.9 * np.sin(np.arange(FS) / 7)).astype(np.float32), FS)
    isf = KnobRange("isf", 0.0, 10.0)
    request = RecordRequest(
        rig=replace(load_rig("virtual"), safety=SafetySettings(-6.0, 20.0)),
        knobs=[isf],
        plan=grid_plan([isf], 2),
        out=tmp_path / "session",
        di_specs=[str(loud)],
        assume_yes=True,
    )
    opened: list[object] = []

    def engine_factory(rig: object, device: object) -> object:
        opened.append(rig)
        raise AssertionError("the engine must not open for an over-level program")

    with pytest.raises(CaptureError, match=r"above virtual's limit max_output_dbfs = -6 dBFS"):
        record_session(request, say=lambda line: None, engine_factory=engine_factory)  # type: ignore[arg-type]
    assert not opened
    assert not (tmp_path / "session").exists()
    assert list(scratch.iterdir()) == []


def test_a_working_folder_that_cannot_be_written_is_a_capture_error(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    with pytest.raises(CaptureError, match=r"could not be prepared in the working folder .*gone"):
        builtin_di_streams(2.0, FS, missing)
