"""The front door: every command has help with an example; user errors are one paragraph, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ampcap.cli import COMMANDS


def run_ampcap(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ampcap", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **env},
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_top_level_help_lists_every_command() -> None:
    result = run_ampcap("--help")
    assert result.returncode == 0, result.stderr
    for name in COMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_help_with_an_example(name: str) -> None:
    result = run_ampcap(name, "--help")
    assert result.returncode == 0, result.stderr
    assert "ampcap " + name in result.stdout.replace("\n", " "), result.stdout


def test_user_error_is_one_message_and_exit_status_2(tmp_path: Path) -> None:
    result = run_ampcap("report", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "neither a capture session" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run_ampcap("report", str(tmp_path / "nowhere"), AMPCAP_DEBUG="1")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "UsageError" in result.stderr


def test_unknown_command_is_a_usage_error() -> None:
    result = run_ampcap("recrod")
    assert result.returncode == 2
    assert "No such command" in result.stderr
