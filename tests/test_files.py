"""ampcap.files: WAV writing is atomic and deterministic, and reads back exactly."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from ampcap.errors import AmpcapError
from ampcap.files import read_audio, write_audio


@pytest.mark.parametrize("shape", [(4800,), (4800, 2), (4800, 3)])
def test_write_audio_reads_back_exactly(tmp_path, shape):
    samples = np.random.default_rng(0).uniform(-0.9, 0.9, shape).astype(np.float32)
    path = tmp_path / "a.wav"
    write_audio(path, samples, 44100)
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (
        44100,
        1 if len(shape) == 1 else shape[1],
        shape[0],
        "FLOAT",
    )
    back, rate = read_audio(path)
    assert rate == 44100
    np.testing.assert_array_equal(back, samples.reshape(shape[0], -1))


def test_write_audio_gives_the_same_bytes_for_the_same_samples(tmp_path):
    # libsndfile stamps the time of writing into float WAVs; ampcap's files must not differ.
    samples = np.random.default_rng(1).uniform(-0.5, 0.5, (48000, 2)).astype(np.float32)
    write_audio(tmp_path / "first.wav", samples, 48000)
    time.sleep(1.1)
    write_audio(tmp_path / "second.wav", samples, 48000)
    assert (tmp_path / "first.wav").read_bytes() == (tmp_path / "second.wav").read_bytes()


def test_write_audio_leaves_no_partial_file_when_it_cannot_write(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(AmpcapError, match="Could not write"):
        write_audio(blocker / "out.wav", np.zeros(100, dtype=np.float32), 48000)
    assert blocker.read_text() == "not a folder"
