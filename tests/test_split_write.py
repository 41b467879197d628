"""Dataset folders written from synthetic aligned sessions: contents, leakage, determinism, errors.

Every sample of a synthetic session encodes its program frame (input) and its knob setting
(target / input ratio), see split_helpers, so these tests decode the written files themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.io import wavfile
from split_helpers import SourceSpec, decode_input, make_session, snapshot

from ampcap.dataset import split_write
from ampcap.dataset.split_write import SplitOptions, build_dataset
from ampcap.errors import AmpcapError, DatasetError, SessionError
from ampcap.files import sha256_array
from ampcap.schema.dataset import SPLITS, load_dataset
from ampcap.schema.session import Knob, load_session, save_session
from ampcap.wavstream import WavStreamWriter

RATE = 1000
SOURCES = (SourceSpec("gtr.wav", "guitar", 12_000), SourceSpec("bass.wav", "bass", 8_000))
SETTINGS = ({"isf": 0.0}, {"isf": 5.0}, {"isf": 10.0})


def _read(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    x, rate = sf.read(str(folder / split / "input.wav"), dtype="float32", always_2d=True)
    y, _ = sf.read(str(folder / split / "target.wav"), dtype="float32", always_2d=True)
    assert rate == RATE
    return x, y


def _nothing_written(parent: Path, out: Path) -> None:
    assert not out.exists()
    if parent.exists():
        assert not [p for p in parent.iterdir() if p.name.startswith(f".{out.name}.")]


@pytest.fixture
def session(tmp_path: Path) -> Path:
    return make_session(tmp_path / "cap", rate=RATE, sources=SOURCES, settings=SETTINGS)


def test_files_hold_each_block_at_each_setting_with_normalised_knobs(session, tmp_path):
    result = build_dataset(
        [session], tmp_path / "data" / "demo", SplitOptions(block_seconds=1.0, guard_ms=20.0)
    )
    folder, manifest = result.folder, result.manifest
    assert load_dataset(folder) == manifest
    for split in SPLITS:
        x, y = _read(folder, split)
        assert x.shape == (manifest.splits[split].frames, 2) and y.shape[1] == 1
        assert sha256_array(x) == manifest.splits[split].input_sha256
        assert sha256_array(y) == manifest.splits[split].target_sha256
        pieces = manifest.pieces_of(split)
        assert sum(p.length for p in pieces) == x.shape[0]
        for piece in pieces:
            block = manifest.blocks[piece.block]
            assert block.split == split
            rows = slice(piece.offset, piece.offset + piece.length)
            frames = decode_input(x[rows, 0])
            np.testing.assert_array_equal(
                frames, np.arange(block.start, block.start + block.length)
            )
            k = SETTINGS.index(piece.knobs)
            np.testing.assert_array_equal(y[rows, 0], x[rows, 0] / 2 ** (k + 1))
            assert np.all(x[rows, 1] == np.float32(piece.knobs["isf"] / 10.0))
        # Every block of the split appears once at every setting.
        blocks = {b.id for b in manifest.blocks if b.split == split}
        for knobs in SETTINGS:
            assert sorted(p.block for p in pieces if p.knobs == knobs) == sorted(blocks)
    total_minutes = sum(sum(m.values()) for m in manifest.minutes.values())
    assert total_minutes == pytest.approx(
        sum(s.frames for s in manifest.splits.values()) / RATE / 60, abs=1e-4
    )


@st.composite
def dataset_cases(draw):
    sources = [
        SourceSpec(
            f"s{i}.wav", draw(st.sampled_from(["guitar", "bass"])), draw(st.integers(1_000, 9_000))
        )
        for i in range(draw(st.integers(1, 3)))
    ]
    gaps = [draw(st.integers(0, 60)) for _ in sources]
    options = SplitOptions(
        val=draw(st.sampled_from([0.1, 0.15, 0.2, 0.25])),
        test=draw(st.sampled_from([0.1, 0.15, 0.2])),
        block_seconds=draw(st.sampled_from([0.25, 0.4, 0.5, 0.8])),
        guard_ms=draw(st.sampled_from([0.0, 10.0, 50.0, 100.0])),
        seed=draw(st.integers(0, 1000)),
        holdout=draw(st.sampled_from([(), (("isf", 5.0),)])),
    )
    return sources, gaps, options


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=dataset_cases())
def test_no_val_or_test_sample_near_a_train_sample_at_any_setting(tmp_path_factory, case):
    """Decoded from the files: program frames of val/test audio keep the guard from train audio."""
    sources, gaps, options = case
    root = tmp_path_factory.mktemp("case")
    cap = make_session(root / "cap", rate=RATE, sources=sources, gaps=gaps, settings=SETTINGS)
    try:
        result = build_dataset([cap], root / "data", options)
    except DatasetError as exc:
        assert "too short" in str(exc)
        return
    guard = round(options.guard_ms * RATE / 1000)
    frames: dict[str, np.ndarray] = {}
    for split in SPLITS:
        x, _ = _read(result.folder, split)
        frames[split] = np.unique(decode_input(x[:, 0]))
    train = frames["train"]
    for split in ("val", "test"):
        # Distance from each val/test frame to the nearest train frame.
        index = np.clip(np.searchsorted(train, frames[split]), 1, len(train) - 1)
        nearest = np.minimum(
            np.abs(frames[split] - train[index - 1]), np.abs(frames[split] - train[index])
        )
        assert nearest.min() > guard, split
    near = np.clip(np.searchsorted(frames["val"], frames["test"]), 1, len(frames["val"]) - 1)
    gap = np.minimum(
        np.abs(frames["test"] - frames["val"][near - 1]),
        np.abs(frames["test"] - frames["val"][near]),
    )
    assert gap.min() > guard
    heldout = [p for p in result.manifest.pieces if p.heldout]
    assert all(p.split == "test" and p.knobs == {"isf": 5.0} for p in heldout)
    assert bool(heldout) == bool(options.holdout)


def test_same_seed_gives_byte_identical_files(session, tmp_path):
    options = SplitOptions(block_seconds=1.0, exports=("coreaudioml",))
    a = build_dataset([session], tmp_path / "a" / "demo", options)
    b = build_dataset([session], tmp_path / "b" / "demo", options)
    files_a, files_b = snapshot(a.folder), snapshot(b.folder)
    manifest_a = json.loads(files_a.pop("manifest.json"))
    manifest_b = json.loads(files_b.pop("manifest.json"))
    assert files_a == files_b
    manifest_a.pop("created_at"), manifest_b.pop("created_at")
    assert manifest_a == manifest_b
    # Rebuilding over itself keeps created_at, so then everything is identical.
    before = snapshot(a.folder)
    again = build_dataset([session], tmp_path / "a" / "demo", options)
    assert again.replaced_same and snapshot(a.folder) == before
    other = build_dataset(
        [session], tmp_path / "c" / "demo", SplitOptions(block_seconds=1.0, seed=1)
    )
    assert [bl.split for bl in other.manifest.blocks] != [bl.split for bl in a.manifest.blocks]


def test_sessions_recording_the_same_di_merge_without_leaks(tmp_path):
    first = make_session(
        tmp_path / "day1", rate=RATE, sources=SOURCES, settings=({"isf": 0.0}, {"isf": 10.0})
    )
    # Day two played the same DI files in the other order, at another setting.
    second = make_session(
        tmp_path / "day2", rate=RATE, sources=SOURCES[::-1], settings=({"isf": 5.0},)
    )
    result = build_dataset(
        [first, second], tmp_path / "data" / "both", SplitOptions(block_seconds=1.0)
    )
    manifest = result.manifest
    assert [s["isf"] for s in manifest.settings] == [0.0, 5.0, 10.0]
    by_material: dict[tuple[str, int], set[str]] = {}
    for block in manifest.blocks:
        source = next(
            s
            for s in load_session(first if block.session == 0 else second).program.sources
            if s.name == block.source
        )
        offset = block.start - block.trim_start - source.start
        by_material.setdefault((block.source_sha256, offset), set()).add(block.split)
    assert all(len(splits) == 1 for splits in by_material.values())
    assert {b.session for b in manifest.blocks} == {0, 1}
    assert {p.knobs["isf"] for p in manifest.pieces_of("test")} == {0.0, 5.0, 10.0}


def test_refusals_write_nothing(tmp_path):
    base = make_session(tmp_path / "cap", rate=RATE, sources=SOURCES, settings=SETTINGS)
    out = tmp_path / "data" / "x"
    (tmp_path / "data").mkdir()
    cases: list[tuple[list[Path], SplitOptions, type[AmpcapError], str]] = [
        ([base], SplitOptions(val=0.0), DatasetError, "--val 0.0"),
        ([base], SplitOptions(val=0.5, test=0.5), DatasetError, "leaving nothing to train"),
        ([base], SplitOptions(block_seconds=8.0), DatasetError, "too short"),
        ([base], SplitOptions(block_seconds=0.01), DatasetError, "--block-seconds 0.01"),
        ([base], SplitOptions(guard_ms=-1), DatasetError, "--guard-ms -1"),
        ([base], SplitOptions(holdout=(("gain", 5.0),)), DatasetError, "no knob 'gain'"),
        (
            [base],
            SplitOptions(holdout=(("isf", 7.0),)),
            DatasetError,
            "recorded values are 0, 5, 10",
        ),
        (
            [base],
            SplitOptions(holdout=(("isf", 0.0), ("isf", 5.0), ("isf", 10.0))),
            DatasetError,
            "nothing to train on",
        ),
        ([base, base], SplitOptions(), DatasetError, "given twice"),
        ([tmp_path / "nowhere"], SplitOptions(), SessionError, "no session.json"),
    ]
    for sessions, options, error, text in cases:
        with pytest.raises(error) as info:
            build_dataset(sessions, out, options)
        assert text in str(info.value), str(info.value)
        _nothing_written(tmp_path / "data", out)


def test_unaligned_stale_or_failed_sessions_are_refused(tmp_path):
    out = tmp_path / "data" / "x"
    unaligned = make_session(tmp_path / "u", rate=RATE, sources=SOURCES, settings=SETTINGS)
    (unaligned / "aligned" / "alignment.json").unlink()
    with pytest.raises(SessionError, match=r"Run `ampcap align .*u` first"):
        build_dataset([unaligned], out)

    stale = make_session(tmp_path / "s", rate=RATE, sources=SOURCES, settings=SETTINGS[:2])
    manifest = load_session(stale)
    extra = type(manifest.takes[0])(knobs={"isf": 10.0}, file="takes/isf=10.wav", status="complete")
    save_session(
        stale, manifest.__class__(**{**manifest.__dict__, "takes": manifest.takes + (extra,)})
    )
    with pytest.raises(DatasetError, match="recorded after the session was aligned"):
        build_dataset([stale], out)

    failed = make_session(
        tmp_path / "f",
        rate=RATE,
        sources=SOURCES,
        settings=SETTINGS,
        verdicts=["ok", "failed", "warning"],
        messages=[(), ("Polarity flips between the markers.",), ("SNR is 31 dB.",)],
    )
    with pytest.raises(DatasetError) as info:
        build_dataset([failed], out, SplitOptions(block_seconds=1.0))
    assert "take isf=5 (takes/isf=5.wav): Polarity flips between the markers." in str(info.value)
    assert "--allow-warnings" in str(info.value)
    _nothing_written(tmp_path / "data", out)
    result = build_dataset([failed], out, SplitOptions(block_seconds=1.0, allow_warnings=True))
    assert any("isf=5 although its alignment failed" in n for n in result.notes)
    assert any("SNR is 31 dB." in n for n in result.notes)

    missing = make_session(tmp_path / "m", rate=RATE, sources=SOURCES, settings=SETTINGS)
    (missing / "aligned" / "isf=5.wav").unlink()
    with pytest.raises(DatasetError, match=r"isf=5.wav is missing"):
        build_dataset([missing], tmp_path / "data" / "y")


def test_a_session_changed_after_alignment_and_takes_without_audio(tmp_path):
    retaken = make_session(tmp_path / "r", rate=RATE, sources=SOURCES, settings=SETTINGS)
    manifest = load_session(retaken)
    save_session(retaken, manifest.with_take(1, attempts=2, finished_at="2026-01-02T00:00:00"))
    with pytest.raises(DatasetError, match="changed after it was aligned"):
        build_dataset([retaken], tmp_path / "data" / "x")

    # A take alignment gave up on has no aligned file: refused, or left out on request.
    gave_up = make_session(
        tmp_path / "g",
        rate=RATE,
        sources=SOURCES,
        settings=SETTINGS,
        verdicts=["ok", "ok", "failed"],
        messages=[(), (), ("No start marker found.",)],
    )
    alignment_path = gave_up / "aligned" / "alignment.json"
    document = json.loads(alignment_path.read_text())
    document["takes"][2]["file"] = ""
    alignment_path.write_text(json.dumps(document))
    (gave_up / "aligned" / "isf=10.wav").unlink()
    with pytest.raises(DatasetError, match="No start marker found"):
        build_dataset([gave_up], tmp_path / "data" / "x")
    result = build_dataset(
        [gave_up], tmp_path / "data" / "x", SplitOptions(block_seconds=1.0, allow_warnings=True)
    )
    assert [s["isf"] for s in result.manifest.settings] == [0.0, 5.0]
    assert any("isf=10 is left out" in n for n in result.notes)


def test_mismatched_sessions_are_refused(tmp_path):
    out = tmp_path / "data" / "x"
    a = make_session(tmp_path / "a", rate=RATE, sources=SOURCES, settings=SETTINGS)
    faster = make_session(tmp_path / "b", rate=2 * RATE, sources=SOURCES, settings=SETTINGS)
    with pytest.raises(DatasetError, match="at 2000 Hz but .* at 1000 Hz"):
        build_dataset([a, faster], out)
    gain = make_session(
        tmp_path / "c",
        rate=RATE,
        sources=SOURCES,
        knobs=(Knob("gain", 0.0, 10.0),),
        settings=({"gain": 1.0},),
    )
    with pytest.raises(DatasetError, match=r"has knobs \['gain'\] but"):
        build_dataset([a, gain], out)
    wider = make_session(
        tmp_path / "d",
        rate=RATE,
        sources=SOURCES,
        knobs=(Knob("isf", 0.0, 5.0),),
        settings=({"isf": 1.0},),
    )
    with pytest.raises(DatasetError, match=r"0\.\.5 in .* but 0\.\.10"):
        build_dataset([a, wider], out)
    _nothing_written(tmp_path / "data", out)


def test_out_holding_something_else_is_left_alone(session, tmp_path):
    out = tmp_path / "data" / "demo"
    build_dataset([session], out, SplitOptions(block_seconds=1.0))
    before = snapshot(out)
    with pytest.raises(DatasetError, match="already holds a different dataset"):
        build_dataset([session], out, SplitOptions(block_seconds=1.0, seed=3))
    assert snapshot(out) == before
    other = tmp_path / "data" / "notes"
    other.mkdir()
    (other / "readme.txt").write_text("mine")
    with pytest.raises(DatasetError, match="is not an ampcap dataset"):
        build_dataset([session], other, SplitOptions(block_seconds=1.0))
    assert snapshot(other) == {"readme.txt": b"mine"}


def test_an_interrupted_split_leaves_nothing(session, tmp_path, monkeypatch):
    out = tmp_path / "data" / "demo"

    def interrupt(done: int, total: int) -> None:
        if done > total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_dataset([session], out, SplitOptions(block_seconds=1.0), progress=interrupt)
    _nothing_written(out.parent, out)

    # A failure while the old copy of the same dataset is being replaced keeps the old copy.
    build_dataset([session], out, SplitOptions(block_seconds=1.0))
    before = snapshot(out)

    def broken(tmp: Path, target: Path) -> None:
        raise OSError("disk went away")

    monkeypatch.setattr(split_write, "_replace", broken)
    with pytest.raises(OSError):
        build_dataset([session], out, SplitOptions(block_seconds=1.0))
    assert snapshot(out) == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".demo.")]


def test_two_knobs_give_three_input_channels_that_every_reader_agrees_on(tmp_path):
    knobs = (Knob("gain", 0.0, 10.0), Knob("tone", -5.0, 5.0))
    settings = ({"gain": 2.0, "tone": -5.0}, {"gain": 8.0, "tone": 2.5})
    cap = make_session(tmp_path / "cap", rate=RATE, sources=SOURCES, knobs=knobs, settings=settings)
    result = build_dataset([cap], tmp_path / "data" / "two", SplitOptions(block_seconds=1.0))
    x, _ = _read(result.folder, "train")
    rate, y = wavfile.read(result.folder / "train" / "input.wav")
    assert rate == RATE and y.dtype == np.float32
    np.testing.assert_array_equal(x, y)
    assert x.shape[1] == 3
    for piece in result.manifest.pieces_of("train"):
        rows = slice(piece.offset, piece.offset + piece.length)
        expected = [(piece.knobs["gain"] - 0) / 10, (piece.knobs["tone"] + 5) / 10]
        np.testing.assert_array_equal(x[rows, 1:], np.tile(np.float32(expected), (piece.length, 1)))
    assert set(result.manifest.minutes["train"]) == {"gain=2,tone=-5", "gain=8,tone=2.5"}


def test_write_failures_become_user_errors(tmp_path):
    with pytest.raises(AmpcapError, match="Could not write"):
        WavStreamWriter(tmp_path / "gone" / "input.wav", RATE, 2)
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full to stand for a full disk")
    writer = WavStreamWriter("/dev/full", RATE, 2)
    with pytest.raises(AmpcapError, match="The disk is full"):
        writer.write(np.zeros((1 << 16, 2), dtype=np.float32))
        writer.close()
