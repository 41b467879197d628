"""Damaged manifests and edited files: every command that reads them refuses, naming what is wrong.

One real pipeline (record → align → split → train on the virtual rig) is built once; each case
copies it, damages one thing the way a crash, a bad copy or a hand edit would, and runs every
command that reads it. Each must exit 2 with a message naming the file (and the field), print
no traceback, write no output, and leave every existing file as it was.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile_helpers import (
    build_pipeline,
    copy_pipeline,
    edit_json,
    file_hashes,
    nudge_sample,
)

Damage = Callable[[Path], None]

TAKE = "takes/isf=0.wav"
ALIGNED = "aligned/isf=0.wav"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, ampcap_process) -> Path:
    return build_pipeline(tmp_path_factory.mktemp("pipeline"), ampcap_process)


def truncate(relative: str) -> Damage:
    """Cut a JSON file in the middle, as an interrupted copy would."""

    def damage(root: Path) -> None:
        path = root / relative
        text = path.read_text(encoding="utf-8")
        path.write_text(text[: len(text) // 2], encoding="utf-8")

    return damage


def edit(relative: str, change: Callable[[dict], None]) -> Damage:
    return lambda root: edit_json(root / relative, change)


def outside_copy(relative_take: str, manifest: str, set_path: Callable[[dict, str], None]):
    """Put a copy of a real file outside the folder and point the manifest at it with '..'."""

    def damage(root: Path) -> None:
        elsewhere = root / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "x.wav").write_bytes((root / relative_take).read_bytes())
        edit_json(root / manifest, lambda d: set_path(d, "../elsewhere/x.wav"))

    return damage


def absolute(manifest: str, set_path: Callable[[dict, str], None]) -> Damage:
    def damage(root: Path) -> None:
        edit_json(root / manifest, lambda d: set_path(d, str(root / "cap" / TAKE)))

    return damage


def link_out(relative: str) -> Damage:
    """Replace a file by a symbolic link to a copy outside the folder it belongs to."""

    def damage(root: Path) -> None:
        path = root / relative
        (root / "x.wav").write_bytes(path.read_bytes())
        path.unlink()
        os.symlink(root / "x.wav", path)

    return damage


def flip_checkpoint_byte(relative: str) -> Damage:
    """Flip one byte inside the first tensor of a checkpoint (the zip stays readable)."""

    def damage(root: Path) -> None:
        path = root / relative
        with zipfile.ZipFile(path) as archive:
            entry = next(i for i in archive.infolist() if "/data/" in i.filename)
        data = bytearray(path.read_bytes())
        name_length = int.from_bytes(
            data[entry.header_offset + 26 : entry.header_offset + 28], "little"
        )
        extra_length = int.from_bytes(
            data[entry.header_offset + 28 : entry.header_offset + 30], "little"
        )
        data[entry.header_offset + 30 + name_length + extra_length] ^= 0xFF
        path.write_bytes(bytes(data))

    return damage


def _set_take_file(d: dict, value: str) -> None:
    d["takes"][0]["file"] = value


def _set_aligned_file(d: dict, value: str) -> None:
    d["takes"][0]["file"] = value


def _set_split_target(d: dict, value: str) -> None:
    d["splits"]["train"]["target"] = value


# Commands run in the copy's root; each reads the damaged thing.
ALIGN = ("align", "cap")
SPLIT = ("split", "cap", "--out", "data2", "--block-seconds", "0.5")
REPORT_SESSION = ("report", "cap")
TRAIN = ("train", "data", "--out", "run2", "--epochs", "1", "--hidden", "8")
RESUME = ("train", "data", "--out", "run", "--resume", "--epochs", "3")
REPORT_RUN = ("report", "run")
RENDER = ("render", "run", "cap/program.wav", "out.wav", "--knob", "isf=5")
EXPORT = ("export", "run", "--format", "aidax", "--out", "out.json")

SESSION = "cap/session.json"
ALIGNMENT = "cap/aligned/alignment.json"
DATASET = "data/manifest.json"
RUN = "run/run.json"

CASES = [
    # session.json
    ("session: invalid JSON", truncate(SESSION), (ALIGN, SPLIT, REPORT_SESSION), ["session.json"]),
    (
        "session: missing field",
        edit(SESSION, lambda d: d["takes"][0].pop("file")),
        (ALIGN, SPLIT, REPORT_SESSION),
        ["session.json", "takes[0].file", "missing"],
    ),
    (
        "session: wrong type",
        edit(SESSION, lambda d: d["takes"][1].update(frames="many")),
        (ALIGN, SPLIT, REPORT_SESSION),
        ["session.json", "takes[1].frames", "whole number"],
    ),
    (
        "session: program sections not a list",
        edit(SESSION, lambda d: d["program"].update(sections={"preroll": 1})),
        (ALIGN, SPLIT),
        ["session.json", "program.sections", "list"],
    ),
    (
        "session: take path with ..",
        outside_copy(f"cap/{TAKE}", SESSION, _set_take_file),
        (ALIGN, SPLIT, REPORT_SESSION),
        ["session.json", "takes[0].file", "../elsewhere/x.wav", "out of the folder"],
    ),
    (
        "session: absolute take path",
        absolute(SESSION, _set_take_file),
        (ALIGN, SPLIT),
        ["session.json", "takes[0].file", "not a path inside the folder"],
    ),
    (
        "session: take linked outside",
        link_out(f"cap/{TAKE}"),
        (ALIGN, SPLIT),
        ["session.json", "takes[0].file", "link that leads out of the folder"],
    ),
    (
        "session: edited take",
        lambda root: nudge_sample(root / "cap" / TAKE),
        (ALIGN,),
        [TAKE, "session.json", "edited or replaced"],
    ),
    # aligned/alignment.json
    ("alignment: invalid JSON", truncate(ALIGNMENT), (SPLIT, REPORT_SESSION), ["alignment.json"]),
    (
        "alignment: missing field",
        edit(ALIGNMENT, lambda d: d["takes"][0].pop("verdict")),
        (SPLIT, REPORT_SESSION),
        ["alignment.json", "takes[0].verdict", "missing"],
    ),
    (
        "alignment: wrong type",
        edit(ALIGNMENT, lambda d: d["takes"][0].update(knobs=[0])),
        (SPLIT, REPORT_SESSION),
        ["alignment.json", "takes[0].knobs", "object"],
    ),
    (
        "alignment: pair path with ..",
        outside_copy(f"cap/{ALIGNED}", ALIGNMENT, _set_aligned_file),
        (SPLIT, REPORT_SESSION),
        ["alignment.json", "takes[0].file", "out of the folder"],
    ),
    (
        "alignment: edited pair",
        lambda root: nudge_sample(root / "cap" / ALIGNED),
        (SPLIT,),
        [ALIGNED, "alignment.json", "edited or replaced"],
    ),
    # data/manifest.json
    ("dataset: invalid JSON", truncate(DATASET), (TRAIN,), ["manifest.json"]),
    (
        "dataset: missing field",
        edit(DATASET, lambda d: d["splits"]["val"].pop("frames")),
        (TRAIN,),
        ["manifest.json", "splits.val.frames", "missing"],
    ),
    (
        "dataset: wrong type",
        edit(DATASET, lambda d: d.update(sample_rate_hz="48k")),
        (TRAIN,),
        ["manifest.json", "sample_rate_hz", "whole number"],
    ),
    (
        "dataset: split file with ..",
        outside_copy("data/train/target.wav", DATASET, _set_split_target),
        (TRAIN,),
        ["manifest.json", "splits.train.target", "out of the folder"],
    ),
    (
        "dataset: edited target",
        lambda root: nudge_sample(root / "data/train/target.wav"),
        (TRAIN,),
        ["train/target.wav", "manifest.json", "edited or replaced"],
    ),
    # run/run.json and the run's checkpoints
    ("run: invalid JSON", truncate(RUN), (REPORT_RUN, RESUME), ["run.json"]),
    (
        "run: missing field",
        edit(RUN, lambda d: d.pop("model_config")),
        (REPORT_RUN, RESUME),
        ["run.json", "model_config", "missing"],
    ),
    (
        "run: wrong type",
        edit(RUN, lambda d: d.update(status=3)),
        (REPORT_RUN, RESUME),
        ["run.json", "status", "text"],
    ),
    (
        "run: edited model.pt",
        flip_checkpoint_byte("run/model.pt"),
        (RENDER, EXPORT),
        ["model.pt", "damaged", "CRC-32"],
    ),
    (
        "run: edited last.pt",
        flip_checkpoint_byte("run/checkpoints/last.pt"),
        (RESUME,),
        ["last.pt", "damaged", "CRC-32"],
    ),
]


@pytest.mark.parametrize(
    ("damage", "commands", "expected"),
    [pytest.param(d, c, e, id=name) for name, d, c, e in CASES],
)
def test_damaged_input_is_refused_naming_file_and_field(
    cli,
    pipeline: Path,
    tmp_path: Path,
    damage: Damage,
    commands: tuple[tuple[str, ...], ...],
    expected: list[str],
) -> None:
    root = copy_pipeline(pipeline, tmp_path / "copy")
    damage(root)
    before = file_hashes(root)
    for command in commands:
        result = cli(*command, cwd=root)
        assert result.code == 2, (command, result.output_flat)
        assert result.output_flat.startswith("error:") or " error: " in result.output_flat, (
            command,
            result.output_flat,
        )
        for text in expected:
            assert text in result.output_flat, (command, text, result.output_flat)
        assert "Traceback" not in result.output_flat and "Error(" not in result.output_flat, (
            result.output_flat
        )
        after = file_hashes(root)
        assert after == before, (command, set(after.items()) ^ set(before.items()))
    for made in ("data2", "run2", "out.wav", "out.json"):
        assert not (root / made).exists()


def test_the_undamaged_copy_is_accepted(cli, pipeline: Path, tmp_path: Path) -> None:
    """The control: the same commands on an undamaged copy succeed (the cases above fail for
    the damage, not for the copy)."""
    root = copy_pipeline(pipeline, tmp_path / "copy")
    for command in (ALIGN, SPLIT, RENDER, EXPORT):
        result = cli(*command, cwd=root)
        assert result.code == 0, (command, result.output_flat)
    manifest = json.loads((root / "data2" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["target_sha256"]
    session = json.loads((root / SESSION).read_text())
    assert all(len(take["sha256"]) == 64 for take in session["takes"])
