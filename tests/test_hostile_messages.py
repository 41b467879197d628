"""Messages that say what was wrong, and exit statuses a script can use.

``--di`` with an unknown kind explains the ``KIND:PATH`` form; a model whose output would be
non-finite or absurdly loud is refused and nothing is written; ``ampcap align`` exits 3 when
some takes failed and the others were aligned, 2 when none could be.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from export_helpers import make_model, make_run
from hostile_helpers import edit_json

from ampcap.files import write_audio
from ampcap.schema.session import Knob
from ampcap.train.checkpoint import load_checkpoint
from ampcap.train.export import export_model

RECORD = ("record", "--rig", "virtual", "--knob", "isf", "--steps", "2", "--yes")


@pytest.mark.parametrize(
    ("spec", "exists", "expected"),
    [
        ("drums:riff.wav", True, ["'drums' is not a kind of DI", "KIND:PATH", "riff.wav exists"]),
        (
            "drums:gone.wav",
            False,
            ["'drums' is not a kind of DI", "gone.wav does not exist either"],
        ),
        ("gone.wav", False, ["gone.wav does not exist", "KIND:PATH", "guitar, bass or other"]),
    ],
)
def test_di_with_an_unknown_kind_explains_the_form(
    cli, tmp_path: Path, spec: str, exists: bool, expected: list[str]
) -> None:
    if exists:
        write_audio(tmp_path / "riff.wav", np.sin(np.arange(8000) / 9.0) * 0.3, 48000)
    result = cli(*RECORD, "--out", "cap", "--di", spec, cwd=tmp_path)
    assert result.code == 2, result.output_flat
    for text in expected:
        assert text in result.output_flat, (text, result.output_flat)
    assert not (tmp_path / "cap").exists()


@pytest.fixture
def nam_file(tmp_path: Path) -> Path:
    model = make_model(hidden=4)
    run = make_run(tmp_path / "run", model, [Knob("isf", 0.0, 10.0)])
    export_model(model, load_checkpoint(run / "model.pt"), "nam", tmp_path / "m.nam", {"isf": 5})
    return tmp_path / "m.nam"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # Every weight x 1e30: the LSTM's sums overflow and the output is not finite.
        (lambda w: [v * 1e30 for v in w], "NaN or infinite samples"),
        # The output bias (the last weight) at 1e4: about +80 dBFS.
        (lambda w: [*w[:-1], 1e4], "a signal peaking at +8"),
    ],
)
def test_render_refuses_absurd_output_and_writes_nothing(
    cli, tmp_path: Path, nam_file: Path, change, expected: str
) -> None:
    edit_json(nam_file, lambda d: d.update(weights=change(d["weights"])))
    write_audio(tmp_path / "di.wav", np.sin(np.arange(48000) / 9.0) * 0.3, 48000)
    result = cli("render", nam_file, "di.wav", "out.wav", cwd=tmp_path)
    assert result.code == 2, result.output_flat
    assert (
        expected in result.output_flat
        and "+40 dBFS" in result.output_flat
        and "Nothing was written" in result.output_flat
    )
    assert not (tmp_path / "out.wav").exists()
    assert not list(tmp_path.glob(".out.wav*"))


def test_render_of_a_sound_model_is_written(cli, tmp_path: Path, nam_file: Path) -> None:
    """The control: the same file unedited renders (the refusals are for the edits)."""
    write_audio(tmp_path / "di.wav", np.sin(np.arange(48000) / 9.0) * 0.3, 48000)
    result = cli("render", nam_file, "di.wav", "out.wav", cwd=tmp_path)
    assert result.code == 0, result.output_flat
    assert (tmp_path / "out.wav").exists()


@pytest.fixture
def session(tmp_path: Path, cli) -> Path:
    result = cli(*RECORD, "--out", "cap", "--di-seconds", "3", cwd=tmp_path)
    assert result.code == 0, result.output_flat
    return tmp_path / "cap"


def _mark_partial(session: Path, *indices: int) -> None:
    def change(document: dict) -> None:
        for index in indices:
            document["takes"][index]["status"] = "partial"

    edit_json(session / "session.json", change)


def test_align_exits_3_when_some_takes_failed(cli, tmp_path: Path, session: Path) -> None:
    _mark_partial(session, 1)
    result = cli("align", "cap", cwd=tmp_path)
    assert result.code == 3, result.output_flat
    assert "1 of 2 take(s) of cap could not be aligned (takes/isf=10.wav)" in result.output_flat
    assert "Traceback" not in result.output_flat
    alignment = json.loads((session / "aligned" / "alignment.json").read_text())
    assert [t["verdict"] != "failed" for t in alignment["takes"]] == [True, False]
    assert (session / "aligned" / "isf=0.wav").exists()
    # A script can go on without the failed take.
    result = cli(
        "split", "cap", "--out", "data", "--allow-warnings", "--block-seconds", "0.5", cwd=tmp_path
    )
    assert result.code == 0, result.output_flat


def test_align_exits_2_when_no_take_could_be_aligned(cli, tmp_path: Path, session: Path) -> None:
    _mark_partial(session, 0, 1)
    result = cli("align", "cap", cwd=tmp_path)
    assert result.code == 2 and "No take of cap could be aligned" in result.output_flat


def test_align_exits_0_when_every_take_aligned_and_help_says_the_statuses(
    cli, tmp_path: Path, session: Path
) -> None:
    result = cli("align", "cap", cwd=tmp_path)
    assert result.code == 0, result.output_flat
    result = cli("align", "--help")
    assert result.code == 0
    assert "3 some takes failed" in result.output_flat and "143 SIGTERM" in result.output_flat
