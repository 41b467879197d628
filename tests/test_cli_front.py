"""The front door: every command has help with an example; user errors are one paragraph, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from ampcap.cli import COMMANDS


def test_top_level_help_lists_every_command(ampcap_process) -> None:
    result = ampcap_process("--help")
    assert result.code == 0, result.err
    for name in COMMANDS:
        assert name in result.out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_help_with_an_example(ampcap_process, name: str) -> None:
    result = ampcap_process(name, "--help")
    assert result.code == 0, result.err
    assert "ampcap " + name in result.out.replace("\n", " "), result.out


def test_user_error_is_one_message_and_exit_status_2(ampcap_process, tmp_path: Path) -> None:
    result = ampcap_process("report", str(tmp_path / "nowhere"))
    assert result.code == 2
    assert "neither a capture session" in result.err
    assert "Traceback" not in result.err


def test_debug_shows_the_traceback(ampcap_process, tmp_path: Path) -> None:
    result = ampcap_process("report", tmp_path / "nowhere", env={"AMPCAP_DEBUG": "1"})
    assert result.code != 0
    assert "Traceback" in result.err and "UsageError" in result.err


def test_unknown_command_is_a_usage_error(ampcap_process) -> None:
    result = ampcap_process("recrod")
    assert result.code == 2
    assert "No such command" in result.err
