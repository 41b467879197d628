"""Benchmark: CPU and memory of ``ampcap record`` on the JACK rig, for takes of two lengths.

Starts a private JACK server (dummy backend, 48 kHz, 1024 frames, sync) with ampcap's JACK
device, writes a DI file long enough for a take of each length, and runs the real
``ampcap record`` once per length (one knob step), sampling the ampcap process (all its threads)
with psutil every 0.2 s. The dummy backend runs on the wall clock, so the run takes as long as
the takes (about 11 minutes for the default 1 and 10 minutes).

Printed as a Markdown table:

- *CPU while recording*: the process's user + system time over the wall time of the take
  (from its file appearing to the process exiting), in % of one core;
- *peak RSS while recording*: the largest resident set seen during the take;
- *peak RSS of the process*: VmHWM, which also covers building the program before the take.

Only a take's first attempt is measured: if it hits a dropout (the machine did not keep up),
the row says so and ampcap is stopped instead of recording the take again.

The bars: peak memory of the 10-minute take within 1.2x the 1-minute take's, and CPU at most
10 % of one core.

``--load`` adds a second table: a session of 10 short takes recorded idle, then beside 1 and 2
processes that each keep a core busy. It counts the takes that dropped out (PortAudio's
under/overflow flags) and were recorded again, and checks that every complete take is the
program and the amp's output sample for sample. How often a busy machine drops out depends on
the machine; that every dropout is caught does not, and the test suite asserts only that.

Usage::

    python benchmarks/capture.py [--minutes 1 10] [--load]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

from ampcap.capture.jack_device import JackServer, VirtualAmpProcess
from ampcap.errors import AmpcapError
from ampcap.schema.session import load_session

FS = 48000
# The program adds markers, two reference segments (3 s each, cut from the DI), gaps and a tail
# around the DI: about 12 s at 48 kHz.
PROGRAM_OVERHEAD_S = 12.0
MEMORY_BAR = 1.2
CPU_BAR_PERCENT = 10.0


@dataclass(frozen=True)
class Measurement:
    minutes: float
    status: str
    take_s: float
    wall_s: float
    cpu_percent: float
    take_peak_rss_mib: float
    process_peak_rss_mib: float
    dropouts: int


def write_di(path: Path, seconds: float) -> None:
    """A deterministic guitar-like DI (decaying harmonic notes), written in one-minute chunks."""
    rng = np.random.default_rng(0)
    note_s = 0.5
    t = np.arange(int(note_s * FS)) / FS
    with sf.SoundFile(str(path), "w", FS, 1, subtype="FLOAT") as out:
        left = int(seconds * FS)
        while left > 0:
            notes = []
            for _ in range(int(60 / note_s)):
                f0 = 82.4 * 2 ** (rng.integers(0, 24) / 12)
                note = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
                notes.append(note * np.exp(-4 * t) * rng.uniform(0.2, 0.5))
            chunk = np.concatenate(notes)[:left]
            out.write((0.5 * chunk / 2.3).astype(np.float32))
            left -= len(chunk)


def write_rig(path: Path) -> None:
    command = f"{sys.executable} -m ampcap.capture.jack_device set isf {{value}}"
    path.write_text(
        f"""name = "jack-bench"
kind = "audio"
[audio]
device = "ampcap-virtual-amp"
host_api = "JACK"
sample_rate_hz = {FS}
blocksize = 1024
latency = "high"
[safety]
max_output_dbfs = -1.0
[knobs.isf]
control = "command"
command = "{command}"
""",
        encoding="utf-8",
    )


def _hwm_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measure(minutes: float, folder: Path, env: dict[str, str]) -> Measurement:
    di = folder / f"di-{minutes:g}.wav"
    write_di(di, minutes * 60 - PROGRAM_OVERHEAD_S)
    out = folder / f"session-{minutes:g}"
    take = out / "takes" / "isf=5.wav"
    ampcap = Path(sys.executable).with_name("ampcap")
    command = [
        str(ampcap),
        "record",
        "--rig",
        str(folder / "rig.toml"),
        "--knob",
        "isf",
        "--steps",
        "1",
        "--range",
        "5:5",
        "--out",
        str(out),
        "--di",
        str(di),
        "--yes",
    ]
    with (
        open(folder / f"out-{minutes:g}.txt", "w") as stdout,
        open(folder / f"err-{minutes:g}.txt", "w") as stderr,
    ):
        process = psutil.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
        )
        return _watch(process, minutes, folder, take)


def _first_attempt_over(session: Path) -> bool:
    """Whether the take's first attempt has ended (complete, or failed on a dropout)."""
    try:
        (entry,) = load_session(session).takes
    except AmpcapError:
        return False  # not written yet
    return entry.status in ("complete", "failed")


def _watch(process: psutil.Popen, minutes: float, folder: Path, take: Path) -> Measurement:
    """Sample the process until its first take attempt ends; a retry is not measured (it would
    repeat the same take), the process is stopped with SIGINT instead."""
    session = take.parent.parent
    take_start: tuple[float, float] | None = None
    last: tuple[float, float] = (time.monotonic(), 0.0)
    take_peak = 0.0
    process_peak = 0.0
    checked = 0.0
    while process.poll() is None:
        try:
            with process.oneshot():
                rss = process.memory_info().rss / 2**20
                times = process.cpu_times()
            cpu = times.user + times.system
        except psutil.NoSuchProcess:
            break
        now = time.monotonic()
        process_peak = max(process_peak, _hwm_mib(process.pid), rss)
        if take_start is None and take.exists():
            take_start = (now, cpu)
        if take_start is not None:
            take_peak = max(take_peak, rss)
            last = (now, cpu)
            if now - checked > 0.5:
                checked = now
                if _first_attempt_over(session):
                    break
        time.sleep(0.2)
    (entry,) = load_session(session).takes if (session / "session.json").exists() else (None,)
    if process.poll() is None and entry is not None and entry.status != "complete":
        process.send_signal(signal.SIGINT)  # a dropout: do not measure the retries
    process.wait(120)
    if take_start is None or entry is None:
        errors = (folder / f"err-{minutes:g}.txt").read_text()[-2000:]
        raise SystemExit(f"ampcap record failed ({process.returncode}): {errors}")
    wall = last[0] - take_start[0]
    return Measurement(
        minutes=minutes,
        status=entry.status if entry.status == "complete" else f"{entry.status}: {entry.message}",
        take_s=entry.frames / FS,
        wall_s=wall,
        cpu_percent=100 * (last[1] - take_start[1]) / wall,
        take_peak_rss_mib=take_peak,
        process_peak_rss_mib=process_peak,
        dropouts=entry.underflows + entry.overflows,
    )


@dataclass(frozen=True)
class LoadRun:
    hogs: int
    takes: int
    attempts: int
    dropout_attempts: int
    runs: int
    complete_exact: int
    wall_s: float


def load_run(hogs: int, folder: Path, env: dict[str, str], takes: int = 10) -> LoadRun:
    """Record ``takes`` short takes beside ``hogs`` busy processes, resuming after a stop."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from jack_helpers import check_take, cpu_hogs, stop_processes
    from jack_helpers import write_di as write_short_di

    di = write_short_di(folder / "load-di.wav")
    out = folder / f"load-{hogs}"
    ampcap = Path(sys.executable).with_name("ampcap")
    command = [str(ampcap), "record", "--rig", str(folder / "rig.toml"), "--knob", "isf"]
    command += ["--steps", str(takes), "--out", str(out), "--di", str(di), "--yes"]
    started = time.monotonic()
    busy = cpu_hogs(hogs)
    runs = 0
    try:
        while runs < 4:
            runs += 1
            result = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True)
            if result.returncode == 0:
                break
            if result.returncode != 2:
                raise SystemExit(f"ampcap record failed: {result.stderr.decode()[-2000:]}")
    finally:
        stop_processes(busy)
    wall = time.monotonic() - started
    manifest = load_session(out)
    exact = 0
    for take in manifest.takes:
        if take.status == "complete":
            check_take(out, manifest, take)  # raises if a flagged or damaged take slipped through
            exact += 1
    attempts = sum(t.attempts for t in manifest.takes)
    return LoadRun(
        hogs, len(manifest.takes), attempts, attempts - len(manifest.takes), runs, exact, wall
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--minutes",
        type=float,
        nargs="+",
        default=[1.0, 10.0],
        help="take lengths in minutes (default: 1 10)",
    )
    parser.add_argument(
        "--load", action="store_true", help="also record 10 short takes beside busy processes"
    )
    args = parser.parse_args()
    server = JackServer(f"ampcap-bench-{os.getpid()}")
    with tempfile.TemporaryDirectory(prefix="ampcap-bench-capture-") as tmp:
        folder = Path(tmp)
        write_rig(folder / "rig.toml")
        with server, VirtualAmpProcess(server.name):
            env = {**os.environ, **server.environment}
            results = [measure(m, folder, env) for m in args.minutes]
            loads = [load_run(h, folder, env) for h in (0, 1, 2)] if args.load else []
    cpu = psutil.cpu_count()
    print(
        f"ampcap record on the JACK rig: jackd dummy backend, {FS} Hz, 1024 frames, sync, "
        f"{'real-time' if server.realtime else 'normal'} priority; {cpu} CPU(s); "
        f"Python {sys.version.split()[0]}\n"
    )
    print(
        "| take | take length (s) | recording wall time (s) | CPU while recording "
        "(% of one core) | peak RSS while recording (MiB) | peak RSS of the process (MiB) "
        "| dropout flags | take |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(
            f"| {r.minutes:g} min | {r.take_s:.1f} | {r.wall_s:.1f} | {r.cpu_percent:.1f} | "
            f"{r.take_peak_rss_mib:.1f} | {r.process_peak_rss_mib:.1f} | {r.dropouts} | "
            f"{r.status} |"
        )
    if len(results) >= 2:
        short, long = results[0], results[-1]
        ratio = long.take_peak_rss_mib / short.take_peak_rss_mib
        whole = long.process_peak_rss_mib / short.process_peak_rss_mib
        worst_cpu = max(r.cpu_percent for r in results)
        print()
        print(
            f"- peak RSS while recording, {long.minutes:g} min / {short.minutes:g} min: "
            f"{ratio:.2f}x (bar <= {MEMORY_BAR}x: {'pass' if ratio <= MEMORY_BAR else 'FAIL'})"
        )
        print(
            f"- peak RSS of the whole process (includes building the program), "
            f"{long.minutes:g} min / {short.minutes:g} min: {whole:.2f}x"
        )
        print(
            f"- CPU while recording, worst: {worst_cpu:.1f} % of one core (bar <= "
            f"{CPU_BAR_PERCENT:g} %: {'pass' if worst_cpu <= CPU_BAR_PERCENT else 'FAIL'})"
        )

    if loads:
        print()
        print(
            "| CPU hogs beside | takes | attempts | takes that dropped out and were recorded "
            "again | runs of the command | complete takes, exact | wall (s) |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for r in loads:
            print(
                f"| {r.hogs} | {r.takes} | {r.attempts} | {r.dropout_attempts} | {r.runs} | "
                f"{r.complete_exact}/{r.takes} | {r.wall_s:.1f} |"
            )


if __name__ == "__main__":
    main()
