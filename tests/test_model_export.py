"""Each exporter's round trip: write the file, run it with a numpy reference, compare to torch.

The reference inference (``export_reference.py``) reads the JSON a player reads and steps the
equations of the format's description; it shares no code with the exporters. Tolerance 1e-5:
the torch model runs in float32 (rounding ~1e-7 per operation, a few thousand steps of a
contracting recurrence), the reference in float64; a wrong gate order, a wrong transpose or a
knob folded with the wrong sign gives errors of 1e-2 and more.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from export_helpers import (
    GAIN,
    ISF,
    RATE_HZ,
    guitar_audio,
    make_dataset_manifest,
    make_model,
    make_run,
    torch_output,
)
from export_reference import aidax_reference, nam_reference, proteus_reference

from ampcap.errors import ModelFormatError, UsageError
from ampcap.train.export import export_model, write_exports
from ampcap.train.formats import read_exported
from ampcap.train.nam import NAM_VERSION, NamMetadata
from ampcap.train.weights import fold_knobs, weights_from_model

TOLERANCE = 1e-5
AUDIO = guitar_audio(3000)
NAM_SILENCE = 48_000  # a .nam file starts from the state after this much silence


def checkpoint_for(knobs) -> dict:
    return {
        "knobs": [{"name": k.name, "minimum": k.minimum, "maximum": k.maximum} for k in knobs],
        "sample_rate_hz": RATE_HZ,
    }


def max_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)))


@pytest.mark.parametrize("isf", [0.0, 3.3, 10.0])
def test_nam_folds_the_knob_into_the_bias_at_each_setting(tmp_path: Path, isf: float) -> None:
    model = make_model("lstm", hidden=8, knobs=1)
    path = tmp_path / "m.nam"
    export_model(model, checkpoint_for([ISF]), "nam", path, {"isf": isf})
    expected = torch_output(model, AUDIO, [ISF.normalise(isf)], silence=NAM_SILENCE)
    got = nam_reference(path, AUDIO)
    assert max_error(got, expected) < TOLERANCE
    # The knob matters for this model: the setting really changed what the file plays.
    other = torch_output(model, AUDIO, [1.0 - ISF.normalise(isf)], silence=NAM_SILENCE)
    assert max_error(got, other) > 1e-2


def test_nam_two_layers_two_knobs(tmp_path: Path) -> None:
    model = make_model("lstm", hidden=6, knobs=2, layers=2, seed=3)
    path = tmp_path / "m.nam"
    export_model(model, checkpoint_for([ISF, GAIN]), "nam", path, {"isf": 7.5, "gain": 2.0})
    expected = torch_output(model, AUDIO, [0.75, 0.25], silence=NAM_SILENCE)
    assert max_error(nam_reference(path, AUDIO), expected) < TOLERANCE


def test_nam_file_layout_and_metadata(tmp_path: Path) -> None:
    model = make_model("lstm", hidden=8, knobs=0)
    path = tmp_path / "m.nam"
    metadata = NamMetadata(
        name="HT-1 isf 3.3",
        modeled_by="me",
        gear_make="Blackstar",
        gear_model="HT-1",
        gear_type="amp",
        tone_type="hi_gain",
    )
    export_model(model, checkpoint_for([]), "nam", path, {}, metadata)
    doc = json.loads(path.read_text())
    assert doc["version"] == NAM_VERSION and doc["version"].startswith("0.5.")
    assert doc["architecture"] == "LSTM"
    assert doc["config"] == {"input_size": 1, "hidden_size": 8, "num_layers": 1}
    assert doc["sample_rate"] == RATE_HZ
    hidden = 8
    assert len(doc["weights"]) == 4 * hidden * (1 + hidden) + 4 * hidden + 2 * hidden + hidden + 1
    meta = doc["metadata"]
    assert meta["gear_type"] == "amp" and meta["tone_type"] == "hi_gain"
    assert meta["modeled_by"] == "me" and meta["name"] == "HT-1 isf 3.3"
    assert set(meta["date"]) == {"year", "month", "day", "hour", "minute", "second"}
    # The initial hidden and cell state are the state after 48,000 samples of silence, as NAM's
    # exporter writes them: not zeros, and a file that starts there plays silence as silence.
    start = 4 * hidden * (1 + hidden) + 4 * hidden
    initial = np.asarray(doc["weights"][start : start + 2 * hidden])
    with torch.no_grad():
        _, (h, c) = model.rec(torch.zeros(1, NAM_SILENCE, 1))
    np.testing.assert_allclose(initial, torch.cat([h[0, 0], c[0, 0]]).numpy(), atol=1e-6)
    assert np.max(np.abs(initial)) > 1e-2
    # NAM's loudness (dB) and gain (0-1) for this setting; checked against NAM's own code in
    # test_nam_interop.py.
    assert -60 < meta["loudness"] < 20 and 0.0 <= meta["gain"] <= 1.0


@pytest.mark.parametrize(
    ("unit", "skip", "hidden"), [("LSTM", True, 8), ("LSTM", False, 40), ("GRU", True, 8)]
)
def test_proteus_keeps_the_knob_as_an_input(
    tmp_path: Path, unit: str, skip: bool, hidden: int
) -> None:
    model = make_model(unit.lower(), hidden=hidden, knobs=1, skip=skip, seed=1)
    path = tmp_path / "m.json"
    result = export_model(model, checkpoint_for([ISF]), "proteus", path)
    doc = json.loads(path.read_text())
    assert doc["model_data"]["input_size"] == 2
    assert doc["model_data"]["unit_type"] == unit
    assert doc["model_data"]["skip"] == int(skip)
    for knob in (0.0, 0.41, 1.0):
        expected = torch_output(model, AUDIO, [knob])
        assert max_error(proteus_reference(path, AUDIO, [knob]), expected) < TOLERANCE
    # The warning about the Proteus player's fixed shape appears exactly when it applies.
    warned = any("hidden size 40 and always adds the input" in w for w in result.warnings)
    assert warned == (hidden != 40 or not skip)
    # What Proteus does to every conditioned model trained at another rate than 44.1 kHz.
    assert any("runs every model at 44100 Hz" in w and "8000 Hz" in w for w in result.warnings)
    assert any("boosts the input 1.5x (+3.5 dB)" in w for w in result.warnings)


def test_proteus_warnings_say_what_the_player_does() -> None:
    from ampcap.train.proteus import proteus_warnings

    two_knobs = weights_from_model(make_model("lstm", hidden=40, knobs=2, skip=True), ["a", "b"])
    notes = proteus_warnings(two_knobs, 44100)
    # At 44.1 kHz with hidden 40 and skip only the knob count and the input boost remain.
    assert len(notes) == 2
    assert "wires one knob" in notes[1] and "Fold all knobs but one" in notes[1]
    one_knob = fold_knobs(two_knobs, {"b": 0.5})
    assert [n for n in proteus_warnings(one_knob, 44100) if "one knob" in n] == []
    no_knob = fold_knobs(one_knob, {"a": 0.5})
    assert proteus_warnings(no_knob, 44100) == []
    assert "factor 0.919" in proteus_warnings(no_knob, 48000)[0]


def test_proteus_with_the_knob_folded(tmp_path: Path) -> None:
    model = make_model("lstm", hidden=8, knobs=2, skip=True, seed=2)
    path = tmp_path / "m.json"
    export_model(model, checkpoint_for([ISF, GAIN]), "proteus", path, {"gain": 4.0})
    doc = json.loads(path.read_text())
    assert doc["model_data"]["input_size"] == 2  # audio + isf; gain is folded
    expected = torch_output(model, AUDIO, [0.2, 0.75])
    assert max_error(proteus_reference(path, AUDIO, [0.2]), expected) < TOLERANCE


@pytest.mark.parametrize(
    ("arch", "skip", "layers", "hidden"),
    [("lstm", False, 1, 16), ("lstm", True, 2, 8), ("gru", False, 1, 12), ("gru", True, 2, 8)],
)
def test_aidax_round_trip(tmp_path: Path, arch: str, skip: bool, layers: int, hidden: int) -> None:
    model = make_model(arch, hidden=hidden, knobs=2, layers=layers, skip=skip, seed=4)
    path = tmp_path / "m.json"
    result = export_model(model, checkpoint_for([ISF, GAIN]), "aidax", path)
    doc = json.loads(path.read_text())
    assert doc["in_shape"] == [None, None, 3]
    assert doc["in_skip"] == int(skip)
    assert doc["metadata"]["samplerate"] == RATE_HZ
    assert [layer["type"] for layer in doc["layers"]] == [arch] * layers + ["dense"]
    gates = 4 if arch == "lstm" else 3
    assert np.shape(doc["layers"][0]["weights"][0]) == (3, gates * hidden)
    assert np.shape(doc["layers"][0]["weights"][1]) == (hidden, gates * hidden)
    for knobs in ([0.0, 1.0], [0.6, 0.3]):
        expected = torch_output(model, AUDIO, knobs)
        assert max_error(aidax_reference(path, AUDIO, knobs), expected) < TOLERANCE
    # AIDA-X plays at the host's rate, so every file says which rate to set.
    assert "set the host (or MOD device) to 8000 Hz" in result.warnings[0]
    # 8, 12 and 16 are sizes the players support; only a stack of two layers is warned about.
    others = result.warnings[1:]
    assert [("recurrent layers" in w) for w in others] == ([True] if layers > 1 else [])


def test_aidax_folded_and_unsupported_hidden_size_warns(tmp_path: Path) -> None:
    model = make_model("gru", hidden=10, knobs=1, seed=5)
    path = tmp_path / "m.json"
    result = export_model(model, checkpoint_for([ISF]), "aidax", path, {"isf": 6.0})
    assert json.loads(path.read_text())["in_shape"] == [None, None, 1]
    expected = torch_output(model, AUDIO, [0.6])
    assert max_error(aidax_reference(path, AUDIO, []), expected) < TOLERANCE
    assert any("hidden sizes 8, 12" in w and "has 10" in w for w in result.warnings)


def test_folding_is_exact_in_the_arrays() -> None:
    model = make_model("lstm", hidden=4, knobs=2, seed=6)
    weights = weights_from_model(model, ["isf", "gain"])
    folded = fold_knobs(weights, {"gain": 0.5})
    first, original = folded.layers[0], weights.layers[0]
    assert folded.knob_inputs == ("isf",)
    assert first.weight_ih.shape == (16, 2)
    np.testing.assert_allclose(first.weight_ih, original.weight_ih[:, :2])
    np.testing.assert_allclose(first.bias_ih, original.bias_ih + 0.5 * original.weight_ih[:, 2])


@pytest.mark.parametrize("fmt", ["nam", "proteus", "aidax"])
def test_read_back_builds_the_same_model(tmp_path: Path, fmt: str) -> None:
    from ampcap.train.weights import model_from_weights

    model = make_model("lstm", hidden=8, knobs=1, seed=7)
    path = tmp_path / ("m.nam" if fmt == "nam" else "m.json")
    setting = {"isf": 2.5} if fmt == "nam" else {}
    export_model(model, checkpoint_for([ISF]), fmt, path, setting)
    exported = read_exported(path)
    assert exported.format == fmt and exported.sample_rate_hz == RATE_HZ
    rebuilt = model_from_weights(exported.weights)
    if fmt == "nam":
        assert exported.folded_knobs == {"isf": 2.5} and exported.knobs == ()
        # The warmed-up start state is read back too (rendering starts there).
        assert len(exported.weights.initial_state) == 1
        got = torch_output(rebuilt, AUDIO, [])
    else:
        assert [k.name for k in exported.knobs] == ["isf"]
        got = torch_output(rebuilt, AUDIO, [0.25])
    assert max_error(got, torch_output(model, AUDIO, [0.25])) < TOLERANCE


# --- refusals --------------------------------------------------------------------------------


def test_gru_to_nam_is_refused_with_what_to_use(tmp_path: Path) -> None:
    model = make_model("gru", knobs=1)
    with pytest.raises(ModelFormatError, match=r"GRU cannot be written as \.nam.*--format aidax"):
        export_model(model, checkpoint_for([ISF]), "nam", tmp_path / "m.nam", {"isf": 1.0})
    assert not (tmp_path / "m.nam").exists()


def test_skip_to_nam_is_refused_with_what_to_use(tmp_path: Path) -> None:
    model = make_model("lstm", knobs=1, skip=True)
    with pytest.raises(ModelFormatError, match=r"skip connection.*--format proteus"):
        export_model(model, checkpoint_for([ISF]), "nam", tmp_path / "m.nam", {"isf": 1.0})


def test_wavenet_has_no_player_format(tmp_path: Path) -> None:
    from ampcap.train.model import build_model, make_config

    model = build_model(make_config("wavenet", 2)).eval()
    with pytest.raises(ModelFormatError, match="LSTM and GRU models only"):
        export_model(model, checkpoint_for([ISF]), "aidax", tmp_path / "m.json")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"isf": 10.5}, r"isf=10\.5 is outside the knob's range 0\.\.10"),
        ({"isf": -1.0}, r"outside the knob's range 0\.\.10"),
        ({"drive": 1.0}, r"no knob 'drive'; its knobs are: isf \(0\.\.10\)"),
        ({}, r"--knob isf=VALUE \(0\.\.10\)"),
    ],
)
def test_bad_knob_values_are_refused(tmp_path: Path, setting: dict, message: str) -> None:
    model = make_model("lstm", knobs=1)
    with pytest.raises(UsageError, match=message):
        export_model(model, checkpoint_for([ISF]), "nam", tmp_path / "m.nam", setting)


def test_nam_metadata_types_are_checked() -> None:
    with pytest.raises(UsageError, match="gear_type 'guitar'.*amp, pedal"):
        NamMetadata(gear_type="guitar")


def test_damaged_files_are_refused_naming_the_array(tmp_path: Path) -> None:
    model = make_model("lstm", hidden=8, knobs=0)
    path = tmp_path / "m.json"
    export_model(model, checkpoint_for([]), "proteus", path)
    doc = json.loads(path.read_text())
    doc["state_dict"]["rec.weight_hh_l0"] = doc["state_dict"]["rec.weight_hh_l0"][:-1]
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelFormatError, match=r"rec\.weight_hh_l0 has shape \(31, 8\)"):
        read_exported(path)
    path.write_text('{"hello": 1}')
    with pytest.raises(ModelFormatError, match="none of the model layouts"):
        read_exported(path)
    nam = tmp_path / "m.nam"
    export_model(model, checkpoint_for([]), "nam", nam)
    doc = json.loads(nam.read_text())
    doc["weights"] = doc["weights"][:-3]
    nam.write_text(json.dumps(doc))
    with pytest.raises(ModelFormatError, match="needs 345"):
        read_exported(nam)


# --- write_exports at the end of training ----------------------------------------------------


def test_write_exports_one_nam_per_dataset_setting(tmp_path: Path) -> None:
    data = make_dataset_manifest(
        tmp_path / "data", [ISF], [{"isf": 0.0}, {"isf": 10.0}], heldout=[{"isf": 5.0}]
    )
    model = make_model("lstm", hidden=8, knobs=1)
    run = make_run(tmp_path / "runs" / "demo", model, [ISF], data)
    notes: list[str] = []
    paths = write_exports(run, warn=notes.append)
    names = sorted(p.name for p in paths)
    assert names == [
        "demo-aidax.json",
        "demo-isf=0.nam",
        "demo-isf=10.nam",
        "demo-isf=5.nam",
        "demo-proteus.json",
    ]
    assert all(p.parent == run / "exports" for p in paths)
    expected = torch_output(model, AUDIO, [0.5], silence=NAM_SILENCE)
    assert max_error(nam_reference(run / "exports" / "demo-isf=5.nam", AUDIO), expected) < TOLERANCE
    index = json.loads((run / "exports" / "index.json").read_text())
    assert {f["file"] for f in index["files"]} == set(names)
    assert any("Proteus" in n for n in notes)  # hidden 8 without skip


def test_write_exports_centre_without_dataset_and_explicit_knobs(tmp_path: Path) -> None:
    model = make_model("lstm", hidden=8, knobs=1)
    run = make_run(tmp_path / "r", model, [ISF])
    assert "r-isf=5.nam" in {p.name for p in write_exports(run)}
    explicit = write_exports(run, knobs={"isf": 2.0})
    assert {p.name for p in explicit} == {
        "r-isf=2.nam",
        "r-isf=2-proteus.json",
        "r-isf=2-aidax.json",
    }


def test_write_exports_gru_skips_nam_and_says_why(tmp_path: Path) -> None:
    model = make_model("gru", hidden=8, knobs=0)
    run = make_run(tmp_path / "g", model, [])
    paths = write_exports(run)
    assert sorted(p.name for p in paths) == ["g-aidax.json", "g-proteus.json"]
    index = json.loads((run / "exports" / "index.json").read_text())
    assert index["skipped"][0]["format"] == "nam" and "GRU" in index["skipped"][0]["reason"]


def test_write_exports_reads_the_dataset_named_in_run_json(tmp_path: Path) -> None:
    data = make_dataset_manifest(tmp_path / "d", [ISF], [{"isf": 2.5}, {"isf": 7.5}])
    run = make_run(tmp_path / "x", make_model("lstm", hidden=8, knobs=1), [ISF])
    (run / "run.json").write_text(json.dumps({"dataset_path": str(data)}))
    names = {p.name for p in write_exports(run)}
    assert {"x-isf=2.5.nam", "x-isf=7.5.nam"} <= names and "x-isf=5.nam" not in names
