"""Every command against outputs that cannot or must not be written, through the real CLI.

One table walks each command through: an output folder that lies under a regular file, a
read-only output (a read-only bind mount), a full disk (a tiny tmpfs), an output that is one of
its inputs (or a model, checkpoint, manifest, take or split that ampcap keeps), a second writer
while another holds the folder's lock, nan/inf/negative numeric options, and names with
[brackets] that a markup console would eat. ``rigs`` and ``rig check`` write nothing, so only
the last applies to them; ``report`` writes inside the folder it reads, so it has no "output
is an input" row.

Every case must exit with status 2 and a message naming the file, folder or option; print no
traceback; and leave the fixtures' folders exactly as they were: the same files with the same
bytes, no temporary file, no lock file, no empty folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ampcap.files import sha256_file

DI_SECONDS = "3"
KNOB = "isf=3"
# Holds FOLDER's writer lock, as a running ampcap command would, until its stdin closes.
HOLD_LOCK = (
    "import sys\n"
    "from pathlib import Path\n"
    "from ampcap.outputs import folder_lock\n"
    "with folder_lock(Path(sys.argv[1]), 'train'):\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.read()\n"
)


def _mount(*args: str) -> str | None:
    """Run mount; None when it worked, else why not."""
    if shutil.which("mount") is None:
        return "no mount command"
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    return None if done.returncode == 0 else (done.stderr.strip() or f"mount {args} failed")


def _read_only(folder: Path) -> str | None:
    """Make ``folder`` a read-only bind mount of itself; None when it worked, else why not."""
    why = _mount("--bind", str(folder), str(folder))
    if why is None:
        why = _mount("-o", "remount,bind,ro", str(folder))
    if why is None:
        try:
            (folder / "probe").write_text("")
        except OSError:
            return None
        why = "the bind mount is still writable"
    return why


@dataclass(frozen=True)
class Fixtures:
    root: Path
    paths: dict[str, str]
    readonly_skip: str | None
    full_skip: str | None


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory, ampcap_process) -> Iterator[Fixtures]:
    """A real session, dataset, run and .nam, plus a file, a read-only and a full folder."""
    root = tmp_path_factory.mktemp("hostile")
    steps = [
        ("record", "--rig", "virtual", "--knob", "isf", "--steps", "2", "--out", "S")
        + ("--di-seconds", DI_SECONDS, "--yes"),
        ("align", "S"),
        ("split", "S", "--out", "D", "--block-seconds", "0.5"),
        ("train", "D", "--out", "R", "--epochs", "1", "--hidden", "8"),
        ("export", "R", "--format", "nam", "--knob", KNOB, "--out", "model.nam"),
    ]
    for args in steps:
        done = ampcap_process(*args, cwd=root)
        assert done.code == 0, (args, done.err)
    shutil.copyfile(root / "S" / "program.wav", root / "in.wav")
    shutil.copyfile(root / "S" / "program.wav", root / "out.wav")
    (root / "afile").write_text("a regular file, not a folder\n")
    (root / "r[1].toml").write_text('name = "x"\nkind = "virtual"\n[audio]\nbogus = 1\n')
    (root / "scratch").mkdir()
    # A read-only copy of the session and the run (root may write anywhere chmod says not to).
    readonly = root / "ro"
    readonly.mkdir()
    shutil.copytree(root / "S", readonly / "S")
    shutil.copytree(root / "R", readonly / "R")
    readonly_skip = _read_only(readonly)
    full = root / "full"
    full.mkdir()
    full_skip = _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full))
    paths = {
        "S": root / "S",
        "D": root / "D",
        "R": root / "R",
        "NAM": root / "model.nam",
        "IN": root / "in.wav",
        "OUT": root / "out.wav",
        "FILE": root / "afile",
        "RIG": root / "r[1].toml",
        "NEW": root / "scratch",
        "RO": readonly,
        "FULL": full,
    }
    try:
        yield Fixtures(root, {k: str(v) for k, v in paths.items()}, readonly_skip, full_skip)
    finally:
        # (os.path.ismount cannot tell a bind mount of a folder onto itself: just try.)
        for mounted in (readonly, full):
            if shutil.which("umount") is not None:
                subprocess.run(["umount", str(mounted)], capture_output=True)


def snapshot(root: Path) -> dict[str, str | None]:
    """Every file (with the SHA-256 of its bytes) and folder under ``root``."""
    found: dict[str, str | None] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(folder, name), root)] = None
        for name in files:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, root)] = sha256_file(path)
    return found


@dataclass(frozen=True)
class Case:
    """``args`` and ``expect`` use {S} {D} {R} {NAM} {IN} {OUT} {FILE} {RIG} {NEW} {RO} {FULL}."""

    args: str
    expect: tuple[str, ...]
    hold: str | None = None  # the folder whose lock another process holds meanwhile
    needs: str | None = None  # "ro" or "full": the mount the case needs


RECORD = f"record --rig virtual --knob isf --steps 2 --di-seconds {DI_SECONDS} --yes"
UNDER_FILE = "is a file, not a folder"
READ_ONLY = "read-only file system"
LOCKED = "is being written by another ampcap train (PID"
KEEP = "would overwrite a file ampcap must keep"
INPUT = "an input of this command"

CASES = {
    # An output folder that lies under a regular file.
    "record-under-file": Case(f"{RECORD} --out {{FILE}}/s", ("{FILE}/s", UNDER_FILE)),
    "align-files-under-file": Case(
        "align --input {IN} --output {OUT} --out {FILE}/p.wav", ("{FILE}/p.wav", UNDER_FILE)
    ),
    "split-under-file": Case("split {S} --out {FILE}/ds", ("{FILE}/ds", UNDER_FILE)),
    "split-onto-file": Case("split {S} --out {FILE}", ("{FILE}", "is a file")),
    "train-under-file": Case(
        "train {D} --out {FILE}/r --epochs 1", ("{FILE}/r", UNDER_FILE, "{FILE} is a file")
    ),
    "export-under-file": Case(
        f"export {{R}} --format nam --knob {KNOB} --out {{FILE}}/m.nam",
        ("{FILE}/m.nam", UNDER_FILE),
    ),
    "render-under-file": Case(
        f"render {{R}} {{IN}} {{FILE}}/o.wav --knob {KNOB}", ("{FILE}/o.wav", UNDER_FILE)
    ),
    # A read-only output.
    "record-read-only": Case(f"{RECORD} --out {{RO}}/s", ("{RO}/s", READ_ONLY), needs="ro"),
    "align-session-read-only": Case("align {RO}/S", ("{RO}/S", READ_ONLY), needs="ro"),
    "align-files-read-only": Case(
        "align --input {IN} --output {OUT} --out {RO}/p.wav", ("{RO}/p.wav", READ_ONLY), needs="ro"
    ),
    "split-read-only": Case("split {S} --out {RO}/ds", ("{RO}/ds", READ_ONLY), needs="ro"),
    "train-read-only": Case("train {D} --out {RO}/r --epochs 1", ("{RO}/r", READ_ONLY), needs="ro"),
    "report-session-read-only": Case("report {RO}/S", ("{RO}/S", READ_ONLY), needs="ro"),
    "report-run-read-only": Case("report {RO}/R", ("{RO}/R", READ_ONLY), needs="ro"),
    "export-read-only": Case(
        "export {R} --format aidax --out {RO}/m.json",
        ("{RO}/m.json", READ_ONLY),
        needs="ro",
    ),
    "render-read-only": Case(
        f"render {{R}} {{IN}} {{RO}}/o.wav --knob {KNOB}", ("{RO}/o.wav", READ_ONLY), needs="ro"
    ),
    # A full disk: the temporary file goes, the output never appears.
    "render-disk-full": Case(
        f"render {{R}} {{IN}} {{FULL}}/o.wav --knob {KNOB}",
        ("disk is full", "{FULL}/o.wav"),
        needs="full",
    ),
    "align-files-disk-full": Case(
        "align --input {IN} --output {OUT} --out {FULL}/p.wav",
        ("disk is full", "{FULL}/p.wav"),
        needs="full",
    ),
    # An output that is an input, or a file ampcap keeps.
    "record-onto-its-di": Case(f"{RECORD} --di {{IN}} --out {{IN}}", ("{IN}", "is a file")),
    "align-files-onto-input": Case("align --input {IN} --output {OUT} --out {IN}", ("{IN}", INPUT)),
    "align-files-onto-manifest": Case(
        "align --input {IN} --output {OUT} --out {S}/session.json", ("{S}/session.json", KEEP)
    ),
    "split-onto-session": Case("split {S} --out {S}", ("{S}", "is the input")),
    "split-above-session": Case("split {S} --out {S}/..", ("a folder above the input",)),
    "split-onto-run": Case(
        "split {S} --out {R} --block-seconds 0.5", ("{R}", "not an ampcap dataset")
    ),
    "train-onto-dataset": Case("train {D} --out {D} --epochs 1", ("{D}", "is the input")),
    "export-onto-checkpoint": Case(
        f"export {{R}} --format nam --knob {KNOB} --out {{R}}/model.pt", ("{R}/model.pt", INPUT)
    ),
    "export-onto-last-checkpoint": Case(
        f"export {{R}} --format nam --knob {KNOB} --out {{R}}/checkpoints/last.pt",
        ("{R}/checkpoints/last.pt", KEEP),
    ),
    "export-onto-run-manifest": Case(
        "export {R} --format aidax --out {R}/run.json", ("{R}/run.json", KEEP)
    ),
    "export-onto-take": Case(
        "export {R} --format aidax --out {S}/takes/isf=0.wav", ("{S}/takes/isf=0.wav", KEEP)
    ),
    "render-onto-input": Case(f"render {{R}} {{IN}} {{IN}} --knob {KNOB}", ("{IN}", INPUT)),
    "render-onto-checkpoint": Case(
        f"render {{R}} {{IN}} {{R}}/model.pt --knob {KNOB}", ("{R}/model.pt", KEEP)
    ),
    "render-onto-its-nam": Case("render {NAM} {IN} {NAM}", ("{NAM}", INPUT)),
    "render-as-json": Case(
        f"render {{R}} {{IN}} {{NEW}}/m.json --knob {KNOB}", ("{NEW}/m.json", KEEP)
    ),
    "render-onto-take": Case(
        f"render {{R}} {{IN}} {{S}}/takes/isf=10.wav --knob {KNOB}",
        ("{S}/takes/isf=10.wav", KEEP),
    ),
    "render-onto-split": Case(
        f"render {{R}} {{IN}} {{D}}/test/target.wav --knob {KNOB}",
        ("{D}/test/target.wav", KEEP),
    ),
    # A second writer while another process holds the folder's lock.
    "record-locked": Case(f"{RECORD} --out {{S}}", ("{S}", LOCKED), hold="{S}"),
    "align-session-locked": Case("align {S}", ("{S}", LOCKED), hold="{S}"),
    "align-files-locked": Case(
        "align --input {IN} --output {OUT} --out {S}/p.wav", ("{S}", LOCKED), hold="{S}"
    ),
    "split-locked": Case("split {S} --out {D} --block-seconds 0.5", ("{D}", LOCKED), hold="{D}"),
    "train-locked": Case("train {D} --out {NEW}/r --epochs 1", ("{NEW}/r", LOCKED), hold="{NEW}/r"),
    "train-resume-locked": Case("train {D} --out {R} --resume", ("{R}", LOCKED), hold="{R}"),
    "report-session-locked": Case("report {S}", ("{S}", LOCKED), hold="{S}"),
    "report-run-locked": Case("report {R}", ("{R}", LOCKED), hold="{R}"),
    "export-locked": Case(f"export {{R}} --format nam --knob {KNOB}", ("{R}", LOCKED), hold="{R}"),
    "render-locked": Case(
        f"render {{R}} {{IN}} {{R}}/o.wav --knob {KNOB}", ("{R}", LOCKED), hold="{R}"
    ),
    # Names in [brackets] are printed as they are.
    "align-files-bracket-name": Case(
        "align --input {IN} --output {NEW}/take[/b].wav", ("{NEW}/take[/b].wav",)
    ),
    "rigs-show-bracket-names": Case("rigs show {RIG}", ("{RIG}", "an [audio] table")),
    "rig-check-bracket-names": Case("rig check --rig {RIG}", ("{RIG}", "an [audio] table")),
    "record-missing-bracket-rig": Case(
        f"{RECORD} --rig {{NEW}}/[x].toml --out {{NEW}}/s", ("[x]",)
    ),
}
# nan, inf and negative values of every numeric option, refused before anything is read.
NUMERIC = {
    "record": (RECORD + " --out {NEW}/s", ["--di-seconds", "--steps", "--seed"]),
    "record-lhs": (RECORD.replace("--steps 2", "--plan lhs") + " --out {NEW}/s", ["--takes"]),
    "align": ("align {S}", ["--max-latency"]),
    "split": (
        "split {S} --out {NEW}/ds",
        ["--val", "--test", "--block-seconds", "--guard-ms", "--seed"],
    ),
    "train": (
        "train {D} --out {NEW}/r",
        [
            "--minutes",
            "--epochs",
            "--lr",
            "--hidden",
            "--layers",
            "--patience",
            "--threads",
            "--seed",
            "--setting-balance",
        ],
    ),
    "render": (f"render {{R}} {{IN}} {{NEW}}/o.wav --knob {KNOB}", ["--warmup", "--workers"]),
}
for command, (base, options) in NUMERIC.items():
    for option in options:
        for value in ("nan", "inf", "-1"):
            CASES[f"{command}{option}={value}"] = Case(f"{base} {option} {value}", (f"'{option}'",))
for value in ("nan", "inf", "-inf"):
    CASES[f"record--range={value}:5"] = Case(
        f"{RECORD} --out {{NEW}}/s --range {value}:5", (f"--range '{value}:5'",)
    )
    CASES[f"split--holdout=isf={value}"] = Case(
        f"split {{S}} --out {{NEW}}/ds --holdout isf={value}", (f"--holdout 'isf={value}'",)
    )
    CASES[f"export--knob=isf={value}"] = Case(
        f"export {{R}} --format nam --knob isf={value}", (f"isf={value}",)
    )
    CASES[f"render--knob=isf={value}"] = Case(
        f"render {{R}} {{IN}} {{NEW}}/o.wav --knob isf={value}", (f"isf={value}",)
    )


def hold_lock(folder: str) -> subprocess.Popen[str]:
    """Another process holding ``folder``'s writer lock (until its stdin is closed)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, folder],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_output_is_refused_cleanly(name: str, fx: Fixtures, cli) -> None:
    case = CASES[name]
    if case.needs == "ro" and fx.readonly_skip:
        pytest.skip(f"needs a read-only bind mount (root, allowed to mount): {fx.readonly_skip}")
    if case.needs == "full" and fx.full_skip:
        pytest.skip(f"needs a small tmpfs (root, allowed to mount): {fx.full_skip}")
    before = snapshot(fx.root)
    holder = hold_lock(case.hold.format(**fx.paths)) if case.hold else None
    try:
        result = cli(*[a.format(**fx.paths) for a in case.args.split()])
    finally:
        if holder is not None:
            release(holder)
    output = result.out + result.err
    assert result.code == 2, output
    flat = " ".join(output.split())
    for expected in case.expect:
        assert expected.format(**fx.paths) in flat, output
    if holder is not None:
        assert f"(PID {holder.pid})" in flat
    assert "Traceback" not in output and "internal error" not in output
    assert snapshot(fx.root) == before


def test_the_real_cli_prints_no_traceback(fx: Fixtures, ampcap_process) -> None:
    """Three of the cases through the installed entry point, as a user runs them."""
    p = fx.paths
    cases = [
        (["align", "--input", p["IN"], "--output", f"{p['NEW']}/take[/b].wav"], "take[/b].wav"),
        (["render", p["R"], p["IN"], f"{p['R']}/model.pt", "--knob", KNOB], "model.pt"),
        (["train", p["D"], "--out", f"{p['NEW']}/r", "--minutes", "nan"], "'--minutes'"),
    ]
    before = snapshot(fx.root)
    for args, expected in cases:
        done = ampcap_process(*args)
        assert done.code == 2, done.err
        assert expected in done.err and "Traceback" not in done.err + done.out
    assert snapshot(fx.root) == before


def test_a_lock_left_by_a_killed_process_blocks_nobody(
    fx: Fixtures, tmp_path: Path, ampcap_process
) -> None:
    out = tmp_path / "ds"
    holder = hold_lock(str(out))
    holder.kill()
    assert holder.wait(timeout=30) == -signal.SIGKILL
    assert (out / ".ampcap.lock").read_text().split()[0] == str(holder.pid)
    done = ampcap_process("split", fx.paths["S"], "--out", out, "--block-seconds", "0.5")
    assert done.code == 0, done.err
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "test", "train", "val"]


def test_two_splits_into_one_folder_at_once_never_both_win(fx: Fixtures, tmp_path: Path) -> None:
    """Whichever order they run in, one writes the dataset and the other is refused: at once by
    the lock, one after the other because the folder holds a different dataset."""
    out = tmp_path / "D"
    runs = {
        blocks: subprocess.Popen(
            [sys.executable, "-m", "ampcap", "split", fx.paths["S"], "--out", str(out)]
            + ["--block-seconds", blocks],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for blocks in ("0.5", "0.6")
    }
    results = {blocks: (run.wait(timeout=300), run.stderr.read()) for blocks, run in runs.items()}
    codes = sorted(code for code, _ in results.values())
    assert codes == [0, 2], results
    winner = next(float(b) for b, (code, _) in results.items() if code == 0)
    _, refusal = next(r for r in results.values() if r[0] == 2)
    assert "being written by" in refusal or "already holds a different dataset" in refusal
    assert "Traceback" not in refusal
    assert json.loads((out / "manifest.json").read_text())["block_seconds"] == winner
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D"]
