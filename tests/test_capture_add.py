"""`ampcap record --add-settings / --plan-file`: more takes into a session that exists."""

from __future__ import annotations

import json
from pathlib import Path

from capture_helpers import record_args

from ampcap.files import read_audio
from ampcap.schema.dataset import load_dataset
from ampcap.schema.session import load_session


def _blocks_and_audio(data: Path, setting: dict[str, float]) -> tuple[list, list]:
    """Each block's split and extent, and the setting's test target audio, piece by piece."""
    manifest = load_dataset(data)
    blocks = [(b.id, b.split, b.start, b.length) for b in manifest.blocks]
    target, _ = read_audio(data / "test" / "target.wav")
    pieces = [p for p in manifest.pieces_of("test") if p.knobs == setting]
    return blocks, [target[p.offset : p.offset + p.length].tobytes() for p in pieces]


def test_added_takes_join_the_session_and_leave_the_old_splits_alone(tmp_path, cli) -> None:
    session = tmp_path / "s"
    assert cli(*record_args(session, seconds="4")).code == 0
    old = {t.file: (t.sha256, t.frames) for t in load_session(session).takes}
    assert cli("align", session).code == 0
    assert (
        cli(
            "split", session, "--out", tmp_path / "d3", "--seed", "0", "--block-seconds", "0.5"
        ).code
        == 0
    )

    plan = tmp_path / "plan.json"
    assert cli("plan", session, "--add", "2", "--out", plan).code == 0
    added = cli("record", "--rig", "virtual", "--out", session, "--plan-file", plan, "--yes")
    assert added.code == 0, added.err
    takes = load_session(session).takes
    # Appended in the plan's order (the largest gap first), after the takes recorded before.
    assert [t.knobs["isf"] for t in takes[:3]] == [0.0, 5.0, 10.0]
    assert sorted(t.knobs["isf"] for t in takes[3:]) == [2.5, 7.5]
    assert all(t.status == "complete" for t in takes)
    # The takes already recorded are the same files, untouched.
    assert {t.file: (t.sha256, t.frames) for t in takes[:3]} == old

    # A split made before the new takes were aligned is refused with what to do.
    stale = cli("split", session, "--out", tmp_path / "stale")
    assert stale.code == 2 and "ampcap align" in stale.err_flat
    assert cli("align", session).code == 0
    assert (
        cli(
            "split", session, "--out", tmp_path / "d5", "--seed", "0", "--block-seconds", "0.5"
        ).code
        == 0
    )
    for setting in ({"isf": 0.0}, {"isf": 5.0}, {"isf": 10.0}):
        assert _blocks_and_audio(tmp_path / "d3", setting) == _blocks_and_audio(
            tmp_path / "d5", setting
        )
    assert {"isf": 7.5} in [p.knobs for p in load_dataset(tmp_path / "d5").pieces]

    # The same command again records nothing new and says why.
    again = cli(
        "record", "--rig", "virtual", "--out", session, "--add-settings", "isf=2.5", "--yes"
    )
    assert again.code == 0
    assert "isf=2.5 is already recorded" in again.err_flat
    assert len(load_session(session).takes) == 5


def test_adding_refuses_what_would_not_match_the_session(tmp_path, cli) -> None:
    session = tmp_path / "s"
    assert cli(*record_args(session, seconds="3")).code == 0
    before = (session / "session.json").read_bytes()
    cases = [
        (("--add-settings", "gain=3"), "does not name the session's knobs (isf)"),
        (("--add-settings", "isf=12"), "isf=12 is outside the session's range for isf, 0..10"),
        (("--add-settings", "isf"), "is not KNOB=VALUE"),
        (("--add-settings", "isf=3", "--steps", "4"), "--steps cannot be used with --add-settings"),
        (("--plan-file", session / "session.json"), "holds no settings to add"),
    ]
    for extra, message in cases:
        result = cli("record", "--rig", "virtual", "--out", session, *extra, "--yes")
        assert result.code == 2, (extra, result.err)
        assert message in result.err_flat, (extra, result.err_flat)
    empty = tmp_path / "empty"
    result = cli("record", "--rig", "virtual", "--out", empty, "--add-settings", "isf=3", "--yes")
    assert result.code == 2 and "holds no session to add takes to" in result.err_flat
    # program.wav that is not the session's own: new takes would not match the old ones.
    (session / "program.wav").write_bytes(b"RIFF")
    result = cli("record", "--rig", "virtual", "--out", session, "--add-settings", "isf=3", "--yes")
    assert result.code == 2 and "no longer the program the session's takes played" in (
        result.err_flat
    )
    assert (session / "session.json").read_bytes() == before
    assert json.loads(before)["takes"][-1]["knobs"] == {"isf": 10.0}
