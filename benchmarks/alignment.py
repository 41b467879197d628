"""Alignment accuracy, speed and memory on recordings with known truth; prints Markdown tables.

Each case records ampcap's real program (built-in DI, markers, references) through the virtual
amp at one ``isf`` setting and the virtual interface with a random round-trip latency (0-5000
samples, fractional), clock drift (±300 ppm), converter noise (-90 to -40 dBFS), device gain
(-12 to +6 dB) and polarity, then aligns the session with ``ampcap.dataset.align`` exactly as
``ampcap align`` does (files read, pairs and manifest written). A third of the cases have no
loopback (a silent loopback input): the device is then measured against the program itself.

Truth. The interface reads the played signal at ``n / (1 + drift) - latency``, so the loopback
latency at program sample 0 is ``(1 + drift)·latency``. The device channel also carries the
amp's own delay, which no interface setting decides: it is measured once per knob setting on
the amp's clean output (no interface, no noise) with the same phase-weighted correlation, and
added, so the device-latency error measures what the interface, the noise and the drift do to
the estimate.

Usage::

    python benchmarks/alignment.py [--cases 120] [--di-seconds 30] [--seed 0]

Throughput is seconds of take (two channels) aligned per second, on one core (BLAS and FFT
threads pinned to 1): per second of the process's CPU time (user + system, so file writes
count), and per second of wall-clock time, which a machine shared with other jobs inflates. Peak memory is the largest Python/numpy allocation traced
during one take's alignment, over the size of that take in memory (frames × 2 × float32).
"""

from __future__ import annotations

import os

# One core: pin the thread pools before numpy loads them.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from align_helpers import Rig, record, write_session  # noqa: E402

from ampcap.capture.di import builtin_di  # noqa: E402
from ampcap.capture.program import build_program  # noqa: E402
from ampcap.capture.rig import SafetySettings  # noqa: E402
from ampcap.capture.virtual import VirtualAmp  # noqa: E402
from ampcap.dataset.align import align_session  # noqa: E402
from ampcap.dataset.delay import estimate_window  # noqa: E402

KNOB_VALUES = (0.0, 2.5, 5.0, 7.5, 10.0)
RATES = (48000, 44100, 96000)


@dataclass(frozen=True)
class Outcome:
    rate: int
    knob: float
    loopback: bool
    snr_db: float
    verdict: str
    loopback_error: float | None
    device_error: float | None
    drift_error: float | None
    polarity_ok: bool
    take_seconds: float
    align_seconds: float
    cpu_seconds: float
    memory_ratio: float


class _Program:
    """The program at one rate, and the amp's clean output and own delay per knob setting."""

    def __init__(self, rate: int, di_seconds: float) -> None:
        built = build_program(builtin_di(di_seconds, rate), rate, SafetySettings(-1.0, 20.0))
        self.rate = rate
        self.audio = built.samples
        self.layout = built.program
        self._device: dict[float, tuple[np.ndarray, float]] = {}

    def device(self, knob: float) -> tuple[np.ndarray, float]:
        if knob not in self._device:
            amp = VirtualAmp(self.rate)
            amp.set_knobs({"isf": knob})
            clean = amp.process(self.audio)
            marker = self.layout.section("marker_start")
            own = estimate_window(
                self.audio.astype(np.float64),
                clean,
                marker.start,
                self.layout.marker.length,
                -64,
                64,
                weighting="phat",
            )
            self._device[knob] = (clean, own.latency_samples)
        return self._device[knob]


def _layout_program(program: _Program):
    from align_helpers import SyntheticProgram

    return SyntheticProgram(program.audio, program.layout, program.rate)


def run_case(program: _Program, knob: float, rig: Rig, loopback: bool, work: Path) -> Outcome:
    clean, own_delay = program.device(knob)
    take = record(program.audio, clean, rig, program.rate)
    if not loopback:
        take[:, 0] = 0.0
    folder = work / "session"
    shutil.rmtree(folder, ignore_errors=True)
    write_session(folder, _layout_program(program), {knob: take})
    frames = len(take)

    started, cpu_started = time.perf_counter(), time.process_time()
    result = align_session(folder).takes[0]
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    # Memory in a second run: tracing every allocation slows the first one down.
    tracemalloc.start()
    align_session(folder)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    di = program.layout.section("di")
    level = np.sqrt(np.mean(clean[di.start : di.stop] ** 2)) * 10 ** (rig.gain_db / 20)
    snr = 20 * np.log10(level) - rig.noise_dbfs
    e = result.estimates
    step = 1 + rig.drift_ppm * 1e-6
    device_truth = step * (rig.latency_samples + own_delay)
    loop_error = (
        e["loopback_latency_samples"] - rig.latency_at_zero()
        if loopback and e.get("loopback_latency_samples") is not None
        else None
    )
    return Outcome(
        rate=program.rate,
        knob=knob,
        loopback=loopback,
        snr_db=float(snr),
        verdict=result.verdict,
        loopback_error=loop_error,
        device_error=(e["latency_samples"] - device_truth) if "latency_samples" in e else None,
        drift_error=(e["drift_ppm"] - rig.drift_ppm) if "drift_ppm" in e else None,
        polarity_ok=e.get("polarity") == rig.polarity,
        take_seconds=frames / program.rate,
        align_seconds=elapsed,
        cpu_seconds=cpu,
        memory_ratio=peak / (frames * 2 * 4),
    )


def _stats(values: list[float]) -> str:
    if not values:
        return "-"
    a = np.abs(np.asarray(values))
    return f"{np.median(a):.4f} / {np.percentile(a, 95):.4f} / {np.max(a):.4f}"


def _table(groups: dict[str, list[Outcome]], targets: dict[str, str]) -> str:
    names = list(groups)
    lines = [
        "| metric | "
        + " | ".join(f"{n} (n={len(groups[n])})" for n in names)
        + " | target (SNR ≥ 40 dB) |",
        "|---|" + "---|" * (len(names) + 1),
    ]

    def row(metric: str, cell) -> None:
        lines.append(
            f"| {metric} | "
            + " | ".join(cell(groups[n]) for n in names)
            + f" | {targets.get(metric, '')} |"
        )

    row(
        "loopback latency error, samples (median / 95th / max)",
        lambda g: _stats([o.loopback_error for o in g if o.loopback_error is not None]),
    )
    row(
        "device latency error, samples (median / 95th / max)",
        lambda g: _stats([o.device_error for o in g if o.device_error is not None]),
    )
    row(
        "drift error, ppm (median / 95th / max)",
        lambda g: _stats([o.drift_error for o in g if o.drift_error is not None]),
    )
    row(
        "polarity correct",
        lambda g: f"{100 * np.mean([o.polarity_ok for o in g]):.1f} %" if g else "-",
    )
    row("refused (verdict failed)", lambda g: str(sum(o.verdict == "failed" for o in g)))
    row("warnings (verdict warning)", lambda g: str(sum(o.verdict == "warning" for o in g)))
    row(
        "throughput, × real time (CPU time, one core)",
        lambda g: (
            f"{sum(o.take_seconds for o in g) / sum(o.cpu_seconds for o in g):.0f}×" if g else "-"
        ),
    )
    row(
        "throughput, × real time (wall clock)",
        lambda g: (
            f"{sum(o.take_seconds for o in g) / sum(o.align_seconds for o in g):.0f}×" if g else "-"
        ),
    )
    row(
        "peak memory / one take (max)",
        lambda g: f"{max(o.memory_ratio for o in g):.2f}×" if g else "-",
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=120)
    parser.add_argument("--di-seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    programs: dict[int, _Program] = {}
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="ampcap-bench-") as tmp:
        for case in range(args.cases):
            rate = RATES[case % len(RATES)] if case % 4 == 3 else 48000
            if rate not in programs:
                programs[rate] = _Program(rate, args.di_seconds)
            knob = KNOB_VALUES[case % len(KNOB_VALUES)]
            rig = Rig(
                latency_samples=float(rng.uniform(0, 5000)),
                drift_ppm=float(rng.uniform(-300, 300)),
                polarity=int(rng.choice([-1, 1])),
                gain_db=float(rng.uniform(-12, 6)),
                noise_dbfs=float(rng.uniform(-90, -40)),
                seed=case,
            )
            loopback = case % 3 != 2
            outcome = run_case(programs[rate], knob, rig, loopback, Path(tmp))
            outcomes.append(outcome)
            print(
                f"case {case + 1}/{args.cases}: {rate} Hz isf={knob:g} "
                f"loopback={'yes' if loopback else 'no'} SNR {outcome.snr_db:.0f} dB "
                f"-> {outcome.verdict}, device error {outcome.device_error:+.4f}",
                file=sys.stderr,
            )

    high = [o for o in outcomes if o.snr_db >= 40]
    targets = {
        "loopback latency error, samples (median / 95th / max)": "median ≤ 0.02, max ≤ 0.1",
        "device latency error, samples (median / 95th / max)": "median ≤ 0.02, max ≤ 0.1",
        "drift error, ppm (median / 95th / max)": "≤ 0.5",
        "polarity correct": "100 %",
        "throughput, × real time (CPU time, one core)": "≥ 200×",
        "peak memory / one take (max)": "≤ 2×",
    }
    print(
        f"\n### Alignment benchmark: {args.cases} cases, DI {args.di_seconds:g} s "
        f"(takes of {outcomes[0].take_seconds:.1f} s), seed {args.seed}\n"
    )
    print(
        _table(
            {
                "SNR ≥ 40 dB": high,
                "SNR < 40 dB": [o for o in outcomes if o.snr_db < 40],
                "all": outcomes,
            },
            targets,
        )
    )
    print()
    print(
        _table(
            {
                "with loopback": [o for o in high if o.loopback],
                "without loopback": [o for o in high if not o.loopback],
            },
            {},
        )
    )
    print()
    print(_table({f"{rate} Hz": [o for o in high if o.rate == rate] for rate in RATES}, {}))


if __name__ == "__main__":
    main()
