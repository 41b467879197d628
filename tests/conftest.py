"""Fixtures shared by the tests: the ``ampcap`` command run in-process (:func:`cli`) or as its
own process (:func:`ampcap_process`), both answering a :class:`CliResult`, and for the real-audio
tests a private JACK server and ampcap's JACK device.

Tests marked ``jack`` record through PortAudio and a real ``jackd`` (dummy backend, synchronous
mode, 1024-frame periods, a server name no other process uses). They are skipped, with the
reason, where jackd, libjack, libportaudio or JACK-Client is missing; with
``AMPCAP_REQUIRE_JACK=1`` (set by ``make test``, which installs them) a missing piece fails them
instead, so CI can never pass by skipping the audio path.

The pytest process itself never opens PortAudio on the private server: ``ampcap`` runs as a
subprocess with :func:`jack_env`'s environment, so PortAudio starts and stops inside it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from ampcap.capture.jack_device import JackServer, VirtualAmpProcess, jack_unavailable_reason

# No process started by the tests may spawn a JACK server of its own behind our back.
os.environ["JACK_NO_START_SERVER"] = "1"


@dataclass(frozen=True)
class CliResult:
    """What ``ampcap ARGS`` did: its exit status and what it wrote on stdout and stderr."""

    code: int
    out: str
    err: str

    @property
    def err_flat(self) -> str:
        """stderr with every run of whitespace made one space (messages wrap at the terminal)."""
        return " ".join(self.err.split())

    @property
    def output_flat(self) -> str:
        """stderr then stdout, whitespace collapsed: for checks that do not care which stream."""
        return " ".join((self.err + " " + self.out).split())


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``ampcap ARGS`` in this process, as the console script does, and return a
    :class:`CliResult`; ``cwd`` runs it from that folder. Standard input is not a terminal
    under pytest, exactly as in a script; user errors give status 2 and one message, an
    interrupted command 130 or 143."""
    from ampcap.cli import main

    def run(*args: object, cwd: Path | None = None) -> CliResult:
        capsys.readouterr()
        here = Path.cwd()
        try:
            if cwd is not None:
                os.chdir(cwd)
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:
            code = 0
        finally:
            os.chdir(here)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def ampcap_process() -> Callable[..., CliResult]:
    """Run ``python -m ampcap ARGS`` as its own process and return a :class:`CliResult`.

    For what only a real process shows: the exit status the shell sees, imports at start-up,
    the terminal width from ``COLUMNS``, a recording through PortAudio. Standard input is
    ``/dev/null``, as in CI, and ``AMPCAP_DEBUG`` is unset unless ``env`` sets it; ``env``
    adds to (or overrides) this process's environment, e.g. ``{"COLUMNS": "100"}`` or
    :func:`jack_env`. ``timeout`` fails a command that hangs; ``check=True`` fails the test,
    with what the command wrote, unless it exited 0; ``preexec_fn`` runs in the child before
    ampcap starts (resource limits).
    """

    def run(
        *args: object,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 600,
        check: bool = False,
        preexec_fn: Callable[[], object] | None = None,
    ) -> CliResult:
        environment = {k: v for k, v in os.environ.items() if k != "AMPCAP_DEBUG"}
        environment.update(env or {})
        command = [sys.executable, "-m", "ampcap", *map(str, args)]
        options = {"cwd": cwd, "env": environment, "timeout": timeout, "preexec_fn": preexec_fn}
        no_input = subprocess.DEVNULL  # standard input is not a terminal, as in CI
        done = subprocess.run(command, stdin=no_input, capture_output=True, text=True, **options)
        result = CliResult(done.returncode, done.stdout, done.stderr)
        if check:
            command = " ".join(map(str, args))
            assert result.code == 0, f"ampcap {command} exited {result.code}:\n{result.err}"
        return result

    return run


#: The JACK device's knob value when the suite starts (every take sets it again).
DEVICE_START_KNOBS = {"isf": 5.0}


def _jack_required() -> bool:
    return os.environ.get("AMPCAP_REQUIRE_JACK") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = jack_unavailable_reason()
    if reason is None or _jack_required():
        return
    skip = pytest.mark.skip(reason=f"needs a JACK server and PortAudio: {reason}")
    for item in items:
        if "jack" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def jack_server() -> Iterator[JackServer]:
    """A private jackd (dummy backend, 48 kHz, 1024 frames, sync) for the whole test session."""
    reason = jack_unavailable_reason()
    if reason is not None:
        pytest.fail(f"AMPCAP_REQUIRE_JACK=1 but the JACK tests cannot run: {reason}")
    server = JackServer(f"ampcap-test-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    with server:
        yield server


@pytest.fixture(scope="session")
def jack_device(jack_server: JackServer) -> Iterator[VirtualAmpProcess]:
    """ampcap's JACK device, "ampcap-virtual-amp", on the private server."""
    with VirtualAmpProcess(jack_server.name, knobs=DEVICE_START_KNOBS) as device:
        yield device


@pytest.fixture(scope="session")
def jack_env(jack_server: JackServer, jack_device: VirtualAmpProcess) -> dict[str, str]:
    """The environment for subprocesses that must reach the private server and its device."""
    return {**os.environ, **jack_server.environment}
