"""Alignment accuracy, speed and memory on recordings with known truth; prints Markdown tables.

Two parts: ampcap's own virtual amp inside capture sessions (``--only virtual``), and devices
ampcap did not make, Guitarix LV2 plug-ins run with ``lv2apply`` on realistic guitar and bass
DI rendered by FluidSynth (``--only devices``; see :mod:`thirdparty` and the second part of
this text).

Part one: the virtual amp.

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

Part two: third-party devices. Each of eight plug-ins (a clean preamp, a small tube amp, an
overdrive, a distortion, two fuzzes, two high-gain amps) at low, middle and maximum gain, at
44.1 and 48 kHz, on 30 s of guitar DI and of bass DI (every combination):

- **DAW pairs** (no markers, no loopback): the plug-in's output, with 0-2 s of its own tail,
  recorded through a simulated interface (:class:`thirdparty.Interface`): fractional latency
  0-5000 samples, drift ±300 ppm, input trim putting the peak at -18 to -3 dBFS, white noise
  -90 to -50 dBFS, 50 or 60 Hz hum with odd harmonics at -80 to -50 dBFS, random polarity;
  a third of the outputs the whole DI (a bounce), the others cut to 50-100 % of it. Aligned
  with ``ampcap.dataset.pairs.align_files`` exactly as ``ampcap align --input --output`` does.
- **Pairs with a loopback** (every third combination): the same, plus the DI recorded through
  the same interface (same latency and drift, its own noise): the interface latency is checked
  against the truth.
- **Must-refuse cases**: unrelated music through the device, noise only, noise with hum,
  silence, near-silence, a file at another sample rate, a file whose content plays at another
  rate than its header says, the DI reversed, another instrument's DI.
- **The same take, other noise**: the two DAW pairs whose drift was read worst, recorded again
  with eight other noise draws (everything else as drawn) and once without noise: whether the
  error is chance, which another recording would change, or set by the take itself.
- **Sessions**: three plug-ins at five gain settings inside a capture session (ampcap's program
  with the realistic DI, takes recorded through the virtual interface), aligned with
  ``align_session``: every take must align; the latency per setting is printed.

Truth for a device. The interface's part is known. A device's own delay is not one number:
its phase turns with frequency (tone stacks, coupling capacitors), so every reading of "the"
delay weighs frequencies somehow, and distortion changes which frequencies carry the linear
part of the output. The benchmark takes the device's delay as ampcap's marker-free estimator
reads it on the device's own output, on the same stretch of DI (the part whose output the
recording holds), with no interface: the error then measures what the interface (latency,
drift, noise, hum, trim, polarity, tail, cut) does to the estimate. A second table compares
that reading with the lag of the device's response to a low-level impulse, and with the
reading on the DI played 40 dB quieter (small signal), to show how much of a device's delay is
a matter of definition; the pair tables also give the latency error against the impulse
definition (the interface's latency plus that lag), so both can be read.

Usage::

    python benchmarks/alignment.py [--cases 120] [--di-seconds 30] [--seed 0]
                                   [--only virtual|devices]
                                   [--device NAME ...] [--instrument guitar|bass] [--pairs-only]

The drift's reported standard error is checked against the drift's actual error: a calibrated
one holds 64 % of the errors within one standard error and 91 % within two (a Student t with the
six degrees of freedom of eight windows).

Throughput is seconds of take (two channels) aligned per second, on one core (BLAS and FFT
threads pinned to 1): per second of the process's CPU time (user + system, so file writes
count), and per second of wall-clock time, which a machine shared with other jobs inflates. For
the third-party pairs a second row leaves out the writing of the aligned pair (resampling it
through the drift, the file, its hash and fsync): what reading the files and the estimate cost.
Peak memory is the largest Python/numpy allocation traced during one take's alignment, over the
size of that take in memory (frames × 2 × float32).
"""

from __future__ import annotations

import os

# One core: pin the thread pools before numpy loads them.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import itertools  # noqa: E402
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ampcap.capture.virtual import VirtualAmp  # noqa: E402
from ampcap.dataset.align import align_session  # noqa: E402
from ampcap.dataset.delay import track_latency  # noqa: E402

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
            windows = [
                (self.layout.section(name).start, self.layout.marker.length)
                for name in ("marker_start", "marker_end")
            ]
            own = track_latency(
                self.audio.astype(np.float64),
                clean,
                windows,
                min_latency_samples=-64,
                max_latency_samples=64,
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


# --- third-party devices -------------------------------------------------------------------

POSITIONS = (0.0, 0.5, 1.0)
DEVICE_RATES = (44100, 48000)
PAIR_DI_SECONDS = 30.0


@dataclass(frozen=True)
class PairOutcome:
    device: str
    position: float
    rate: int
    instrument: str
    loopback: bool
    snr_db: float
    refused: str
    latency_error: float | None
    loopback_error: float | None
    drift_error: float | None
    polarity_ok: bool
    coherence: float
    take_seconds: float
    cpu_seconds: float
    memory_ratio: float
    #: Latency error against the other definition of the device's delay: the interface's
    #: latency plus the lag of the device's response to a low-level impulse.
    impulse_latency_error: float | None = None
    #: The drift's standard error as ampcap reports it (None with a loopback).
    drift_standard_error: float | None = None
    #: Of ``cpu_seconds``, the time spent writing the aligned pair (resampling, file, hash).
    writing_seconds: float = 0.0


@functools.cache
def _impulse_lag(device, position: float, rate: int) -> float:
    """The lag of the device's response to a low-level impulse, samples (read once)."""
    from thirdparty import device_delay

    return device_delay(device, position, rate)


def _own_reading(di: np.ndarray, output: np.ndarray, rate: int, frames: int):
    """The device's delay and polarity as the estimator reads them on its own output."""
    from ampcap.dataset.coherence import track_coherent

    return track_coherent(
        di[:frames],
        output[:frames].astype(np.float32),
        rate,
        min_latency_samples=-rate // 20,
        max_latency_samples=rate // 20,
        drift=False,
    )


def _measure(call):
    """Run ``call`` twice: CPU seconds of the first run and of the part of it spent writing the
    aligned pair (resampling, file and hash), and traced peak bytes of the second."""
    from ampcap.dataset import pairs

    writing = 0.0
    render = pairs.render_aligned

    def timed_render(*args, **kwargs):
        nonlocal writing
        start = time.process_time()
        try:
            return render(*args, **kwargs)
        finally:
            writing += time.process_time() - start

    pairs.render_aligned = timed_render
    try:
        cpu = time.process_time()
        result = call()
        cpu = time.process_time() - cpu
    finally:
        pairs.render_aligned = render
    tracemalloc.start()
    call()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, cpu, writing, peak


def draw_recording(rng):
    """A random interface, the fraction of the DI its output covers, and its tail (seconds)."""
    from thirdparty import Interface

    interface = Interface(
        latency_samples=float(rng.uniform(0, 5000)),
        drift_ppm=float(rng.uniform(-300, 300)),
        polarity=int(rng.choice([-1, 1])),
        peak_dbfs=float(rng.uniform(-18, -3)),
        noise_dbfs=float(rng.uniform(-90, -50)),
        hum_dbfs=float(rng.uniform(-80, -50)),
        mains_hz=float(rng.choice([50.0, 60.0])),
        seed=int(rng.integers(1 << 30)),
    )
    # A third are bounces of the whole DI, the most common case; the rest stop early.
    cut = 1.0 if rng.random() < 1 / 3 else float(rng.uniform(0.5, 1.0))
    tail = float(rng.uniform(0.0, 2.0)) if cut > 0.97 else 0.0
    return interface, cut, tail


def device_pair_case(
    device,
    position: float,
    rate: int,
    instrument: str,
    loopback: bool,
    recording: tuple,
    work: Path,
) -> PairOutcome:
    from thirdparty import Interface, realistic_di, run_device

    from ampcap.dataset.pairs import align_files
    from ampcap.errors import AlignmentError
    from ampcap.files import write_audio

    di = realistic_di(PAIR_DI_SECONDS, rate, instrument, seed=1 if instrument == "bass" else 0)
    output = run_device(device, position, di, rate, tail_seconds=2.0)
    interface, cut, tail = recording
    frames = int(len(di) * cut + tail * rate)
    recorded = interface.record(output, frames, rate)
    # The stretch of DI whose output the recording holds: the cut, less what the latency
    # pushes past the recording's end.
    held = (frames - 1 - interface.latency_at_zero()) / (1 + interface.drift_ppm * 1e-6)
    covered = max(min(int(len(di) * cut), int(held), len(di)), rate)
    own = _own_reading(di, output, rate, covered)
    files = {"di": work / "di.wav", "out": work / "out.wav", "lb": work / "lb.wav"}
    write_audio(files["di"], di, rate)
    write_audio(files["out"], recorded, rate)
    if loopback:
        wire = Interface(
            **{
                **interface.__dict__,
                "polarity": 1,
                "hum_dbfs": -200.0,
                "peak_dbfs": 20 * np.log10(np.max(np.abs(di))),
                "seed": interface.seed + 1,
            }
        )
        write_audio(files["lb"], wire.record(di.astype(np.float64), frames, rate), rate)
    level = float(np.sqrt(np.mean(recorded[: int(0.5 * len(di)) : 7].astype(np.float64) ** 2)))
    snr = 20 * np.log10(max(level, 1e-12)) - 10 * np.log10(
        10 ** (interface.noise_dbfs / 10)
        + 10 ** (interface.hum_dbfs / 10) * (1 + 1 / 9 + 1 / 25) / 2
    )
    step = 1 + interface.drift_ppm * 1e-6
    truth = interface.latency_at_zero() + step * own.latency_samples
    impulse_truth = interface.latency_at_zero() + step * _impulse_lag(device, position, rate)
    call = lambda: align_files(  # noqa: E731
        files["di"], files["out"], files["lb"] if loopback else None, out_path=work / "pair.wav"
    )
    try:
        result, cpu, writing, peak = _measure(call)
    except AlignmentError as exc:
        return PairOutcome(
            device.name,
            position,
            rate,
            instrument,
            loopback,
            snr,
            str(exc),
            None,
            None,
            None,
            False,
            0.0,
            frames / rate,
            1.0,
            0.0,
        )
    take_bytes = (len(di) + frames * (2 if loopback else 1)) * 4
    return PairOutcome(
        device=device.name,
        position=position,
        rate=rate,
        instrument=instrument,
        loopback=loopback,
        snr_db=float(snr),
        refused="",
        latency_error=result.latency_samples - truth,
        loopback_error=(
            result.loopback_latency_samples - interface.latency_at_zero() if loopback else None
        ),
        drift_error=result.drift_ppm - interface.drift_ppm,
        polarity_ok=result.polarity == interface.polarity * own.polarity,
        coherence=result.coherence,
        take_seconds=frames / rate,
        cpu_seconds=cpu,
        writing_seconds=writing,
        memory_ratio=peak / take_bytes,
        impulse_latency_error=result.latency_samples - impulse_truth,
        drift_standard_error=result.drift_error_ppm,
    )


NOISE_DRAWS = 8


def noise_draws(device, position: float, rate: int, played: str, recording, work: Path) -> str:
    """A Markdown row: the pair's drift error (ppm) as drawn, with :data:`NOISE_DRAWS` other
    noise draws, and without noise, the interface otherwise the same."""
    interface, cut, tail = recording

    def drift_error(**change) -> float:
        again = (dataclasses.replace(interface, **change), cut, tail)
        outcome = device_pair_case(device, position, rate, played, False, again, work)
        return float("nan") if outcome.drift_error is None else outcome.drift_error

    drawn = drift_error()
    others = np.array([drift_error(seed=interface.seed + k) for k in range(1, NOISE_DRAWS + 1)])
    quiet = drift_error(noise_dbfs=-200.0)
    same_side = int(np.sum(np.sign(others) == np.sign(drawn)))
    return (
        f"| {device.name} {position:g}, {rate} Hz, {played} | {interface.noise_dbfs:.0f} dBFS "
        f"| {drawn:+.2f} | {others.min():+.2f} / {np.median(others):+.2f} / {others.max():+.2f} "
        f"| {same_side} of {NOISE_DRAWS} | {quiet:+.2f} |"
    )


def refusal_cases(rate: int, work: Path) -> list[tuple[str, bool, str]]:
    """(case, refused, message) for recordings that are not of the DI."""
    from thirdparty import DEVICES, realistic_di, run_device

    from ampcap.dataset.pairs import align_files
    from ampcap.errors import AlignmentError, AmpcapError
    from ampcap.files import write_audio

    rng = np.random.default_rng(7)
    di = realistic_di(PAIR_DI_SECONDS, rate, "guitar", seed=0)
    frames = len(di)
    other = realistic_di(PAIR_DI_SECONDS, rate, "guitar", seed=5)
    bass = realistic_di(PAIR_DI_SECONDS, rate, "bass", seed=1)
    t = np.arange(frames) / rate
    hum = 0.01 * sum(np.sin(2 * np.pi * k * 50 * t) / k for k in (1, 3, 5))
    from scipy import signal

    sped = signal.resample_poly(run_device(DEVICES["ts9"], 0.5, di, rate), 160, 147)[:frames]
    cases = {
        "other music through the high-gain amp": run_device(DEVICES["metalhead"], 1.0, other, rate),
        "other music through the fuzz": run_device(DEVICES["hornet"], 1.0, other, rate),
        "other music through the clean preamp": run_device(DEVICES["studiopre"], 0.5, other, rate),
        "a bass DI through the overdrive": run_device(DEVICES["ts9"], 0.5, bass, rate),
        "the DI reversed, through the distortion": run_device(
            DEVICES["ds1"], 0.5, di[::-1].copy(), rate
        ),
        "white noise": 0.1 * rng.standard_normal(frames),
        "noise and mains hum": 0.02 * rng.standard_normal(frames) + hum,
        "silence": np.zeros(frames),
        "near-silence (-110 dBFS noise)": 10 ** (-110 / 20) * rng.standard_normal(frames),
        "content at another rate than its header (48 k played as 44.1 k)": sped,
    }
    outcomes = []
    write_audio(work / "di.wav", di, rate)
    for name, audio in cases.items():
        write_audio(work / "x.wav", audio, rate)
        try:
            align_files(work / "di.wav", work / "x.wav", out_path=work / "pair.wav")
            outcomes.append((name, False, ""))
        except (AlignmentError, AmpcapError) as exc:
            outcomes.append((name, True, str(exc)))
    write_audio(work / "x.wav", run_device(DEVICES["ts9"], 0.5, di, rate), rate + 3900)
    try:
        align_files(work / "di.wav", work / "x.wav", out_path=work / "pair.wav")
        outcomes.append(("a file at another sample rate", False, ""))
    except (AlignmentError, AmpcapError) as exc:
        outcomes.append(("a file at another sample rate", True, str(exc)))
    return outcomes


def session_cases(rate: int, work: Path) -> list[dict]:
    """Three plug-ins at five settings inside a session; every take aligned."""
    from align_helpers import Rig, record, write_session
    from thirdparty import DEVICES, realistic_di, run_device

    from ampcap.capture.di import DiSource
    from ampcap.dataset.align import align_session

    sources = [
        DiSource("guitar", "guitar", realistic_di(20.0, rate, "guitar", 0), "fluidsynth"),
        DiSource("bass", "bass", realistic_di(10.0, rate, "bass", 1), "fluidsynth"),
    ]
    built = build_program(sources, rate, SafetySettings(-1.0, 20.0))
    program = _LayoutProgram(built.samples, built.program, rate)
    rows = []
    rng = np.random.default_rng(11)
    for name in ("studiopre", "hornet", "metalhead"):
        device = DEVICES[name]
        rig = Rig(
            latency_samples=float(rng.uniform(100, 3000)),
            drift_ppm=float(rng.uniform(-100, 100)),
            polarity=int(rng.choice([-1, 1])),
            noise_dbfs=-80.0,
            seed=int(rng.integers(1 << 20)),
        )
        takes = {}
        for k, position in enumerate((0.0, 0.25, 0.5, 0.75, 1.0)):
            output = run_device(device, position, built.samples, rate)
            takes[float(k)] = record(built.samples, output, rig, rate)
        folder = work / f"session-{name}"
        shutil.rmtree(folder, ignore_errors=True)
        write_session(folder, program, takes, knob="gain")
        manifest = align_session(folder)
        for take in manifest.takes:
            e = take.estimates
            rows.append(
                {
                    "device": name,
                    "setting": take.knobs["gain"] / 4,
                    "verdict": take.verdict,
                    "method": e.get("device_method", "-"),
                    "loopback_error": (e["loopback_latency_samples"] - rig.latency_at_zero())
                    if e.get("loopback_latency_samples") is not None
                    else None,
                    "device_latency": e.get("device_latency_samples"),
                    "drift_error": e["drift_ppm"] - rig.drift_ppm if "drift_ppm" in e else None,
                }
            )
    return rows


@dataclass(frozen=True)
class _LayoutProgram:
    audio: np.ndarray
    layout: object
    sample_rate_hz: int


def definition_table(rate: int) -> str:
    """The device's delay three ways: impulse-response lag, small signal, playing level."""
    from thirdparty import DEVICES, device_delay, realistic_di, run_device

    di = realistic_di(PAIR_DI_SECONDS, rate, "guitar", seed=0)
    lines = [
        "| device | gain | impulse-response lag | estimator, DI at -40 dB | estimator, DI at "
        "playing level |",
        "|---|---:|---:|---:|---:|",
    ]
    for device in DEVICES.values():
        for position in POSITIONS:
            quiet = _own_reading(di, run_device(device, position, di * 0.01, rate), rate, len(di))
            loud = _own_reading(di, run_device(device, position, di, rate), rate, len(di))
            lines.append(
                f"| {device.name} ({device.kind}) | {position:g} | "
                f"{device_delay(device, position, rate):.2f} | {quiet.latency_samples:.2f} | "
                f"{loud.latency_samples:.2f} |"
            )
    return "\n".join(lines)


def _within_standard_errors(outcomes: list[PairOutcome]) -> str:
    """Shares of drift errors within one and two reported standard errors (pairs without a
    loopback; a Student t with 6 degrees of freedom, eight windows, gives 64 % / 91 %)."""
    scores = [
        abs(o.drift_error) / o.drift_standard_error
        for o in outcomes
        if o.drift_error is not None and o.drift_standard_error
    ]
    if not scores:
        return "-"
    within = [100 * np.mean([score <= k for score in scores]) for k in (1, 2)]
    return f"{within[0]:.0f} % / {within[1]:.0f} %"


def _pair_table(groups: dict[str, list[PairOutcome]], targets: dict[str, str]) -> str:
    names = list(groups)
    lines = [
        "| metric | " + " | ".join(f"{n} (n={len(groups[n])})" for n in names) + " | target |",
        "|---|" + "---|" * (len(names) + 1),
    ]

    def row(metric: str, cell) -> None:
        lines.append(
            f"| {metric} | "
            + " | ".join(cell(groups[n]) for n in names)
            + f" | {targets.get(metric, '')} |"
        )

    def aligned(g):
        return [o for o in g if not o.refused]

    row("refused", lambda g: str(sum(bool(o.refused) for o in g)))
    row(
        "latency error, samples (median / 95th / max)",
        lambda g: _stats([o.latency_error for o in aligned(g)]),
    )
    row(
        "latency error against the impulse-response lag, samples (median / 95th / max)",
        lambda g: _stats([o.impulse_latency_error for o in aligned(g)]),
    )
    row(
        "interface (loopback) latency error, samples (median / 95th / max)",
        lambda g: _stats([o.loopback_error for o in aligned(g) if o.loopback_error is not None]),
    )
    row(
        "drift error, ppm (median / 95th / max)",
        lambda g: _stats([o.drift_error for o in aligned(g)]),
    )
    row(
        "drift error within 1 / 2 of its reported standard errors",
        lambda g: _within_standard_errors(aligned(g)),
    )
    row(
        "polarity correct",
        lambda g: (
            f"{100 * np.mean([o.polarity_ok for o in aligned(g)]):.1f} %" if aligned(g) else "-"
        ),
    )
    row(
        "coherence (min / median)",
        lambda g: (
            f"{min(o.coherence for o in aligned(g)):.2f} / "
            f"{np.median([o.coherence for o in aligned(g)]):.2f}"
            if aligned(g)
            else "-"
        ),
    )
    row(
        "throughput, × real time (CPU time, one core)",
        lambda g: (
            f"{sum(o.take_seconds for o in aligned(g)) / sum(o.cpu_seconds for o in aligned(g)):.0f}×"
            if aligned(g)
            else "-"
        ),
    )
    row(
        "throughput of reading and the estimate alone (no pair written), × real time",
        lambda g: (
            f"{sum(o.take_seconds for o in aligned(g)) / sum(o.cpu_seconds - o.writing_seconds for o in aligned(g)):.0f}×"
            if aligned(g)
            else "-"
        ),
    )
    row(
        "peak memory / the pair's audio (max)",
        lambda g: f"{max(o.memory_ratio for o in aligned(g)):.2f}×" if aligned(g) else "-",
    )
    return "\n".join(lines)


def run_devices(
    seed: int, devices: list[str] | None = None, instrument: str | None = None, pairs_only=False
) -> None:
    """The third-party part; ``devices`` and ``instrument`` keep only some cases (each case
    still gets the recording it gets in a full run), ``pairs_only`` leaves out the must-refuse
    cases, the sessions and the delay-definition table."""
    from thirdparty import DEVICES, require_tools

    require_tools("lv2apply", "fluidsynth")
    unknown = sorted(set(devices or ()) - set(DEVICES))
    if unknown:
        raise SystemExit(f"unknown device {', '.join(unknown)}; choose from {', '.join(DEVICES)}")
    rng = np.random.default_rng(seed)
    outcomes: list[PairOutcome] = []
    drawn = []  # what each outcome was made from, to record it again
    with tempfile.TemporaryDirectory(prefix="ampcap-bench-devices-") as tmp:
        work = Path(tmp)
        case = 0
        for device, position, rate, played in itertools.product(
            DEVICES.values(), POSITIONS, DEVICE_RATES, ("guitar", "bass")
        ):
            for loopback in (False, True) if case % 3 == 0 else (False,):
                recording = draw_recording(rng)
                if (devices and device.name not in devices) or (
                    instrument and played != instrument
                ):
                    continue
                outcome = device_pair_case(
                    device, position, rate, played, loopback, recording, work
                )
                outcomes.append(outcome)
                drawn.append((device, position, rate, played, recording))
                print(
                    f"{device.name} {position:g} {rate} Hz {played} "
                    f"{'loopback' if loopback else 'pair'} SNR {outcome.snr_db:.0f} dB -> "
                    + (
                        f"REFUSED: {outcome.refused}"
                        if outcome.refused
                        else f"error {outcome.latency_error:+.3f}, drift {outcome.drift_error:+.3f} ppm, "
                        f"coherence {outcome.coherence:.2f}"
                    ),
                    file=sys.stderr,
                )
            case += 1
        if pairs_only:
            refusals, sessions, definitions, redrawn = [], [], "", []
        else:
            worst = sorted(
                (k for k, o in enumerate(outcomes) if not o.loopback and o.drift_error is not None),
                key=lambda k: -abs(outcomes[k].drift_error),
            )[:2]
            redrawn = [noise_draws(*drawn[k], work) for k in worst]
            refusals = [r for rate in DEVICE_RATES for r in refusal_cases(rate, work)]
            sessions = session_cases(48000, work)
            definitions = definition_table(48000)

    pairs = [o for o in outcomes if not o.loopback]
    looped = [o for o in outcomes if o.loopback]
    targets = {
        "refused": "0",
        "latency error, samples (median / 95th / max)": "median ≤ 0.25, max ≤ 1.0",
        "interface (loopback) latency error, samples (median / 95th / max)": "≤ 0.05",
        "drift error, ppm (median / 95th / max)": "≤ 0.5",
        "drift error within 1 / 2 of its reported standard errors": "64 % / 91 % (calibrated)",
        "polarity correct": "100 %",
        "throughput, × real time (CPU time, one core)": "≥ 200×",
        "peak memory / the pair's audio (max)": "≤ 2×",
    }
    print(
        f"\n### Third-party devices: {len(DEVICES)} Guitarix plug-ins × 3 gains × 2 rates × "
        f"guitar and bass DI, {PAIR_DI_SECONDS:g} s of FluidSynth DI, seed {seed}\n"
    )
    print(
        _pair_table(
            {
                "DAW pairs": pairs,
                "with a loopback": looped,
                "44.1 kHz": [o for o in outcomes if o.rate == 44100],
                "48 kHz": [o for o in outcomes if o.rate == 48000],
            },
            targets,
        )
    )
    print()
    print(
        _pair_table(
            {
                name: [o for o in outcomes if o.device == name]
                for name in DEVICES
                if any(o.device == name for o in outcomes)
            },
            {},
        )
    )
    print()
    print(
        _pair_table(
            {
                "SNR ≥ 40 dB": [o for o in outcomes if o.snr_db >= 40],
                "SNR < 40 dB": [o for o in outcomes if o.snr_db < 40],
                "output cut below 75 %": [
                    o for o in outcomes if o.take_seconds < 0.75 * PAIR_DI_SECONDS
                ],
            },
            {},
        )
    )
    if pairs_only:
        return
    refused = sum(r[1] for r in refusals)
    print(f"\n**Must-refuse cases**: {refused} of {len(refusals)} refused (target: all).\n")
    print("| case | refused | message (start) |")
    print("|---|---|---|")
    for name, was, message in refusals:
        print(f"| {name} | {'yes' if was else 'NO'} | {message[:110].replace('|', '/')}… |")
    print(
        "\n**The same take, other noise** (the DAW pairs whose drift was read worst; drift "
        "error, ppm):\n"
    )
    print(
        f"| pair | noise | as drawn | {NOISE_DRAWS} other noise draws (min / median / max) "
        "| on the same side | without noise |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(redrawn))
    aligned = sum(r["verdict"] != "failed" for r in sessions)
    print(f"\n**Sessions**: {aligned} of {len(sessions)} takes aligned (target: all).\n")
    print(
        "| device | gain | verdict | device measured at | loopback latency error | "
        "device latency (samples) | drift error (ppm) |"
    )
    print("|---|---:|---|---|---:|---:|---:|")
    for r in sessions:
        print(
            f"| {r['device']} | {r['setting']:g} | {r['verdict']} | {r['method']} | "
            + (f"{r['loopback_error']:+.4f}" if r["loopback_error"] is not None else "-")
            + " | "
            + (f"{r['device_latency']:.3f}" if r["device_latency"] is not None else "-")
            + " | "
            + (f"{r['drift_error']:+.3f}" if r["drift_error"] is not None else "-")
            + " |"
        )
    print("\n**What a device's delay is** (48 kHz, guitar DI; samples):\n")
    print(definitions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=120)
    parser.add_argument("--di-seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("virtual", "devices"))
    parser.add_argument(
        "--device",
        action="append",
        help="third-party part: only this plug-in (repeat for several), e.g. chump",
    )
    parser.add_argument(
        "--instrument", choices=("guitar", "bass"), help="third-party part: only this DI"
    )
    parser.add_argument(
        "--pairs-only",
        action="store_true",
        help="third-party part: the pairs alone, without the must-refuse cases, the sessions "
        "and the delay-definition table",
    )
    args = parser.parse_args()
    if args.only != "virtual":
        run_devices(args.seed, args.device, args.instrument, args.pairs_only)
    if args.only == "devices":
        return

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
