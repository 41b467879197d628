"""Exports: the CoreAudioML/GuitarML layout and per-setting Neural Amp Modeler pairs."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.io import wavfile
from split_helpers import SourceSpec, decode_input, make_session

from ampcap.dataset.split_write import SplitOptions, build_dataset
from ampcap.wavstream import WavStreamWriter

RATE = 1000
SOURCES = (SourceSpec("gtr.wav", "guitar", 12_000), SourceSpec("bass.wav", "bass", 8_000))
KNOB_SETTINGS = ({"isf": 0.0}, {"isf": 5.0}, {"isf": 10.0})


@pytest.fixture
def dataset(tmp_path: Path):
    cap = make_session(tmp_path / "cap", rate=RATE, sources=SOURCES, settings=KNOB_SETTINGS)
    options = SplitOptions(
        block_seconds=1.0, holdout=(("isf", 5.0),), exports=("coreaudioml", "nam")
    )
    return build_dataset([cap], tmp_path / "data" / "ht1", options)


def test_coreaudioml_layout_reads_with_scipy_as_its_trainers_do(dataset):
    folder, manifest = dataset.folder, dataset.manifest
    assert manifest.exports["coreaudioml"] == "Data"
    for split in ("train", "val", "test"):
        rate, x = wavfile.read(folder / "Data" / split / "ht1-input.wav")
        _, y = wavfile.read(folder / "Data" / split / "ht1-target.wav")
        assert rate == RATE and x.dtype == np.float32 and y.dtype == np.float32
        assert x.shape == (manifest.splits[split].frames, 2)  # audio + one knob
        assert y.shape == (manifest.splits[split].frames,)  # mono
        ours, _ = sf.read(str(folder / split / "input.wav"), dtype="float32", always_2d=True)
        np.testing.assert_array_equal(x, ours)
        assert set(np.unique(x[:, 1])) <= {np.float32(0.0), np.float32(0.5), np.float32(1.0)}


def test_nam_pairs_per_setting_are_mono_24_bit_and_keep_the_splits(dataset):
    folder, manifest = dataset.folder, dataset.manifest
    nam = folder / manifest.exports["nam"]
    assert sorted(p.name for p in nam.iterdir()) == ["isf=0", "isf=10", "isf=5"]
    for label, knobs in (("isf=0", {"isf": 0.0}), ("isf=10", {"isf": 10.0})):
        config = json.loads((nam / label / "data.json").read_text())
        assert config["common"] == {"delay": 0}
        assert config["train"]["ny"] == 8192 and config["validation"]["ny"] is None
        frames = {}
        for nam_split, split in (("train", "train"), ("validation", "val"), ("test", "test")):
            if nam_split != "test":
                assert (
                    Path(config[nam_split]["x_path"])
                    == (nam / label / f"{nam_split}-input.wav").resolve()
                )
            x_path, y_path = (nam / label / f"{nam_split}-{end}.wav" for end in ("input", "output"))
            with wave.open(str(x_path)) as handle:  # what NAM's reader is built on
                assert (handle.getnchannels(), handle.getsampwidth(), handle.getframerate()) == (
                    1,
                    3,
                    RATE,
                )
            x, _ = sf.read(str(x_path), dtype="float32")
            y, _ = sf.read(str(y_path), dtype="float32")
            pieces = [p for p in manifest.pieces_of(split) if p.knobs == knobs]
            assert len(x) == len(y) == sum(p.length for p in pieces)
            ours, _ = sf.read(str(folder / split / "input.wav"), dtype="float32")
            expected = np.concatenate([ours[p.offset : p.offset + p.length, 0] for p in pieces])
            np.testing.assert_allclose(x, expected, atol=2.0**-23)
            np.testing.assert_allclose(y, expected / (2 if knobs["isf"] == 0 else 8), atol=2.0**-23)
            frames[nam_split] = set(decode_input(x).tolist())
        assert not frames["train"] & frames["validation"]
        assert not frames["train"] & frames["test"]
    # The held-out setting has only test audio, and no training configuration.
    assert sorted(p.name for p in (nam / "isf=5").iterdir()) == [
        "test-input.wav",
        "test-output.wav",
    ]
    assert any("NAM's trainer assumes 48000 Hz" in note for note in dataset.notes)


def test_nam_export_warns_about_outputs_that_reach_full_scale(tmp_path):
    cap = make_session(tmp_path / "cap", rate=RATE, sources=SOURCES, settings=KNOB_SETTINGS[:1])
    loud = cap / "aligned" / "isf=0.wav"
    data, rate = sf.read(str(loud), dtype="float32")
    data[:, 1] = np.where(np.arange(len(data)) % 2, 1.5, -1.5)  # far past full scale
    with WavStreamWriter(loud, rate, 2) as out:
        out.write(data)
    result = build_dataset(
        [cap], tmp_path / "data" / "loud", SplitOptions(block_seconds=1.0, exports=("nam",))
    )
    assert any("peaks at +3.5 dBFS" in note and "refuses outputs" in note for note in result.notes)
    y, _ = sf.read(str(result.folder / "nam" / "isf=0" / "train-output.wav"), dtype="float64")
    assert np.max(np.abs(y)) < 1.0  # clipped symmetrically, never exactly -1.0
