"""Every reader of a file a user hands ampcap, fed random bytes, truncations and random headers.

The property: a reader returns what it read or raises :class:`AmpcapError` (the CLI's exit 2
with a message); never any other exception (the CLI's exit 1, "internal error"). The readers
are called in-process for speed, from valid files of each kind that hypothesis damages; a few
CLI runs check the same end to end (exit 2, a message, no traceback).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from export_helpers import make_model, make_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from split_helpers import make_session
from train_helpers import make_dataset

from ampcap.capture import rig as ampcap_rig
from ampcap.errors import AmpcapError
from ampcap.files import audio_info, read_audio, write_audio
from ampcap.schema.alignment import load_alignment
from ampcap.schema.dataset import load_dataset
from ampcap.schema.run import RunManifest, load_metrics, load_run
from ampcap.schema.session import Knob, load_session
from ampcap.train.checkpoint import load_checkpoint
from ampcap.train.export import export_model
from ampcap.train.render import load_any_model

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# Hypothesis runs many examples inside one test, so the files live in one folder made when
# the module is imported (the valid files feed the strategies) and removed when Python exits,
# whether or not a test of the module ran.
SCRATCH = Path(tempfile.mkdtemp(prefix="ampcap-test-readers-"))
atexit.register(shutil.rmtree, SCRATCH, ignore_errors=True)


def _scratch() -> Path:
    """A fresh folder under the module's scratch folder."""
    return Path(tempfile.mkdtemp(dir=SCRATCH))


# --- valid files of each kind, made once ------------------------------------------------------


def _wav_bytes(channels: int, subtype_float: bool) -> bytes:
    folder = _scratch()
    audio = np.sin(np.arange(400) / 7.0).astype(np.float32) * 0.5
    samples = np.stack([audio] * channels, axis=1) if channels > 1 else audio
    path = folder / "x.wav"
    if subtype_float:
        write_audio(path, samples, 8000)
    else:
        import soundfile as sf

        sf.write(str(path), samples, 8000, subtype="PCM_16")
    return path.read_bytes()


WAVS = [_wav_bytes(1, True), _wav_bytes(2, True), _wav_bytes(2, False)]


def _model_files() -> dict[str, bytes]:
    folder = _scratch()
    model = make_model(hidden=4)
    knobs = [Knob("isf", 0.0, 10.0)]
    run = make_run(folder / "run", model, knobs)
    checkpoint = load_checkpoint(run / "model.pt")
    files = {"pt": (run / "model.pt").read_bytes()}
    for fmt, name, setting in (
        ("nam", "m.nam", {"isf": 5.0}),
        ("aidax", "m-aidax.json", None),
        ("proteus", "m-proteus.json", None),
    ):
        export_model(model, checkpoint, fmt, folder / name, setting)
        files[name] = (folder / name).read_bytes()
    return files


MODELS = _model_files()
MODELS_RUN = str(make_run(_scratch() / "run", make_model(hidden=4), [Knob("isf", 0.0, 10.0)]))


def _manifests() -> dict[str, tuple[Path, str]]:
    """A valid folder of each manifest kind: {kind: (folder, manifest file name)}."""
    folder = _scratch()
    session = make_session(folder / "cap")
    data = make_dataset(folder / "data", blocks={"train": 2, "val": 1, "test": 1})
    run = folder / "run"
    run.mkdir()
    manifest = RunManifest(
        schema_version=1,
        ampcap_version="0.1.0",
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
        model_config={"arch": "lstm", "input_size": 2, "hidden_size": 8},
        train_config={"epochs": 2},
        dataset_path=str(data),
        dataset_manifest_sha256="0" * 64,
        sample_rate_hz=8000,
        knobs=({"name": "isf", "minimum": 0.0, "maximum": 10.0},),
    )
    (run / "run.json").write_text(json.dumps(manifest.to_dict()))
    row = {"epoch": 2, "train_loss": 0.5, "seconds": 1.0, "learning_rate": 0.01}
    validation = {**row, "step": 9, "elapsed_s": 2.0, "val_loss": 0.4, "val_esr": 0.3}
    del validation["seconds"]
    setting = {"setting": "isf=5", "knobs": {"isf": 5.0}, "heldout": False, "esr": 0.1}
    setting.update(mr_stft=0.5, loudness_diff_db=-0.2, seconds=2.0)
    metrics = {
        "history": {"epochs": [row], "validations": [validation]},
        "test": {"settings": [setting], "esr": 0.1, "esr_mean": 0.1, "esr_worst": 0.1},
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    return {
        "session": (session, "session.json"),
        "alignment": (session, "aligned/alignment.json"),
        "dataset": (data, "manifest.json"),
        "run": (run, "run.json"),
        "metrics": (run, "metrics.json"),
    }


MANIFESTS = _manifests()
LOADERS = {
    "session": load_session,
    "alignment": load_alignment,
    "dataset": load_dataset,
    "run": load_run,
    "metrics": load_metrics,
}

RIG = """name = "fuzz"
description = "a rig file to damage"
kind = "audio"

[audio]
device = "Scarlett"
sample_rate_hz = 48000
blocksize = 1024
latency = "high"
output_device = 1
output_loopback = 2
input_device = 1
input_loopback = 2

[safety]
max_output_dbfs = -6.0
fade_ms = 20.0

[knobs.tone]
minimum = 0.0
maximum = 10.0
control = "prompt"
"""


# --- ways to damage bytes and documents -------------------------------------------------------


def damaged_bytes(valid: list[bytes]) -> st.SearchStrategy[bytes]:
    """Random bytes, a valid file cut short, or a valid file with bytes overwritten near its
    start (the header) or anywhere."""
    source = st.sampled_from(valid)

    @st.composite
    def truncated(draw: st.DrawFn) -> bytes:
        data = draw(source)
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]

    @st.composite
    def overwritten(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(source))
        header = draw(st.booleans())
        for _ in range(draw(st.integers(1, 6))):
            limit = min(len(data), 80) if header else len(data)
            at = draw(st.integers(0, limit - 1))
            patch = draw(st.binary(min_size=1, max_size=4))
            data[at : at + len(patch)] = patch
        return bytes(data)

    return st.one_of(st.binary(max_size=300), truncated(), overwritten())


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(
        ["../x.wav", "/etc/passwd", "", "takes/isf=0.wav", "a\x00b.wav", "x" * 300, "C:x.wav"]
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(document: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path inside a JSON document."""
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def mutated_document(draw: st.DrawFn, document: Any) -> Any:
    """``document`` with one to three values replaced by random JSON, or keys removed."""
    document = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(document) if p]
        if not paths:
            return draw(JSON_VALUES)
        path = draw(st.sampled_from(paths))
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    return document


def _read_or_refuse(read: Any, *args: Any) -> None:
    """The property: ``read(*args)`` returns, or raises an AmpcapError with a message."""
    try:
        read(*args)
    except AmpcapError as exc:
        assert str(exc).strip()


# --- WAV ----------------------------------------------------------------------------------------


@FUZZ
@given(data=damaged_bytes(WAVS))
def test_wav_readers_return_or_refuse(data: bytes) -> None:
    path = SCRATCH / "fuzz.wav"
    path.write_bytes(data)
    _read_or_refuse(audio_info, path)
    _read_or_refuse(lambda p: read_audio(p, allow_silence=True), path)
    _read_or_refuse(lambda p: read_audio(p, start=100, frames=50), path)


# --- JSON manifests ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(MANIFESTS))
@FUZZ
@given(data=st.data())
def test_manifest_readers_return_or_refuse(kind: str, data: st.DataObject) -> None:
    folder, name = MANIFESTS[kind]
    path = folder / name
    original = path.read_bytes()
    document = json.loads(original)
    raw = data.draw(
        st.one_of(
            damaged_bytes([original]),
            mutated_document(document).map(lambda d: json.dumps(d).encode()),
        )
    )
    try:
        path.write_bytes(raw)
        _read_or_refuse(LOADERS[kind], folder)
    finally:
        path.write_bytes(original)


# --- TOML rig files ------------------------------------------------------------------------------


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=200),
        damaged_bytes([RIG.encode()]).map(lambda b: b.decode("utf-8", "replace")),
        st.builds(
            lambda line, value: RIG.replace(line, line.split("=")[0] + "= " + value),
            st.sampled_from([line for line in RIG.splitlines() if "=" in line]),
            st.sampled_from(['"x"', "-1", "0", "1e400", "nan", "[]", "{}", "true", '""', "99999"]),
        ),
    )
)
def test_rig_reader_returns_or_refuses(text: str) -> None:
    path = SCRATCH / "fuzz-rig.toml"
    path.write_text(text, encoding="utf-8")
    _read_or_refuse(ampcap_rig.loads_rig, text, "rig.toml")
    _read_or_refuse(ampcap_rig.load_rig, path)


# --- model files ----------------------------------------------------------------------------------


@FUZZ
@given(data=damaged_bytes([MODELS["pt"]]))
def test_checkpoint_reader_returns_or_refuses(data: bytes) -> None:
    path = SCRATCH / "fuzz-model.pt"
    path.write_bytes(data)
    _read_or_refuse(load_any_model, path)


@pytest.mark.parametrize("name", ["m.nam", "m-aidax.json", "m-proteus.json"])
@FUZZ
@given(data=st.data())
def test_exported_model_reader_returns_or_refuses(name: str, data: st.DataObject) -> None:
    original = MODELS[name]
    raw = data.draw(
        st.one_of(
            damaged_bytes([original]),
            mutated_document(json.loads(original)).map(lambda d: json.dumps(d).encode()),
        )
    )
    path = SCRATCH / f"fuzz-{name}"
    path.write_bytes(raw)
    _read_or_refuse(load_any_model, path)


# --- end to end -----------------------------------------------------------------------------------


def test_cli_refuses_damaged_files_with_exit_2(cli, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    garbage = rng.integers(0, 256, 700, dtype=np.uint8).tobytes()
    (tmp_path / "riff.wav").write_bytes(WAVS[0][:30] + garbage)
    (tmp_path / "noise.wav").write_bytes(garbage)
    write_audio(tmp_path / "di.wav", np.sin(np.arange(8000) / 5.0).astype(np.float32) * 0.3, 8000)
    (tmp_path / "m.nam").write_bytes(MODELS["m.nam"][: len(MODELS["m.nam"]) // 3])
    nam = json.loads(MODELS["m.nam"])
    nam["weights"] = "lots"
    (tmp_path / "typed.nam").write_text(json.dumps(nam))
    (tmp_path / "m.pt").write_bytes(MODELS["pt"][:-100])
    (tmp_path / "rig.toml").write_text(RIG.replace("sample_rate_hz = 48000", "sample_rate_hz = []"))
    data = make_dataset(tmp_path / "data", blocks={"train": 2, "val": 1, "test": 1})
    (data / "manifest.json").write_text('{"schema_version": 1, "knobs": 3}')
    runs = [
        ("render", "m.nam", "di.wav", "out.wav"),
        ("render", "typed.nam", "di.wav", "out.wav"),
        ("render", "m.pt", "di.wav", "out.wav", "--knob", "isf=5"),
        ("render", MODELS_RUN, "noise.wav", "out.wav", "--knob", "isf=5"),
        ("align", "--input", "riff.wav", "--output", "di.wav"),
        ("record", "--rig", "rig.toml", "--knob", "tone", "--out", "cap", "--yes"),
        ("train", "data", "--out", "run", "--epochs", "1"),
    ]
    for args in runs:
        result = cli(*args, cwd=tmp_path)
        assert result.code == 2, (args, result.output_flat)
        assert "error:" in result.output_flat and "Traceback" not in result.output_flat, (
            args,
            result.output_flat,
        )
    assert not (tmp_path / "out.wav").exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_manifest_fixtures_are_valid() -> None:
    """The control: each undamaged file reads (the fuzz cases start from valid files)."""
    for kind, (folder, _) in MANIFESTS.items():
        LOADERS[kind](folder)
    for name in ("pt", "m.nam", "m-aidax.json", "m-proteus.json"):
        path = _scratch() / (name if name != "pt" else "model.pt")
        path.write_bytes(MODELS[name])
        load_any_model(path)
    ampcap_rig.loads_rig(RIG, "rig.toml")
    assert asdict(audio_info(_write(WAVS[0])))["frames"] == 400


def _write(data: bytes) -> Path:
    path = _scratch() / "x.wav"
    path.write_bytes(data)
    return path


def test_a_checkpoint_whose_zip_record_claims_several_disks_is_refused(tmp_path: Path) -> None:
    """zipfile.is_zipfile raises, instead of answering False, on a ZIP64 locator that says
    the archive spans several disks: the reader must still give its clear refusal."""
    import struct

    from ampcap.errors import ModelFormatError
    from ampcap.train.checkpoint import load_checkpoint

    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, 0, 2)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0, 0, 0, 0, 0)
    path = tmp_path / "model.pt"
    path.write_bytes(b"x" * 10 + locator + end)
    with pytest.raises(ModelFormatError, match="is not a readable checkpoint"):
        load_checkpoint(path)
