"""ampcap's ``.nam`` files in NAM's own code: the neural-amp-modeler package from PyPI.

Each file is written by ``ampcap export`` and loaded with ``nam.models.init_from_nam``, NAM's
loader; what NAM plays must match ``ampcap render`` of the same file, and the ``loudness`` and
``gain`` ampcap wrote must be what NAM's own ``_metadata_loudness`` / ``_metadata_gain`` compute
on the loaded model (NAM is a test dependency only; ampcap computes them itself).

Tolerances: 1e-5 between the two renders (both float32; the recurrence contracts, so rounding
stays near 1e-7 per step, while a wrong gate, bias or start state gives errors of 1e-2 and more);
0.1 dB for loudness, which ampcap measures on its own pink noise with the RMS and mean of NAM's
standard input, not on NAM's file (0.03 dB apart on trained models); 0.01 for gain, the same
measurement taken at eleven levels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from export_helpers import (
    GAIN,
    ISF,
    RATE_HZ,
    guitar_audio,
    make_model,
    make_run,
    write_wav,
)

TOLERANCE = 1e-5
LOUDNESS_DB = 0.1
GAIN_TOLERANCE = 0.01
NAM_SILENCE = 48_000
CORE_PREWARM = RATE_HZ // 2  # NeuralAmpModelerCore: half a second of silence on load

CASES = [
    # (id, hidden, knobs, layers, scale, setting)
    ("lstm8", 8, [ISF], 1, 1.0, {"isf": 3.3}),
    ("lstm16-hot", 16, [ISF], 1, 2.0, {"isf": 10.0}),
    ("lstm12-two-knobs", 12, [ISF, GAIN], 1, 1.0, {"isf": 7.5, "gain": 2.0}),
    ("lstm6-two-layers", 6, [], 2, 1.5, {}),
]


@pytest.fixture(scope="module")
def nam_models():
    """NAM's own package (importing it takes several seconds: once per module)."""
    import nam
    from nam.models import init_from_nam

    assert nam.__version__ == "0.13.0"
    return init_from_nam


def nam_plays(loaded, audio: np.ndarray, prewarm: int = 0) -> np.ndarray:
    """NAM's Python model over ``prewarm`` samples of silence then ``audio``; silence dropped."""
    x = torch.from_numpy(np.concatenate([np.zeros(prewarm, dtype=np.float32), audio]))
    loaded.eval()
    with torch.no_grad():
        y = loaded(x)
    return y[prewarm:].double().numpy()


def read(path: Path) -> np.ndarray:
    data, _ = sf.read(path, dtype="float64")
    return data


@pytest.mark.parametrize(
    ("hidden", "knobs", "layers", "scale", "setting"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_nam_loads_the_file_and_plays_what_ampcap_renders(
    nam_models,
    cli,
    tmp_path: Path,
    hidden: int,
    knobs: list,
    layers: int,
    scale: float,
    setting: dict,
) -> None:
    model = make_model("lstm", hidden=hidden, knobs=len(knobs), layers=layers, scale=scale)
    run = make_run(tmp_path / "run", model, knobs)
    path = tmp_path / "m.nam"
    knob_args = [a for name, value in setting.items() for a in ("--knob", f"{name}={value:g}")]
    result = cli("export", run, "--format", "nam", "--out", path, *knob_args)
    assert result.code == 0, result.err
    document = json.loads(path.read_text())
    loaded = nam_models(document)

    di = write_wav(tmp_path / "di.wav", guitar_audio(RATE_HZ, seed=5))
    audio = read(di).astype(np.float32)
    # What a player plays: NAM's core starts from the file's state and prewarms half a second.
    played = tmp_path / "played.wav"
    assert cli("render", path, di, played).code == 0
    np.testing.assert_allclose(read(played), nam_plays(loaded, audio, CORE_PREWARM), atol=TOLERANCE)
    # NAM's Python model starts from the file's state with no prewarm: --warmup 0.
    cold = tmp_path / "cold.wav"
    assert cli("render", path, di, cold, "--warmup", "0").code == 0
    np.testing.assert_allclose(read(cold), nam_plays(loaded, audio), atol=TOLERANCE)

    # The file's start state is the one NAM's exporter computes: 48,000 samples of silence.
    with torch.no_grad():
        hidden_state, cell_state = loaded._get_initial_state()
        np.testing.assert_allclose(loaded._initial_hidden, hidden_state[:, 0], atol=1e-6)
        np.testing.assert_allclose(loaded._initial_cell, cell_state[:, 0], atol=1e-6)
    # Silence plays as silence from the first sample: no start-up transient.
    quiet = nam_plays(loaded, np.zeros(256, dtype=np.float32))
    assert np.max(np.abs(quiet - quiet[-1])) < TOLERANCE

    metadata = document["metadata"]
    assert abs(metadata["loudness"] - loaded._metadata_loudness()) < LOUDNESS_DB
    assert abs(metadata["gain"] - float(loaded._metadata_gain())) < GAIN_TOLERANCE


def test_loudness_follows_the_knob_setting(nam_models, tmp_path: Path) -> None:
    """Each .nam of a knob-conditioned model carries the loudness of its own setting."""
    from ampcap.train.export import write_exports

    model = make_model("lstm", hidden=8, knobs=1, scale=2.0, seed=11)
    run = make_run(tmp_path / "r", model, [ISF])
    paths = write_exports(run, knobs={"isf": 0.0}) + write_exports(run, knobs={"isf": 10.0})
    documents = [json.loads(p.read_text()) for p in paths if p.suffix == ".nam"]
    assert len(documents) == 2
    loudness = [d["metadata"]["loudness"] for d in documents]
    assert abs(loudness[0] - loudness[1]) > 1.0  # the knob changes the level of this model
    for document, value in zip(documents, loudness, strict=True):
        assert abs(value - nam_models(document)._metadata_loudness()) < LOUDNESS_DB
