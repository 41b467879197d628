"""A small real pipeline on disk (record → align → split → train) for the damaged-input tests.

Everything is made by the real CLI on the virtual rig: two takes of 4 s of built-in DI, a
dataset in half-second blocks and a one-layer LSTM8 trained for two epochs, so every manifest
and file holds what ampcap really writes (checksums included).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

AMPCAP = [sys.executable, "-m", "ampcap"]


def build_pipeline(root: Path, ampcap: Callable[..., Any]) -> Path:
    """``root/{cap,data,run}`` made by the real commands, run through ``ampcap`` (the
    ``cli`` or ``ampcap_process`` fixture); returns ``root``."""
    steps = [
        ("record", "--rig", "virtual", "--knob", "isf", "--steps", "2", "--out", "cap")
        + ("--di-seconds", "4", "--yes"),
        ("align", "cap"),
        ("split", "cap", "--out", "data", "--block-seconds", "0.5"),
        ("train", "data", "--out", "run", "--epochs", "2", "--hidden", "8"),
    ]
    for step in steps:
        result = ampcap(*step, cwd=root)
        assert result.code == 0, (step, result.output_flat)
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
