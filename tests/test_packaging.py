"""The package installs both ways and its front door stays light."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("ampcap.capture", "ampcap.dataset", "ampcap.train", "ampcap.rigs", "ampcap.schema")


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd="/",
        check=False,
    )


def test_editable_install_maps_design_folders_into_the_namespace() -> None:
    code = "import importlib, json; print(json.dumps({m: importlib.import_module(m).__file__ for m in %r}))"
    result = _python(code % (STAGES,))
    assert result.returncode == 0, result.stderr
    for folder in ("capture", "dataset", "train", "rigs"):
        assert f"{ROOT}/{folder}/__init__.py" in result.stdout
    # Nothing installs a top-level package called `dataset` or `train`.
    assert _python("import train").returncode != 0
    assert _python("import dataset").returncode != 0


@pytest.mark.slow
def test_wheel_holds_every_stage_and_the_rig_files(tmp_path: Path) -> None:
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("ampcap-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ampcap/capture/engine.py" in names
    assert "ampcap/rigs/virtual.toml" in names
    assert not any(n.startswith(("capture/", "dataset/", "train/")) for n in names)

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    code = (
        "import ampcap.capture.engine, ampcap.dataset, ampcap.train, ampcap.cli, ampcap.rigs;"
        "from importlib.resources import files;"
        "print(ampcap.cli.__file__);"
        "print(files('ampcap.rigs').joinpath('virtual.toml').is_file())"
    )
    result = _python(code, PYTHONPATH=str(target))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[0].startswith(str(target)), "the wheel's copy, not the checkout, must be imported"
    assert lines[1] == "True"


def test_record_help_does_not_import_torch() -> None:
    code = (
        "import sys; from ampcap.cli import main\n"
        "try:\n    main(['record', '--help'])\nexcept SystemExit as e:\n    code = e.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code, file=sys.stderr)"
    )
    result = _python(code)
    assert "NO-TORCH 0" in result.stderr, result.stderr
    assert "Examples" in result.stdout or "example" in result.stdout.lower()
