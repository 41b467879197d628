"""A small real pipeline on disk (record → align → split → train) for the damaged-input tests.

Everything is made by the real CLI on the virtual rig: two takes of 4 s of built-in DI, a
dataset in half-second blocks and a one-layer LSTM8 trained for two epochs, so every manifest
and file holds what ampcap really writes (checksums included).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ampcap.cli import main

AMPCAP = [sys.executable, "-m", "ampcap"]


def run_ampcap(*args: str | Path, cwd: Path | None = None) -> tuple[int, str]:
    """Run the CLI in this process; returns (exit status, stderr and stdout, whitespace folded).

    The console writes to whatever ``sys.stderr`` is at the time, so redirecting it captures
    every message; an internal error would print its own paragraph and exit 1.
    """
    buffer = io.StringIO()
    old = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stderr(buffer), contextlib.redirect_stdout(buffer):
            try:
                main([str(a) for a in args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            else:
                code = 0
    finally:
        os.chdir(old)
    return code, " ".join(buffer.getvalue().split())


def run_subprocess(*args: str | Path, cwd: Path, timeout: float = 120) -> tuple[int, str]:
    """Run ``python -m ampcap ARGS`` as its own process; returns (exit status, all output)."""
    result = subprocess.run(
        [*AMPCAP, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "AMPCAP_DEBUG": ""},
    )
    return result.returncode, result.stderr + result.stdout


def build_pipeline(root: Path) -> Path:
    """``root/{cap,data,run}`` made by the real commands; returns ``root``."""
    steps = [
        ("record", "--rig", "virtual", "--knob", "isf", "--steps", "2", "--out", "cap")
        + ("--di-seconds", "4", "--yes"),
        ("align", "cap"),
        ("split", "cap", "--out", "data", "--block-seconds", "0.5"),
        ("train", "data", "--out", "run", "--epochs", "2", "--hidden", "8"),
    ]
    for step in steps:
        code, output = run_ampcap(*step, cwd=root)
        assert code == 0, (step, output)
    return root


def copy_pipeline(source: Path, target: Path) -> Path:
    """A copy of a built pipeline whose run still points at a dataset inside the copy."""
    shutil.copytree(source, target, symlinks=True)
    return target


def file_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def temp_leftovers(folder: Path) -> list[str]:
    """Files a writer leaves only when interrupted: hidden ``.tmp``/``.recording`` files and
    the hidden build folders of ``split``."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.name.startswith(".") and (p.suffix in (".tmp", ".wav") or p.is_dir())
    )


def edit_json(path: Path, change: Any) -> None:
    """Apply ``change(document)`` (which edits it in place) to a JSON file."""
    document = json.loads(path.read_text(encoding="utf-8"))
    change(document)
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")


def nudge_sample(path: Path, frame: int = 1000) -> None:
    """Change one sample of a float32 WAV by a hair, keeping its header and length."""
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    samples[frame, -1] += np.float32(1e-3)
    info = sf.info(str(path))
    sf.write(str(path), samples, rate, subtype=info.subtype)
