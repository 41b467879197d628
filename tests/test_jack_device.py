"""ampcap's JACK device and private server, driven through their command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ampcap.capture.jack_device import (
    JackServer,
    VirtualAmpProcess,
    control_socket_path,
)

pytestmark = pytest.mark.jack


def _device(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ampcap.capture.jack_device", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def test_set_changes_the_knob_and_reports_it(jack_env: dict[str, str]) -> None:
    result = _device(["set", "isf", "7.5"], jack_env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["isf"] == 7.5


def test_out_of_range_or_unknown_knob_is_refused_with_exit_2(jack_env: dict[str, str]) -> None:
    too_far = _device(["set", "isf", "12"], jack_env)
    assert too_far.returncode == 2
    assert "isf=12 is outside the virtual amp's dial 0..10" in too_far.stderr
    unknown = _device(["set", "treble", "3"], jack_env)
    assert unknown.returncode == 2
    assert "no knob 'treble'" in unknown.stderr


def test_a_device_that_is_not_running_is_named(jack_env: dict[str, str]) -> None:
    result = _device(["set", "--name", "ampcap-nobody", "isf", "1"], jack_env)
    assert result.returncode == 2
    assert "No JACK device 'ampcap-nobody' is running" in result.stderr
    assert "Traceback" not in result.stderr


def test_glitch_arguments_are_checked(jack_env: dict[str, str]) -> None:
    result = _device(["glitch", "5"], jack_env)
    assert result.returncode == 2
    assert "seconds must be in (0, 2]" in result.stderr


def test_server_and_device_start_and_leave_nothing_behind(tmp_path: Path) -> None:
    server = JackServer(f"ampcap-lifecycle-{tmp_path.name[-12:]}")
    with server:
        assert server.process is not None and server.process.poll() is None
        shm = list(Path("/dev/shm").glob(f"jack_{server.name}_*"))
        assert shm, "a running server has its shared memory"
        with VirtualAmpProcess(server.name, "ampcap-lifecycle", knobs={"isf": 2.5}) as device:
            assert device.set_knobs({"isf": 3.0}) == {"isf": 3.0}
            assert control_socket_path(server.name, "ampcap-lifecycle").exists()
        assert not control_socket_path(server.name, "ampcap-lifecycle").exists()
    assert server.process is None
    assert not list(Path("/dev/shm").glob(f"jack_{server.name}_*"))
