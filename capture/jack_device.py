"""A JACK device that is part of ampcap: the virtual amp on a real audio server.

``ampcap-virtual-amp`` is a JACK client with two port pairs. PortAudio shows it as a device
with two inputs and two outputs, and channel ``k`` of a stream opened on it is wired to the
``k``-th port of each direction, in the order below:

=======  ===================  ==================  =====================================
channel  PortAudio output ->  client port          what comes back on PortAudio input k
=======  ===================  ==================  =====================================
1        ``in_amp``           ``out_amp``          :class:`~ampcap.capture.virtual.VirtualAmp`
2        ``in_loopback``      ``out_loopback``     the same samples (identity)
=======  ===================  ==================  =====================================

The amp is the virtual rig's amp, deterministic for a seed and without any noise, so a
recording through PortAudio and JACK can be checked sample for sample against the amp run on
the whole program at once. Its knobs are set while it runs through a UNIX socket::

    python -m ampcap.capture.jack_device set isf 5

The amp starts every take from rest, like the virtual rig's amp: connecting anything to
``in_amp`` (PortAudio does when a take's stream opens) clears its state, and so does setting a
knob. A take then records the same samples however long the amp idled or rang out before.

``python -m ampcap.capture.jack_device glitch 0.1`` makes the device miss its deadline once,
half a second into the next take: a rehearsal of a dropout, which ampcap must record again.

The module also starts and stops a private ``jackd`` with the dummy backend (no sound card,
real-time clock, synchronous mode), used by the tests, the benchmarks and anyone trying ampcap
without an interface::

    python -m ampcap.capture.jack_device server --name ampcap &
    export JACK_DEFAULT_SERVER=ampcap JACK_NO_START_SERVER=1
    python -m ampcap.capture.jack_device serve --knob isf=0 &
    ampcap record --rig jack-virtual --knob isf --steps 3 --out captures/jack --yes
"""

from __future__ import annotations

import ctypes.util
import gc
import glob
import json
import os
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from ampcap.errors import AmpcapError, DeviceError, UsageError
from ampcap.labels import describe, knob_label

DEFAULT_CLIENT_NAME = "ampcap-virtual-amp"
DEFAULT_SERVER_NAME = "default"
AMP_PORTS = ("in_amp", "out_amp")
LOOPBACK_PORTS = ("in_loopback", "out_loopback")
SHM_DIR = Path("/dev/shm")
#: JACK's registry of running servers, shared by every server on the machine.
REGISTRY_PATH = SHM_DIR / "jack-shm-registry"
# The registry's layout (JACK2 shm.h): a header of magic, protocol, type, size, hdr_len and
# entry_len, then one slot per server: a pid and a 257-byte name, padded to 264 bytes.
_REGISTRY_MAGIC = 0x4A41434B  # "JACK"
_REGISTRY_HEADER = struct.Struct("<IH2xIIII")
_SERVER_SLOT_BYTES = 264
_REPLY_TIMEOUT_S = 5.0


def server_name_from_env() -> str:
    """The JACK server clients talk to: ``$JACK_DEFAULT_SERVER``, else ``"default"``."""
    return os.environ.get("JACK_DEFAULT_SERVER") or DEFAULT_SERVER_NAME


def control_socket_path(server_name: str, client_name: str) -> Path:
    """Where the client named ``client_name`` on ``server_name`` listens for knob commands."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{server_name}-{client_name}")
    return Path(tempfile.gettempdir()) / f"ampcap-jack-{safe}.sock"


def jack_unavailable_reason() -> str | None:
    """Why a private JACK server with PortAudio cannot run here, or None when it can.

    Checks for ``jackd`` on the PATH, the JACK and PortAudio shared libraries and the
    JACK-Client Python package: what the JACK tests and the JACK rig need.
    """
    if shutil.which("jackd") is None:
        return "jackd is not installed (Debian/Ubuntu: apt-get install jackd2)"
    if ctypes.util.find_library("jack") is None:
        return "libjack is not installed (Debian/Ubuntu: apt-get install jackd2)"
    if ctypes.util.find_library("portaudio") is None:
        return "libportaudio is not installed (Debian/Ubuntu: apt-get install libportaudio2)"
    try:
        import jack  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"the JACK-Client package cannot be imported ({exc}); pip install 'ampcap[jack]'"
    return None


def realtime_permitted() -> bool:
    """Whether this process may give a thread real-time (SCHED_FIFO) priority, as ``jackd -R``
    does for its own and its clients' audio threads."""
    if not hasattr(os, "sched_setscheduler"):
        return False
    permitted: list[bool] = []

    def probe() -> None:
        # On Linux the call applies to the calling thread only: this short-lived one.
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            permitted.append(True)
        except OSError:
            permitted.append(False)

    thread = threading.Thread(target=probe, name="ampcap-rt-probe")
    thread.start()
    thread.join()
    return permitted[0]


def _import_jack() -> Any:
    try:
        import jack
    except (ImportError, OSError) as exc:
        raise DeviceError(
            f"The JACK-Client package is needed for the JACK device but cannot be imported "
            f"({exc}). Install it with `pip install 'ampcap[jack]'` and make sure libjack is "
            "installed (Debian/Ubuntu: apt-get install jackd2)."
        ) from exc
    return jack


def _server_environment(server_name: str) -> dict[str, str]:
    # JACK_NO_START_SERVER stops libjack from spawning a default server behind our back when the
    # named one is not there: a missing server must be an error, not a surprise process.
    return {"JACK_DEFAULT_SERVER": server_name, "JACK_NO_START_SERVER": "1"}


def free_dead_server_slots(registry: Path = REGISTRY_PATH) -> int:
    """Free the registry slots of JACK servers whose process is gone; returns how many.

    The registry has room for eight servers, and a server that is killed (or whose machine
    hangs) never gives its slot back: after eight of those, no new server starts ("Failed to
    open server"). A slot is freed only when its process no longer exists; live servers, a
    missing registry and a file of another layout are left alone.
    """
    try:
        with open(registry, "r+b") as handle:
            header = handle.read(_REGISTRY_HEADER.size)
            if len(header) < _REGISTRY_HEADER.size:
                return 0
            magic, _, _, _, header_bytes, _ = _REGISTRY_HEADER.unpack(header)
            slots = (header_bytes - _REGISTRY_HEADER.size) // _SERVER_SLOT_BYTES
            if magic != _REGISTRY_MAGIC or not 0 < slots <= 64:
                return 0
            freed = 0
            for slot in range(slots):
                offset = _REGISTRY_HEADER.size + slot * _SERVER_SLOT_BYTES
                handle.seek(offset)
                (pid,) = struct.unpack("<i", handle.read(4))
                if pid > 0 and not _process_exists(pid):
                    handle.seek(offset)
                    handle.write(bytes(_SERVER_SLOT_BYTES))
                    freed += 1
            return freed
    except OSError:
        return 0


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


class _ChildProcess:
    """A helper process ampcap starts, waits for until it is ready, and stops.

    Its output goes to a temporary file whose last lines end up in error messages.
    """

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()

    def _launch(
        self,
        command: list[str],
        env: Mapping[str, str],
        ready: Callable[[], bool],
        what: str,
        timeout_s: float,
    ) -> None:
        """Start ``command`` and poll ``ready()`` until it is true.

        Raises
        ------
        DeviceError
            The process exits, or is not ready within ``timeout_s`` (it is then stopped).
        """
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        deadline = time.monotonic() + timeout_s
        while not ready():
            if self.process.poll() is not None:
                raise DeviceError(
                    f"{what} exited with status {self.process.returncode} while starting: "
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise DeviceError(f"{what} did not start within {timeout_s:g} s: {self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 8) -> str:
        """The last lines the process printed (for error messages)."""
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(no output)"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the process to end (SIGTERM), kill it after ``timeout_s``."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class JackServer(_ChildProcess):
    """A private ``jackd`` with the dummy backend: a real audio server with no sound card.

    The dummy backend runs on the wall clock like a sound card would. Synchronous mode
    (``--sync``) makes the server wait for every client each period, so the round trip through
    PortAudio and a client is a whole number of periods and no sample is lost under load.

    Parameters
    ----------
    name : str
        Server name (``jackd -n``); clients reach it with ``JACK_DEFAULT_SERVER=name``.
    sample_rate_hz : int, default 48000
    period_frames : int, default 1024
        Frames per period; large periods keep a busy machine from missing deadlines.
    channels : int, default 2
        Capture and playback channels of the dummy ``system`` device.
    realtime : bool, optional
        Run the audio threads (the server's and its clients') with real-time priority, so busy
        processes beside them cannot delay a period. Default: when the system permits it.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. :attr:`environment` holds
    the variables a process needs to reach this server (pass them to subprocesses).
    """

    def __init__(
        self,
        name: str,
        sample_rate_hz: int = 48000,
        period_frames: int = 1024,
        channels: int = 2,
        realtime: bool | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.realtime = realtime_permitted() if realtime is None else realtime
        self.sample_rate_hz = sample_rate_hz
        self.period_frames = period_frames
        self.channels = channels

    @property
    def environment(self) -> dict[str, str]:
        """Environment variables that point JACK clients (and PortAudio) at this server."""
        return _server_environment(self.name)

    @property
    def command(self) -> list[str]:
        priority = (
            ["--realtime", "--realtime-priority", "70"] if self.realtime else ["--no-realtime"]
        )
        return [
            "jackd",
            "-n",
            self.name,
            *priority,
            "--sync",
            "-d",
            "dummy",
            "-r",
            str(self.sample_rate_hz),
            "-p",
            str(self.period_frames),
            "-C",
            str(self.channels),
            "-P",
            str(self.channels),
        ]

    def clear_shared_memory(self) -> None:
        """Remove this server name's files in /dev/shm that a killed server left behind.

        Only files carrying this server's name are touched; other servers' files stay, and of
        the shared registry only the slots of servers that no longer run are freed.
        """
        for pattern in (f"jack_{self.name}_*", f"jack_sem.*_{self.name}_*"):
            for path in glob.glob(str(SHM_DIR / pattern)):
                try:
                    os.unlink(path)
                except OSError:
                    pass
        free_dead_server_slots()

    def start(self, timeout_s: float = 15.0) -> JackServer:
        """Start ``jackd`` and wait until a client can connect.

        Raises
        ------
        DeviceError
            jackd is missing, exits, or does not accept clients within ``timeout_s``; the
            message carries the end of jackd's log.
        """
        if shutil.which("jackd") is None:
            raise DeviceError("jackd is not installed (Debian/Ubuntu: apt-get install jackd2).")
        self.clear_shared_memory()
        jack = _import_jack()

        def accepts_clients() -> bool:
            try:
                probe = jack.Client("ampcap-probe", no_start_server=True, servername=self.name)
            except jack.JackError:
                return False
            probe.close()
            return True

        self._launch(
            self.command,
            {**os.environ, **self.environment},
            accepts_clients,
            f"jackd server {self.name!r}",
            timeout_s,
        )
        return self

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop the server (stop its clients first: a synchronous server waits for them)."""
        super().stop(timeout_s)
        self.clear_shared_memory()

    def __enter__(self) -> JackServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class VirtualAmpProcess(_ChildProcess):
    """``python -m ampcap.capture.jack_device serve`` as a child process, ready when started.

    Parameters
    ----------
    server_name : str
        The JACK server to join.
    client_name : str, default "ampcap-virtual-amp"
    knobs : mapping of str to float, optional
        Initial knob values.
    seed : int, default 0
        The amp's seed (the virtual rig's default).
    """

    def __init__(
        self,
        server_name: str,
        client_name: str = DEFAULT_CLIENT_NAME,
        knobs: Mapping[str, float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.server_name = server_name
        self.client_name = client_name
        self.knobs = dict(knobs or {})
        self.seed = seed

    def start(self, timeout_s: float = 15.0) -> VirtualAmpProcess:
        """Start the client and wait until it answers on its control socket."""
        command = [
            sys.executable,
            "-m",
            "ampcap.capture.jack_device",
            "serve",
            "--name",
            self.client_name,
            "--server",
            self.server_name,
            "--seed",
            str(self.seed),
        ]
        for name, value in self.knobs.items():
            command += ["--knob", knob_label({name: value})]

        def answers() -> bool:
            try:
                request(self.server_name, self.client_name, "get")
            except DeviceError:
                return False
            return True

        self._launch(
            command,
            {**os.environ, **_server_environment(self.server_name)},
            answers,
            f"The JACK device {self.client_name!r}",
            timeout_s,
        )
        return self

    def glitch(self, seconds: float, count: int = 1, skip: int = 0) -> None:
        """Arm dropouts in upcoming takes (see :meth:`VirtualAmpClient.arm_glitch`)."""
        request(self.server_name, self.client_name, f"glitch {seconds!r} {count} {skip}")

    def set_knobs(self, knobs: Mapping[str, float]) -> dict[str, float]:
        """Set knobs (and reset the amp's state); returns the knobs now in effect."""
        reply: dict[str, float] = {}
        for name, value in knobs.items():
            reply = request(self.server_name, self.client_name, f"set {name} {value!r}")["knobs"]
        return reply

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the client; it leaves the JACK graph cleanly before it exits."""
        super().stop(timeout_s)

    def __enter__(self) -> VirtualAmpProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def request(server_name: str, client_name: str, line: str) -> dict[str, Any]:
    """Send one command line to a running device and return its JSON reply.

    Commands: ``get`` (the knobs in effect), ``set NAME VALUE`` and
    ``glitch SECONDS COUNT SKIP`` (see :meth:`VirtualAmpClient.arm_glitch`).

    Raises
    ------
    DeviceError
        No device listens for this server and client name, or it refused the command.
    """
    path = control_socket_path(server_name, client_name)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(_REPLY_TIMEOUT_S)
            conn.connect(str(path))
            conn.sendall(line.encode("utf-8") + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise DeviceError(
            f"No JACK device {client_name!r} is running on JACK server {server_name!r} (its "
            f"control socket {path} does not answer: {exc.strerror or exc}). Start it with "
            f"`python -m ampcap.capture.jack_device serve --name {client_name}` and check "
            "JACK_DEFAULT_SERVER names the right server."
        ) from exc
    try:
        reply = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DeviceError(f"The JACK device {client_name!r} sent an unreadable reply.") from exc
    if not reply.get("ok"):
        raise DeviceError(f"The JACK device {client_name!r} refused {line!r}: {reply.get('error')}")
    return reply


class VirtualAmpClient:
    """The running JACK client: ports, the process callback and the knob state.

    The process callback copies ``in_loopback`` to ``out_loopback`` and runs ``in_amp``
    through the amp into ``out_amp``. A knob change builds a fresh amp outside the callback;
    the callback swaps it in at the start of its next period, so a period is processed by one
    amp from its first sample to its last.
    """

    def __init__(
        self, client_name: str, server_name: str, knobs: Mapping[str, float], seed: int
    ) -> None:
        jack = _import_jack()
        from ampcap.capture.virtual import VirtualAmp

        self._amp_class = VirtualAmp
        self.seed = seed
        try:
            self.client = jack.Client(
                client_name, use_exact_name=True, no_start_server=True, servername=server_name
            )
        except jack.JackError as exc:
            raise DeviceError(
                f"Could not join JACK server {server_name!r} as {client_name!r} ({exc}). Is the "
                "server running (python -m ampcap.capture.jack_device server), and is the name "
                "free?"
            ) from exc
        self.sample_rate_hz = int(self.client.samplerate)
        self.knobs = dict(knobs)
        self._amp = self._new_amp(self.knobs)
        self._next_amp: Any = None
        self.error: str | None = None
        self.shutdown_reason: str | None = None
        # Channel order as the module docstring tables: the amp pair first, then the loopback.
        self._in_amp = self.client.inports.register(AMP_PORTS[0])
        self._in_loop = self.client.inports.register(LOOPBACK_PORTS[0])
        self._out_amp = self.client.outports.register(AMP_PORTS[1])
        self._out_loop = self.client.outports.register(LOOPBACK_PORTS[1])
        self._reset_requested = False
        self._since_connect = 0
        self._glitch_due = False
        self._glitch_s, self._glitch_count, self._glitch_skip = 0.0, 0, 0
        self.client.set_process_callback(self._process)
        self.client.set_shutdown_callback(self._shutdown)
        self.client.set_port_connect_callback(self._connected, only_available=False)

    def _new_amp(self, knobs: Mapping[str, float]) -> Any:
        amp = self._amp_class(self.sample_rate_hz, self.seed)
        if knobs:
            amp.set_knobs(dict(knobs))
        return amp

    def _process(self, frames: int) -> None:
        if self._next_amp is not None:
            self._amp, self._next_amp = self._next_amp, None
        if self._reset_requested:
            self._reset_requested = False
            self._amp.reset()
            self._since_connect = 0
            self._glitch_due = self._take_glitch()
        self._out_loop.get_array()[:] = self._in_loop.get_array()
        try:
            self._out_amp.get_array()[:] = self._amp.process(self._in_amp.get_array())
        except Exception as exc:  # noqa: BLE001 - a callback must not die; the error is reported
            self.error = f"the amp failed: {exc!r}"
            self._out_amp.get_array().fill(0.0)
        self._since_connect += frames
        if self._glitch_due and self._since_connect >= self.sample_rate_hz // 2:
            self._glitch_due = False
            time.sleep(self._glitch_s)  # deliberately late: the server and PortAudio see an xrun

    def _take_glitch(self) -> bool:
        """Whether the take that just connected gets a glitch (consumes the armed ones)."""
        if self._glitch_count <= 0:
            return False
        if self._glitch_skip > 0:
            self._glitch_skip -= 1
            return False
        self._glitch_count -= 1
        return True

    def arm_glitch(self, seconds: float, count: int, skip: int) -> dict[str, Any]:
        """Stall the process callback for ``seconds`` half a second into each of the ``count``
        takes that connect after the next ``skip`` ones: a device that misses its deadline."""
        if not (0.0 < seconds <= 2.0 and count >= 0 and skip >= 0):
            raise UsageError(
                f"glitch {seconds:g} {count} {skip}: seconds must be in (0, 2], count and skip 0 "
                "or more"
            )
        self._glitch_s, self._glitch_count, self._glitch_skip = seconds, count, skip
        return {"glitch_s": seconds, "count": count, "skip": skip}

    def _connected(self, a: Any, b: Any, connect: bool) -> None:
        # Runs in JACK's notification thread; the process callback does the reset between
        # periods. A take's stream connects during its leading silence, so the reset happens
        # before the first sample of the program reaches the amp.
        if connect and self._in_amp.name in (getattr(a, "name", None), getattr(b, "name", None)):
            self._reset_requested = True

    def _shutdown(self, status: Any, reason: str) -> None:
        self.shutdown_reason = reason or "the JACK server shut down"

    def set_knob(self, name: str, value: float) -> dict[str, float]:
        """Set one knob and reset the amp; returns once the callback has taken the new amp."""
        knobs = {**self.knobs, name: value}
        try:
            amp = self._new_amp(knobs)
        except (AmpcapError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"cannot set {describe({name: value})}: {exc}") from exc
        self._next_amp = amp
        deadline = time.monotonic() + _REPLY_TIMEOUT_S
        while self._next_amp is amp:
            if time.monotonic() > deadline:
                raise DeviceError("the JACK server is not running the device's process callback")
            time.sleep(0.002)
        self.knobs = knobs
        return dict(knobs)

    def handle(self, line: str) -> dict[str, Any]:
        """Answer one control command (see :func:`request`)."""
        words = line.split()
        try:
            if self.error is not None:
                raise DeviceError(self.error)
            if words == ["get"]:
                return {"ok": True, "knobs": self.knobs, "sample_rate_hz": self.sample_rate_hz}
            if len(words) == 3 and words[0] == "set":
                try:
                    value = float(words[2])
                except ValueError:
                    raise UsageError(f"{words[2]!r} is not a number") from None
                return {"ok": True, "knobs": self.set_knob(words[1], value)}
            if len(words) == 4 and words[0] == "glitch":
                try:
                    seconds, count, skip = float(words[1]), int(words[2]), int(words[3])
                except ValueError:
                    raise UsageError(
                        f"{line.strip()!r} is not 'glitch SECONDS COUNT SKIP'"
                    ) from None
                return {"ok": True, "glitch": self.arm_glitch(seconds, count, skip)}
            raise UsageError(
                f"unknown command {line.strip()!r}; use 'get', 'set NAME VALUE' or "
                "'glitch SECONDS COUNT SKIP'"
            )
        except AmpcapError as exc:
            return {"ok": False, "error": str(exc)}


def serve(client_name: str, server_name: str, knobs: Mapping[str, float], seed: int) -> None:
    """Run the device until SIGINT or SIGTERM, then leave the JACK graph cleanly."""
    device = VirtualAmpClient(client_name, server_name, knobs, seed)
    path = control_socket_path(server_name, client_name)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline().decode("utf-8", "replace")
            self.wfile.write(json.dumps(device.handle(line)).encode("utf-8") + b"\n")

    stopping: list[str] = []
    # A handler only appends to a list: taking locks inside a signal handler can deadlock.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, frame: stopping.append(signal.Signals(number).name))
    if path.exists():
        path.unlink()
    # Everything loaded so far lives as long as the process: keep the garbage collector from
    # scanning it inside the process callback (a full collection there is a missed period).
    gc.collect()
    gc.freeze()
    with socketserver.UnixStreamServer(str(path), Handler) as control:
        thread = threading.Thread(
            target=control.serve_forever, name="ampcap-jack-control", daemon=True
        )
        try:
            device.client.activate()
            thread.start()
            print(
                f"{client_name} running on JACK server {server_name!r} at "
                f"{device.sample_rate_hz} Hz; knobs {device.knobs}",
                flush=True,
            )
            while not stopping and device.shutdown_reason is None:
                time.sleep(0.1)
        finally:
            if thread.is_alive():
                control.shutdown()
            # Deactivate before closing: a synchronous server stalls for seconds waiting on a
            # client that vanished without leaving the graph.
            try:
                device.client.deactivate()
            finally:
                device.client.close()
                path.unlink(missing_ok=True)
    if device.shutdown_reason is not None:
        raise DeviceError(f"The JACK server stopped: {device.shutdown_reason}")


def _parse_knobs(pairs: Sequence[str]) -> dict[str, float]:
    knobs: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            knobs[name] = float(value)
        except ValueError:
            raise UsageError(f"--knob {pair!r} is not NAME=VALUE (for example isf=5).") from None
    return knobs


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """ampcap's JACK device: the virtual amp on a JACK server, and a private dummy server.

    \b
    Example:
      python -m ampcap.capture.jack_device server --name ampcap &
      export JACK_DEFAULT_SERVER=ampcap JACK_NO_START_SERVER=1
      python -m ampcap.capture.jack_device serve --knob isf=0 &
      python -m ampcap.capture.jack_device set isf 5
    """


_name_option = click.option(
    "--name",
    "client_name",
    default=DEFAULT_CLIENT_NAME,
    show_default=True,
    help="JACK client name (the PortAudio device).",
)
_server_option = click.option(
    "--server",
    "server_name",
    default=None,
    help="JACK server name [default: $JACK_DEFAULT_SERVER or default].",
)


@cli.command("serve")
@_name_option
@_server_option
@click.option(
    "--knob",
    "knob_pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="Initial knob value; repeat for several knobs.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="The amp's seed.")
def serve_command(
    client_name: str, server_name: str | None, knob_pairs: tuple[str, ...], seed: int
) -> None:
    """Run the virtual amp as a JACK client until Ctrl-C or SIGTERM."""
    serve(client_name, server_name or server_name_from_env(), _parse_knobs(knob_pairs), seed)


@cli.command("set")
@_name_option
@_server_option
@click.argument("knob")
@click.argument("value", type=float)
def set_command(client_name: str, server_name: str | None, knob: str, value: float) -> None:
    """Set KNOB to VALUE on a running device (this also resets the amp's state)."""
    reply = request(server_name or server_name_from_env(), client_name, f"set {knob} {value!r}")
    click.echo(json.dumps(reply["knobs"]))


@cli.command("glitch")
@_name_option
@_server_option
@click.argument("seconds", type=float)
@click.option("--count", type=int, default=1, show_default=True, help="Takes to glitch.")
@click.option(
    "--skip",
    type=int,
    default=0,
    show_default=True,
    help="Takes to leave alone before the first glitch.",
)
def glitch_command(
    client_name: str, server_name: str | None, seconds: float, count: int, skip: int
) -> None:
    """Make the device miss its deadline for SECONDS, half a second into upcoming takes.

    A rehearsal of a dropout: PortAudio reports it as an input overflow and an output underflow,
    and `ampcap record` must record the take again.
    """
    reply = request(
        server_name or server_name_from_env(), client_name, f"glitch {seconds!r} {count} {skip}"
    )
    click.echo(json.dumps(reply["glitch"]))


@cli.command("server")
@click.option(
    "--name", "name", default=None, help="Server name [default: $JACK_DEFAULT_SERVER or default]."
)
@click.option("--rate", "sample_rate_hz", type=int, default=48000, show_default=True)
@click.option("--period", "period_frames", type=int, default=1024, show_default=True)
def server_command(name: str | None, sample_rate_hz: int, period_frames: int) -> None:
    """Run a private jackd (dummy backend, sync mode) until Ctrl-C or SIGTERM."""
    stopping: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, frame: stopping.append(number))
    server = JackServer(name or server_name_from_env(), sample_rate_hz, period_frames)
    with server:
        click.echo(
            f"jackd {server.name!r} running (dummy backend, {sample_rate_hz} Hz, "
            f"{period_frames} frames, sync, {'real-time' if server.realtime else 'normal'} "
            "priority); clients need "
            + " ".join(f"{k}={v}" for k, v in server.environment.items()),
            err=True,
        )
        while not stopping and server.process is not None and server.process.poll() is None:
            time.sleep(0.2)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m ampcap.capture.jack_device``; user errors exit with 2."""
    try:
        cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="python -m ampcap.capture.jack_device",
            standalone_mode=False,
        )
    except AmpcapError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)


def simulate(
    program: np.ndarray, sample_rate_hz: int, knobs: Mapping[str, float], seed: int = 0
) -> np.ndarray:
    """What the device's amp channel returns for ``program`` played from a fresh amp.

    Parameters
    ----------
    program : numpy.ndarray, float32, shape (frames,)
    sample_rate_hz : int
    knobs : mapping of str to float
    seed : int, default 0

    Returns
    -------
    numpy.ndarray, float32, shape (frames,)
        The amp's output, sample-aligned with ``program`` (the JACK round trip adds a whole
        number of periods on top).
    """
    from ampcap.capture.virtual import VirtualAmp

    amp = VirtualAmp(sample_rate_hz, seed)
    if knobs:
        amp.set_knobs(dict(knobs))
    return np.asarray(amp.process(np.asarray(program, dtype=np.float32)), dtype=np.float32)


if __name__ == "__main__":
    main()
