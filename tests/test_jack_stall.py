"""A JACK server that dies mid-take: ampcap keeps what it recorded and exits, it does not hang."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from jack_helpers import (
    ampcap_command,
    file_bytes,
    record_args,
    wait_for,
    write_di,
    write_rig,
)

from ampcap.capture.jack_device import JackServer, VirtualAmpProcess
from ampcap.schema.session import load_session

pytestmark = pytest.mark.jack


def test_a_server_that_dies_mid_take_stops_cleanly_with_the_take_kept(
    tmp_path: Path, jack_server: JackServer
) -> None:
    # Its own server: this test kills it. (The shared one proves JACK can run here.)
    server = JackServer(f"ampcap-stall-{os.getpid()}-{uuid.uuid4().hex[:6]}").start()
    device = VirtualAmpProcess(server.name).start()
    rig = write_rig(tmp_path / "rig.toml")
    out = tmp_path / "session"
    record = subprocess.Popen(
        [*ampcap_command(), *record_args(rig, out, write_di(tmp_path / "di.wav", 20.0))],
        env={**os.environ, **server.environment},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        take = out / "takes" / "isf=0.wav"
        wait_for(lambda: file_bytes(take) > 48000 * 8, 60, "the first second of the take")
        assert server.process is not None
        server.process.kill()  # the server dies under the stream
        _, stderr = record.communicate(timeout=60)  # PortAudio's abort would block for ever
    finally:
        if record.poll() is None:
            record.kill()
        device.stop()
        server.stop()
    assert record.returncode == 2, stderr
    assert "stopped delivering audio" in stderr
    assert "Traceback" not in stderr
    manifest = load_session(out)
    first = manifest.takes[0]
    assert first.status == "partial"
    assert first.frames >= 48000
