"""The played program and its DI: layout offsets, markers, level checks, DI loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ampcap.capture.di import builtin_di, load_di_files, parse_di_spec
from ampcap.capture.program import (
    GAP_S,
    PREROLL_S,
    REFERENCE_S,
    SOURCE_GAP_S,
    TAIL_S,
    build_program,
    sweep_marker,
)
from ampcap.capture.rig import SafetySettings
from ampcap.errors import AudioFileError, CaptureError, UsageError
from ampcap.files import sha256_array
from ampcap.schema.session import SECTION_NAMES

FS = 48000
SAFE = SafetySettings(max_output_dbfs=-1.0, fade_ms=20.0)


@pytest.fixture(scope="module")
def sources() -> list:
    return builtin_di(8.0, FS, seed=0)


@pytest.fixture(scope="module")
def built(sources: list):
    return build_program(sources, FS, SAFE, "virtual")


def test_builtin_di_is_half_guitar_half_bass_at_di_level(sources: list) -> None:
    assert [(s.name, s.kind) for s in sources] == [
        ("builtin-guitar", "guitar"),
        ("builtin-bass", "bass"),
    ]
    assert sum(len(s.samples) for s in sources) == 8 * FS
    for source in sources:
        assert source.samples.dtype == np.float32
        assert 20 * np.log10(np.max(np.abs(source.samples))) == pytest.approx(-3.0, abs=0.01)


def test_builtin_di_plays_soft_and_hard() -> None:
    """Over 30 s, the loudest and quietest busy seconds of each source differ by 6 dB or more."""
    for source in builtin_di(30.0, FS, seed=0):
        seconds = source.samples.reshape(-1, FS).astype(np.float64)
        rms = 20 * np.log10(np.sqrt(np.mean(seconds**2, axis=1)) + 1e-12)
        busy = rms[rms > -60]
        assert busy.max() - busy.min() > 6.0, source.name


def test_builtin_di_is_deterministic_for_a_seed() -> None:
    a = builtin_di(4.0, FS, seed=3)
    b = builtin_di(4.0, FS, seed=3)
    c = builtin_di(4.0, FS, seed=4)
    assert all(np.array_equal(x.samples, y.samples) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0].samples, c[0].samples)


def test_builtin_di_has_plucked_pitches() -> None:
    """A single pluck rendered alone has its energy at harmonics of the requested pitch."""
    from ampcap.capture.di import _pluck

    note = _pluck(110.0, FS, 2.0, 0.8, 0.0, 0.2, FS, np.random.default_rng(0))
    spectrum = np.abs(np.fft.rfft(note * np.hanning(len(note))))
    freqs = np.fft.rfftfreq(len(note), 1 / FS)
    assert (
        abs(freqs[np.argmax(spectrum)] / 110.0 - round(freqs[np.argmax(spectrum)] / 110.0)) < 0.01
    )


def test_too_short_builtin_di_is_refused() -> None:
    with pytest.raises(UsageError, match="--di-seconds 1 is too short"):
        builtin_di(1.0, FS)


def test_sections_follow_each_other_and_cover_the_program(built) -> None:
    program = built.program
    assert tuple(s.name for s in program.sections) == SECTION_NAMES
    position = 0
    for section in program.sections:
        assert section.start == position
        position = section.stop
    assert position == program.length == len(built.samples)
    assert program.section("preroll").length == PREROLL_S * FS
    assert program.section("tail").length == TAIL_S * FS
    assert not np.any(built.samples[: int(PREROLL_S * FS)])
    assert not np.any(built.samples[program.section("tail").start :])


def test_markers_are_the_sweep_at_each_marker_section(built) -> None:
    program = built.program
    sweep, marker = sweep_marker(FS, program.marker.level_dbfs)
    assert marker == program.marker
    for name in ("marker_start", "marker_end"):
        section = program.section(name)
        start = section.start
        np.testing.assert_array_equal(
            built.samples[start : start + marker.length], sweep.astype(np.float32)
        )
        assert section.length == marker.length + GAP_S * FS
        assert not np.any(built.samples[start + marker.length : section.stop])


def test_sweep_marker_starts_and_ends_faded() -> None:
    sweep, marker = sweep_marker(FS, -6.0)
    assert abs(sweep[0]) < 1e-3 and abs(sweep[-1]) < 1e-3
    assert 20 * np.log10(np.max(np.abs(sweep))) == pytest.approx(-6.0, abs=0.05)
    assert marker.fade_samples == 240 and marker.f_stop_hz == 20000.0


def test_references_are_identical_and_cut_from_the_di(built, sources: list) -> None:
    program = built.program
    one = built.samples[program.section("reference_1").start : program.section("reference_1").stop]
    two = built.samples[program.section("reference_2").start : program.section("reference_2").stop]
    assert np.array_equal(one, two)
    reference = one[: int(REFERENCE_S * FS)]
    # Away from its fades the reference is a stretch of one DI source, sample for sample.
    core = reference[2000:-2000]
    found = [s for s in sources if _contains(s.samples, core)]
    assert found


def _contains(haystack: np.ndarray, needle: np.ndarray) -> bool:
    starts = np.flatnonzero(haystack[: len(haystack) - len(needle) + 1] == needle[0])
    return any(np.array_equal(haystack[i : i + len(needle)], needle) for i in starts)


def test_sources_sit_where_the_manifest_says(built, sources: list) -> None:
    program = built.program
    di = program.section("di")
    assert program.sources[0].start == di.start
    assert program.sources[1].start == program.sources[0].stop + SOURCE_GAP_S * FS
    for placed, source in zip(program.sources, sources, strict=True):
        samples = built.samples[placed.start : placed.stop]
        assert placed.length == len(source.samples) and placed.kind == source.kind
        assert placed.sha256 == sha256_array(samples)
        # Between the fades the source is played untouched (no normalisation).
        np.testing.assert_array_equal(samples[1000:-1000], source.samples[1000:-1000])
        assert samples[0] == 0.0 or abs(samples[0]) < 1e-4 * abs(source.samples).max()
    assert program.sha256 == sha256_array(built.samples)
    assert program.peak_dbfs == pytest.approx(20 * np.log10(np.abs(built.samples).max()), abs=1e-3)


def test_over_level_program_is_refused_before_playing(sources: list) -> None:
    strict = SafetySettings(max_output_dbfs=-6.0, fade_ms=20.0)
    with pytest.raises(
        CaptureError,
        match=r"peak at -3\.00 dBFS, above motu's limit "
        r"max_output_dbfs = -6 dBFS; nothing was played.*"
        r"Lower the DI by at least 3\.0 dB",
    ):
        build_program(sources, FS, strict, "motu")


def test_no_sources_is_refused() -> None:
    with pytest.raises(UsageError, match="no DI to play"):
        build_program([], FS, SAFE)


def _write(path: Path, samples: np.ndarray, rate: int) -> Path:
    sf.write(str(path), samples, rate, subtype="FLOAT")
    return path


def test_di_files_mono_stereo_resampled_and_kinds(tmp_path: Path) -> None:
    t = np.arange(44100) / 44100
    tone = (0.3 * np.sin(2 * np.pi * 441 * t)).astype(np.float32)
    mono = _write(tmp_path / "riff.wav", tone, 44100)
    twin = _write(tmp_path / "Bass_DI.wav", np.column_stack([tone, tone]), 48000)
    sources, notices = load_di_files([str(mono), f"other:{twin}"], FS)
    assert [(s.name, s.kind) for s in sources] == [("riff", "guitar"), ("Bass_DI", "other")]
    assert len(sources[0].samples) == 48000  # 1 s at 44.1 kHz resampled to 48 kHz
    assert any("44100 Hz; resampled" in n for n in notices)
    assert any("identical channels; using the first" in n for n in notices)
    # Levels are kept: a -10.5 dBFS tone stays at -10.5 dBFS after resampling.
    middle = sources[0].samples[2000:-2000]
    assert 20 * np.log10(np.max(np.abs(middle))) == pytest.approx(20 * np.log10(0.3), abs=0.05)


def test_stereo_di_with_different_channels_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = _write(tmp_path / "stereo.wav", 0.1 * rng.standard_normal((48000, 2)), 48000)
    with pytest.raises(AudioFileError, match="2 different channels; a DI is one signal"):
        load_di_files([str(path)], FS)


def test_missing_and_non_audio_di_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="does not exist"):
        load_di_files([str(tmp_path / "absent.wav")], FS)
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(AudioFileError, match="not an audio file"):
        load_di_files([str(text)], FS)


@pytest.mark.parametrize(
    ("spec", "kind", "path"),
    [
        ("bass:a.wav", "bass", "a.wav"),
        ("my-bass-di.flac", "bass", "my-bass-di.flac"),
        ("lead.wav", "guitar", "lead.wav"),
        ("guitar:Bass.wav", "guitar", "Bass.wav"),
        ("weird:x.wav", "guitar", "weird:x.wav"),
    ],
)
def test_di_kind_from_prefix_or_name(spec: str, kind: str, path: str) -> None:
    assert parse_di_spec(spec) == (kind, Path(path))
