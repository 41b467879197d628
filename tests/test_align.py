"""Session and file alignment against recordings with known latency, drift and polarity."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from align_helpers import (
    Rig,
    SyntheticProgram,
    amp_output,
    fractional_delay,
    make_program,
    make_session,
    plucks,
    record,
    write_session,
)

from ampcap.dataset import pairs
from ampcap.dataset.align import align_session
from ampcap.dataset.coherence import track_coherent
from ampcap.dataset.delay import estimate_window, track_latency
from ampcap.dataset.pairs import align_files
from ampcap.dataset.quality import esr
from ampcap.errors import AlignmentError, SessionError, UsageError
from ampcap.files import read_audio, sha256_file, write_audio
from ampcap.schema.alignment import load_alignment

RATE = 48000
TRUTH = Rig(latency_samples=1234.567, drift_ppm=150.0, polarity=-1, noise_dbfs=-70.0, seed=4)


def _intrinsic_delay(program: SyntheticProgram, device: np.ndarray) -> float:
    """The virtual amp's own delay, measured on its clean output as ampcap defines it."""
    windows = [
        (program.layout.section(name).start, program.layout.marker.length)
        for name in ("marker_start", "marker_end")
    ]
    return track_latency(
        program.audio.astype(np.float64),
        device,
        windows,
        min_latency_samples=-64,
        max_latency_samples=64,
        weighting="phat",
    ).latency_samples


@pytest.fixture(scope="module")
def aligned_session(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("session") / "s"
    manifest, program = make_session(folder, values=(0.0, 10.0), rig=TRUTH, sample_rate_hz=RATE)
    hashes = {t.file: sha256_file(folder / t.file) for t in manifest.takes}
    result = align_session(folder)
    return {
        "folder": folder,
        "manifest": manifest,
        "program": program,
        "hashes": hashes,
        "result": result,
    }


def test_session_alignment_recovers_the_truth(aligned_session: dict) -> None:
    program: SyntheticProgram = aligned_session["program"]
    for take in aligned_session["result"].takes:
        e = take.estimates
        assert take.verdict == "ok", take.messages
        assert e["input"] == "loopback"
        assert e["loopback_latency_samples"] == pytest.approx(TRUTH.latency_at_zero(), abs=0.02)
        assert e["drift_ppm"] == pytest.approx(TRUTH.drift_ppm, abs=0.5)
        assert e["drift_corrected"] is True
        assert e["polarity"] == -1
        assert e["loopback_polarity"] == 1
        device = amp_output(program.audio, RATE, take.knobs)
        intrinsic = _intrinsic_delay(program, device) * (1 + TRUTH.drift_ppm * 1e-6)
        assert e["device_latency_samples"] == pytest.approx(intrinsic, abs=0.02)
        assert e["latency_samples"] == pytest.approx(
            e["loopback_latency_samples"] + e["device_latency_samples"], abs=1e-3
        )
        assert e["snr_db"] > 40
        assert e["repeatability_esr"] < 0.01
        assert e["clipped_runs"] == 0


def test_aligned_pairs_sit_on_the_program_axis(aligned_session: dict) -> None:
    folder: Path = aligned_session["folder"]
    program: SyntheticProgram = aligned_session["program"]
    for take in aligned_session["result"].takes:
        pair, rate = read_audio(folder / take.file)
        assert rate == RATE
        assert pair.shape == (len(program.audio), 2)
        di = program.layout.section("di")
        # Input: the loopback, undelayed and undrifted, is the program (noise -70 dBFS).
        assert esr(program.audio[di.start : di.stop], pair[di.start : di.stop, 0]) < 1e-3
        # Target: the amp's clean output advanced by its own delay, polarity undone.
        device = amp_output(program.audio, RATE, take.knobs)
        expected = fractional_delay(
            device, -take.estimates["device_latency_samples"] / (1 + TRUTH.drift_ppm * 1e-6)
        )
        assert esr(expected[di.start : di.stop], pair[di.start : di.stop, 1]) < 1e-3


def test_raw_takes_are_never_rewritten(aligned_session: dict) -> None:
    folder: Path = aligned_session["folder"]
    for file, digest in aligned_session["hashes"].items():
        assert sha256_file(folder / file) == digest


def test_alignment_manifest_on_disk(aligned_session: dict) -> None:
    folder: Path = aligned_session["folder"]
    manifest = load_alignment(folder)
    assert manifest == aligned_session["result"]
    assert manifest.session_sha256 == sha256_file(folder / "session.json")
    assert [t.file for t in manifest.takes] == ["aligned/isf=0.wav", "aligned/isf=10.wav"]
    checks = manifest.session_checks
    assert checks["latency_consistent"] is True
    assert [p["knobs"] for p in checks["volume_curve"]] == [{"isf": 0.0}, {"isf": 10.0}]
    raw = json.loads((folder / "aligned" / "alignment.json").read_text())
    assert raw["takes"][0]["estimates"]["polarity"] == -1


@pytest.fixture(scope="module")
def program() -> SyntheticProgram:
    return make_program(RATE, di_seconds=1.5)


def _take(program: SyntheticProgram, rig: Rig = TRUTH, value: float = 5.0) -> np.ndarray:
    return record(program.audio, amp_output(program.audio, RATE, {"isf": value}), rig, RATE)


def _align_one(tmp_path: Path, program: SyntheticProgram, take: np.ndarray):
    write_session(tmp_path, program, {5.0: take})
    return align_session(tmp_path).takes[0]


def test_partial_pending_and_missing_takes_are_reported_not_aligned(
    tmp_path: Path, program: SyntheticProgram
) -> None:
    take = _take(program)
    write_session(
        tmp_path,
        program,
        {0.0: take, 5.0: take[: len(take) // 2], 10.0: None},
        statuses={5.0: "partial", 10.0: "pending"},
    )
    (tmp_path / "takes" / "isf=0.wav").unlink()
    result = align_session(tmp_path)
    verdicts = {t.knobs["isf"]: t for t in result.takes}
    assert all(t.verdict == "failed" and t.file == "" for t in result.takes)
    assert "does not exist" in verdicts[0.0].messages[0]
    assert "partial" in verdicts[5.0].messages[0]
    assert "pending" in verdicts[10.0].messages[0]
    assert not list((tmp_path / "aligned").glob("*.wav"))
    assert result.session_checks["takes_failed"] == 3


def test_a_silent_loopback_falls_back_to_the_program(
    tmp_path: Path, program: SyntheticProgram
) -> None:
    take = _take(program)
    take[:, 0] = 0.0
    result = _align_one(tmp_path, program, take)
    assert result.verdict == "warning"
    assert result.estimates["input"] == "program"
    assert any("loopback channel is silent" in m for m in result.messages)
    intrinsic = _intrinsic_delay(program, amp_output(program.audio, RATE, {"isf": 5.0}))
    assert result.estimates["latency_samples"] == pytest.approx(
        TRUTH.latency_at_zero() + intrinsic, abs=0.05
    )
    pair, _ = read_audio(tmp_path / result.file)
    assert np.array_equal(pair[:, 0], program.audio)


def test_swapped_inputs_are_detected_and_undone(tmp_path: Path, program: SyntheticProgram) -> None:
    take = _take(program)[:, ::-1].copy()
    result = _align_one(tmp_path, program, take)
    assert result.verdict == "warning"
    assert result.estimates["channels_swapped"] is True
    assert any("swapped" in m for m in result.messages)
    assert result.estimates["loopback_latency_samples"] == pytest.approx(
        TRUTH.latency_at_zero(), abs=0.02
    )


def test_a_silent_device_fails_the_take(tmp_path: Path, program: SyntheticProgram) -> None:
    take = _take(program)
    take[:, 1] = 0.0
    result = _align_one(tmp_path, program, take)
    assert result.verdict == "failed"
    assert result.file == ""
    assert "device channel is silent" in result.messages[0]


def test_an_unrelated_loopback_is_not_used(tmp_path: Path, program: SyntheticProgram) -> None:
    take = _take(program)
    take[:, 0] = 0.1 * np.random.default_rng(0).standard_normal(len(take))
    result = _align_one(tmp_path, program, take)
    assert result.estimates["input"] == "program"
    assert any("does not match the program" in m for m in result.messages)


def test_clipping_low_snr_and_dc_are_warned(tmp_path: Path, program: SyntheticProgram) -> None:
    take = _take(program, Rig(latency_samples=100.0, noise_dbfs=-45.0, seed=1))
    take[:, 1] = np.clip(take[:, 1] * 8 + 0.02, -1, 1)
    result = _align_one(tmp_path, program, take)
    text = " ".join(result.messages)
    assert result.verdict == "warning"
    assert result.estimates["clipped_runs"] > 0
    assert "clipped" in text
    assert "DC offset" in text
    take = _take(program, Rig(latency_samples=100.0, noise_dbfs=-40.0, seed=1))
    result = _align_one(tmp_path, program, take)
    assert result.estimates["snr_db"] < 40
    assert "SNR" in " ".join(result.messages)


def test_a_gate_on_the_second_reference_breaks_repeatability(
    tmp_path: Path, program: SyntheticProgram
) -> None:
    take = _take(program, Rig(latency_samples=50.0, seed=2))
    second = program.layout.section("reference_2")
    take[second.start + 50 : second.start + second.length // 2 + 50, 1] = 0.0
    result = _align_one(tmp_path, program, take)
    assert result.estimates["repeatability_esr"] > 0.1
    assert any("noise gate" in m for m in result.messages)


def test_a_program_that_does_not_match_the_session_is_refused(
    tmp_path: Path, program: SyntheticProgram
) -> None:
    write_session(tmp_path, program, {5.0: _take(program)})
    write_audio(tmp_path / "program.wav", program.audio[:-100], RATE)
    with pytest.raises(SessionError, match="does not match session.json"):
        align_session(tmp_path)


def test_not_a_session_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SessionError, match="not a capture session"):
        align_session(tmp_path)


# --- recordings made elsewhere -----------------------------------------------------------


@pytest.fixture(scope="module")
def reamp(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("reamp")
    rate = 44100
    rng = np.random.default_rng(3)
    di = np.concatenate([np.zeros(1000), plucks(rate * 8, rate, rng), np.zeros(rate // 2)])
    device = amp_output(di, rate, {"isf": 5.0})
    rig = Rig(latency_samples=777.25, drift_ppm=-120.0, polarity=-1, noise_dbfs=-80.0, seed=3)
    take = record(di, device, rig, rate)
    write_audio(folder / "di.wav", di.astype(np.float32), rate)
    write_audio(folder / "lb.wav", take[:, 0], rate)
    write_audio(folder / "amp.wav", take[:, 1], rate)
    # The amp's own delay as the marker-free estimator reads it, on its clean output.
    intrinsic = track_coherent(
        di, device, rate, min_latency_samples=-64, max_latency_samples=64, drift=False
    )
    return {
        "folder": folder,
        "rate": rate,
        "rig": rig,
        "di": di,
        "take": take,
        "intrinsic": intrinsic.latency_samples,
    }


def test_align_files_without_loopback(reamp: dict) -> None:
    folder = reamp["folder"]
    result = align_files(folder / "di.wav", folder / "amp.wav")
    rig = reamp["rig"]
    truth = rig.latency_at_zero() + reamp["intrinsic"] * (1 + rig.drift_ppm * 1e-6)
    # Through a distorting amp on music the device's delay is defined less sharply than on a
    # sweep: a tenth of a sample, and a ppm of drift over 9 s.
    assert result.latency_samples == pytest.approx(truth, abs=0.1)
    assert result.drift_ppm == pytest.approx(-120.0, abs=1.0)
    assert result.polarity == -1
    assert result.out_path == folder / "amp.aligned.wav"
    pair, rate = read_audio(result.out_path)
    # The recording is as long as the DI, so it stops a latency's worth before the DI does.
    assert rate == reamp["rate"] and pair.shape == (result.pair_frames, 2)
    assert result.pair_frames == len(reamp["di"]) - result.uncovered_frames
    assert 0 < result.uncovered_frames <= math.ceil(truth) + 1
    assert np.allclose(pair[:, 0], reamp["di"][: len(pair)], atol=1e-7)
    document = result.to_json()
    assert set(document) >= {"latency_samples", "drift_ppm", "polarity", "confidence"}
    assert document["drift_error_ppm"] == pytest.approx(result.drift_error_ppm, abs=1e-4)
    assert 0 < result.drift_error_ppm < 1.0
    assert document["polarity"] == -1
    confidence = document["confidence"]
    assert confidence["measure"] == "coherence" and "linearly" in confidence["meaning"]
    assert confidence["value"] > 0.5 > confidence["trusted_from"] > confidence["unrelated_floor"]


def test_align_files_with_loopback(reamp: dict, tmp_path: Path) -> None:
    folder = reamp["folder"]
    result = align_files(
        folder / "di.wav", folder / "amp.wav", folder / "lb.wav", out_path=tmp_path / "pair.wav"
    )
    rig = reamp["rig"]
    assert result.loopback_latency_samples == pytest.approx(rig.latency_at_zero(), abs=0.02)
    assert result.drift_ppm == pytest.approx(-120.0, abs=0.5)
    assert result.device_latency_samples == pytest.approx(reamp["intrinsic"], abs=0.1)
    assert result.coherence > 0.5
    pair, _ = read_audio(tmp_path / "pair.wav")
    assert esr(reamp["di"][1000 : len(pair) - 5000], pair[1000:-5000, 0]) < 1e-3


def test_a_device_with_a_long_delay_of_its_own_is_split_from_the_loopback(
    reamp: dict, tmp_path: Path
) -> None:
    # A digital device adds 20 ms of its own: the loopback is then not where the output is,
    # and is found in the music on its own.
    rate, take = reamp["rate"], reamp["take"]
    own = 882
    write_audio(tmp_path / "amp.wav", np.concatenate([np.zeros(own), take[:, 1]]), rate)
    folder = reamp["folder"]
    result = align_files(folder / "di.wav", tmp_path / "amp.wav", folder / "lb.wav")
    rig = reamp["rig"]
    assert result.loopback_latency_samples == pytest.approx(rig.latency_at_zero(), abs=0.02)
    unshifted = align_files(
        folder / "di.wav", folder / "amp.wav", folder / "lb.wav", out_path=tmp_path / "0.wav"
    )
    assert result.device_latency_samples == pytest.approx(
        unshifted.device_latency_samples + own, abs=0.05
    )


def test_with_a_loopback_the_output_is_read_along_the_loopbacks_drift(
    reamp: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through a bass DI and a distorting device the output's own drift reading can be a few
    # ppm off, which moves its latency at the file's start by as many samples. With a
    # loopback the output is read again along the loopback's exact drift: a misreading of the
    # output's own drift must not reach the result.
    folder = reamp["folder"]
    files = (folder / "di.wav", folder / "amp.wav", folder / "lb.wav")
    exact = align_files(*files, out_path=tmp_path / "exact.wav")
    middle = len(reamp["di"]) / 2
    own_reading = pairs.track_coherent

    def misread(*args, **options):
        track = own_reading(*args, **options)
        if options.get("drift_ppm") is not None:
            return track
        # 5 ppm off, turned about the file's middle as a wrong slope through the data is.
        return dataclasses.replace(
            track,
            drift_ppm=track.drift_ppm + 5.0,
            latency_samples=track.latency_samples - 5e-6 * middle,
        )

    monkeypatch.setattr(pairs, "track_coherent", misread)
    result = align_files(*files, out_path=tmp_path / "misread.wav")
    assert result.drift_ppm == pytest.approx(exact.drift_ppm, abs=1e-3)
    assert result.latency_samples == pytest.approx(exact.latency_samples, abs=0.05)
    assert result.device_latency_samples == pytest.approx(exact.device_latency_samples, abs=0.05)


def test_loopback_and_output_of_different_lengths(reamp: dict, tmp_path: Path) -> None:
    rate, take = reamp["rate"], reamp["take"]
    write_audio(tmp_path / "lb.wav", take[:-2000, 0], rate)
    write_audio(tmp_path / "amp.wav", np.concatenate([take[:, 1], np.zeros(rate // 10)]), rate)
    result = align_files(reamp["folder"] / "di.wav", tmp_path / "amp.wav", tmp_path / "lb.wav")
    assert result.loopback_latency_samples == pytest.approx(
        reamp["rig"].latency_at_zero(), abs=0.02
    )
    # The pair ends where the shorter recording, the loopback, does.
    pair, _ = read_audio(result.out_path)
    assert pair.shape == (result.pair_frames, 2)
    rig = reamp["rig"]
    covered = (len(take) - 2000 - rig.latency_at_zero()) / (1 + rig.drift_ppm * 1e-6)
    assert result.pair_frames == pytest.approx(covered, abs=2)


def test_render_tail_is_left_out_and_a_short_output_gives_a_shorter_pair(
    reamp: dict, tmp_path: Path
) -> None:
    rate, take = reamp["rate"], reamp["take"]
    longer = np.concatenate([take[:, 1], 0.001 * np.ones(rate)])
    write_audio(tmp_path / "long.wav", longer, rate)
    result = align_files(reamp["folder"] / "di.wav", tmp_path / "long.wav")
    assert result.trimmed_frames > 0 and result.uncovered_frames == 0
    assert result.pair_frames == len(reamp["di"])
    assert any("render tail" in note for note in result.notes)
    # A bounce that stops at half the DI: aligned, the pair holds the half it covers.
    half = len(take) // 2
    write_audio(tmp_path / "short.wav", take[:half, 1], rate)
    result = align_files(reamp["folder"] / "di.wav", tmp_path / "short.wav")
    truth = reamp["rig"].latency_at_zero() + reamp["intrinsic"]
    assert result.latency_samples == pytest.approx(truth, abs=0.5)
    assert result.trimmed_frames == 0
    assert result.uncovered_frames == len(reamp["di"]) - result.pair_frames
    assert half - 1000 < result.pair_frames < half
    assert any("stops" in note and "covers" in note for note in result.notes)
    pair, _ = read_audio(result.out_path)
    assert len(pair) == result.pair_frames
    assert np.max(np.abs(pair[-rate // 10 :, 1])) > 0.01  # music to the end, no padding


def test_a_drift_read_loosely_gets_a_note_that_names_the_loopback() -> None:
    # 16 s at 44.1 kHz with the drift read to ±2 ppm: two standard errors move the ends of the
    # pair by 1.4 samples, worth saying; to ±0.1 ppm, 0.07 samples, not worth it. With a
    # loopback (no error given) the drift is exact.
    (note,) = pairs._drift_notes(2.0, 16 * 44100)
    assert "±2.00 ppm" in note and "1.4 samples" in note and "--loopback" in note
    assert pairs._drift_notes(0.1, 16 * 44100) == []
    assert pairs._drift_notes(None, 16 * 44100) == []


def test_align_files_refusals(reamp: dict, tmp_path: Path) -> None:
    folder, rate, take = reamp["folder"], reamp["rate"], reamp["take"]
    write_audio(tmp_path / "48k.wav", take[:, 1], 48000)
    with pytest.raises(AlignmentError, match="48k.wav is at 48000 Hz but the input .*44100"):
        align_files(folder / "di.wav", tmp_path / "48k.wav")
    write_audio(tmp_path / "stereo.wav", take, rate)
    with pytest.raises(AlignmentError, match="stereo.wav has 2 channels"):
        align_files(folder / "di.wav", tmp_path / "stereo.wav")
    sf.write(tmp_path / "silent.wav", np.zeros(rate * 2, dtype=np.float32), rate, subtype="FLOAT")
    with pytest.raises(AlignmentError, match="silent.wav .*silent"):
        align_files(folder / "di.wav", tmp_path / "silent.wav")
    noise = 0.1 * np.random.default_rng(9).standard_normal(len(take))
    write_audio(tmp_path / "other.wav", noise, rate)
    with pytest.raises(AlignmentError, match="other.wav does not look like a recording.*coherence"):
        align_files(folder / "di.wav", tmp_path / "other.wav")
    # Another DI played through the same amp: music, but not this music.
    other_di = plucks(len(take), rate, np.random.default_rng(11))
    write_audio(tmp_path / "unrelated.wav", amp_output(other_di, rate, {"isf": 5.0}), rate)
    with pytest.raises(AlignmentError, match="unrelated.wav does not look like a recording"):
        align_files(folder / "di.wav", tmp_path / "unrelated.wav")
    # A WAV cut short (an interrupted copy) says so, with the frames promised and present.
    whole = (folder / "amp.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(AlignmentError, match=r"cut.wav is truncated: its header promises \d+"):
        align_files(folder / "di.wav", tmp_path / "cut.wav")
    with pytest.raises(UsageError, match="would overwrite"):
        align_files(folder / "di.wav", folder / "amp.wav", out_path=folder / "di.wav")


def test_polarity_follows_the_music_when_the_markers_disagree(
    tmp_path: Path, program: SyntheticProgram
) -> None:
    # Through a fuzz with its tone control at an extreme, the marker sweeps can correlate with
    # the wrong sign. Flip only the device's marker sections: the music keeps the true sign.
    device = amp_output(program.audio, RATE, {"isf": 5.0})
    for name in ("marker_start", "marker_end"):
        section = program.layout.section(name)
        device[section.start : section.stop] *= -1
    take = record(program.audio, device, TRUTH, RATE)
    result = _align_one(tmp_path, program, take)
    assert result.estimates["polarity"] == TRUTH.polarity
    assert result.estimates["polarity_correlation"] * TRUTH.polarity > 0.5
    pair, _ = read_audio(tmp_path / result.file)
    di = program.layout.section("di")
    assert np.dot(pair[di.start : di.stop, 0], pair[di.start : di.stop, 1]) > 0


def test_an_inverting_device_is_found_inverted_by_markers_and_music_alike(
    tmp_path: Path, program: SyntheticProgram
) -> None:
    take = _take(program)
    take[:, 1] *= -1
    result = _align_one(tmp_path, program, take)
    assert result.estimates["polarity"] == -TRUTH.polarity
    assert result.estimates["polarity_correlation"] * TRUTH.polarity < -0.5


# --- distorting devices, without markers -------------------------------------------------------


def _fuzz(x: np.ndarray, rate: int) -> np.ndarray:
    """A crude high-gain device: 40 dB into a hard-ish clipper between two tone filters.

    Its output is mostly harmonics: a plain or phase-transform correlation peak barely stands
    out, the coherent part in the fundamental band does.
    """
    from scipy import signal

    pre = signal.sosfilt(signal.butter(2, [120, 3000], "bandpass", fs=rate, output="sos"), x)
    clipped = np.tanh(100.0 * pre) + 0.3 * np.tanh(30.0 * pre) ** 2
    return 0.3 * signal.sosfilt(signal.butter(2, 5000, "lowpass", fs=rate, output="sos"), clipped)


@pytest.fixture(scope="module")
def fuzz_pair(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("fuzz")
    rate = 48000
    di = plucks(rate * 12, rate, np.random.default_rng(21))
    device = _fuzz(di, rate)
    rig = Rig(latency_samples=2345.6, drift_ppm=210.0, polarity=-1, noise_dbfs=-70.0, seed=8)
    take = record(di, device, rig, rate)
    write_audio(folder / "di.wav", di.astype(np.float32), rate)
    write_audio(folder / "fuzz.wav", take[:, 1], rate)
    write_audio(folder / "lb.wav", take[:, 0], rate)
    own = track_coherent(
        di, device, rate, min_latency_samples=-64, max_latency_samples=64, drift=False
    )
    return {"folder": folder, "rate": rate, "rig": rig, "di": di, "device": device, "own": own}


def test_a_distorting_device_is_aligned_without_markers(fuzz_pair: dict) -> None:
    folder, rig, own = fuzz_pair["folder"], fuzz_pair["rig"], fuzz_pair["own"]
    # The phase-transform peak of the whole file hardly stands out (the old way refused it).
    plain = estimate_window(
        fuzz_pair["di"],
        fuzz_pair["device"],
        0,
        len(fuzz_pair["di"]) // 2,
        -4000,
        4000,
        weighting="phat",
    )
    assert plain.confidence_db < 10
    result = align_files(folder / "di.wav", folder / "fuzz.wav")
    truth = rig.latency_at_zero() + own.latency_samples * (1 + rig.drift_ppm * 1e-6)
    assert result.latency_samples == pytest.approx(truth, abs=0.25)
    assert result.drift_ppm == pytest.approx(rig.drift_ppm, abs=0.5)
    assert result.polarity == rig.polarity * own.polarity
    assert result.coherence > result.trusted_from
    # With the loopback, the interface's part is exact and the device's part is the device's.
    looped = align_files(folder / "di.wav", folder / "fuzz.wav", folder / "lb.wav")
    assert looped.loopback_latency_samples == pytest.approx(rig.latency_at_zero(), abs=0.02)
    assert looped.device_latency_samples == pytest.approx(
        own.latency_samples * (1 + rig.drift_ppm * 1e-6), abs=0.25
    )


def test_content_at_another_rate_than_its_header_is_refused(
    fuzz_pair: dict, tmp_path: Path
) -> None:
    from scipy import signal

    rate = fuzz_pair["rate"]
    # 44.1 kHz material written as 48 kHz plays 8.8 % fast: nothing lines up.
    fast = signal.resample_poly(fuzz_pair["device"], 147, 160)
    write_audio(tmp_path / "fast.wav", fast, rate)
    with pytest.raises(AlignmentError, match="fast.wav does not look like a recording.*coherence"):
        align_files(fuzz_pair["folder"] / "di.wav", tmp_path / "fast.wav")


def test_a_session_whose_markers_the_device_hides_is_aligned_from_the_music(
    tmp_path: Path, program: SyntheticProgram
) -> None:
    # A noise gate that stays shut on the sweeps: no marker in the device channel, music is there.
    device = amp_output(program.audio, RATE, {"isf": 5.0})
    for name in ("marker_start", "marker_end"):
        section = program.layout.section(name)
        device[section.start : section.stop] = 0.0
    take = record(program.audio, device, TRUTH, RATE)
    result = _align_one(tmp_path, program, take)
    e = result.estimates
    assert result.verdict == "warning"
    assert e["device_method"] == "music" and e["device_coherence"] > 0.5
    assert any("read from the music" in m for m in result.messages)
    assert e["loopback_latency_samples"] == pytest.approx(TRUTH.latency_at_zero(), abs=0.02)
    intrinsic = _intrinsic_delay(program, amp_output(program.audio, RATE, {"isf": 5.0}))
    assert e["device_latency_samples"] == pytest.approx(intrinsic, abs=1.0)


def test_a_take_cut_short_after_recording_says_so(
    tmp_path: Path, program: SyntheticProgram
) -> None:
    take = _take(program)
    write_session(tmp_path, program, {5.0: take})
    # The file loses its second half but keeps a valid header (a tool rewrote it short).
    write_audio(tmp_path / "takes" / "isf=5.wav", take[: len(take) // 2], RATE)
    result = align_session(tmp_path).takes[0]
    assert result.verdict == "failed"
    assert "cut short after recording" in result.messages[0]
    assert f"session.json says {len(take)}" in result.messages[0]
