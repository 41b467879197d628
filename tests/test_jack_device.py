"""ampcap's JACK device and private server, driven through their command line."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ampcap.capture.jack_device import (
    JackServer,
    VirtualAmpProcess,
    control_socket_path,
    free_dead_server_slots,
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


def _registry(path: Path, pids: list[int], magic: int = 0x4A41434B) -> Path:
    """A JACK2 server registry: header, then one 264-byte slot (pid, name) per server."""
    slots = b"".join(
        struct.pack("<i", pid) + f"jack-0:server-{i}:".encode().ljust(260, b"\0")
        for i, pid in enumerate(pids)
    )
    header = struct.pack("<IH2xIIII", magic, 0, 1, 24 + len(slots) + 4096, 24 + len(slots), 268)
    path.write_bytes(header + slots + bytes(4096))
    return path


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_slots_of_killed_servers_are_freed_and_live_ones_kept(tmp_path: Path) -> None:
    # A killed jackd never gives its registry slot back; after eight, no server starts.
    dead, live = _dead_pid(), os.getpid()
    path = _registry(tmp_path / "jack-shm-registry", [dead, live, 0, dead])
    before = path.read_bytes()
    assert free_dead_server_slots(path) == 2
    after = path.read_bytes()
    assert after[24:288] == bytes(264) and after[816:1080] == bytes(264)
    assert after[288:552] == before[288:552]  # the live server's slot
    assert after[:24] == before[:24] and after[1080:] == before[1080:]
    assert free_dead_server_slots(path) == 0


def test_a_registry_of_another_layout_or_none_is_left_alone(tmp_path: Path) -> None:
    path = _registry(tmp_path / "other", [_dead_pid()], magic=0x12345678)
    before = path.read_bytes()
    assert free_dead_server_slots(path) == 0
    assert path.read_bytes() == before
    assert free_dead_server_slots(tmp_path / "missing") == 0
