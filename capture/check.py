"""``ampcap rig check``: play a short test through the rig and say whether it is wired right.

The test plays, at a safe level (-12 dBFS or the rig's ``max_output_dbfs``, whichever is
lower), in this order:

1. silence (0.5 s): the noise floor of both inputs;
2. an exponential sine sweep on the **loopback output only** (1 s);
3. a gap long enough for any plausible round trip (0.6 s);
4. the same sweep on the **device output only** (1 s), then another gap;
5. a white-noise burst on both outputs (0.5 s), then a tail.

Because the two paths are excited at different times, each input's level during each sweep
says which output it hears: the loopback input must hear only the loopback output and the
device input only the device output. Anything else is reported as swapped channels, an
unpatched loopback, a silent device or crosstalk, with advice. The round-trip latency is the
cross-correlation peak of the recorded loopback against what was played (interpolated to a
fraction of a sample); the device's extra delay is measured the same way on its channel.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import signal

from ampcap.levels import amplitude

if TYPE_CHECKING:
    from ampcap.capture.rig import Rig, VirtualSettings

TEST_LEVEL_DBFS = -12.0
_PREROLL_S = 0.5
_SWEEP_S = 1.0
_GAP_S = 0.6
_BURST_S = 0.5
_FADE_S = 0.01
#: Longest round trip searched for, in seconds (gaps between test sections are longer).
MAX_LATENCY_S = 0.5
# An input "hears" a section when its RMS there is this far above its noise floor...
_HEARS_ABOVE_FLOOR_DB = 20.0
# ...and above this absolute level (digital silence has no floor to be above).
_HEARS_MIN_DBFS = -90.0
_CLIP_LEVEL = 0.999
_NOISY_FLOOR_DBFS = -60.0
_LOOPBACK_GAIN_TOLERANCE_DB = 1.0
_HOT_INPUT_DBFS = -3.0
_REFINE_HALF = 32
_REFINE_FACTOR = 100


@dataclass(frozen=True)
class TestSignal:
    """The played test: one signal per output and where its sections are, in samples.

    Attributes
    ----------
    to_device, to_loopback : numpy.ndarray, float32, shape (frames,)
    preroll : tuple of int
        ``(start, stop)`` of the leading silence.
    loopback_sweep, device_sweep, burst : tuple of int
        ``(start, stop)`` of the sweep on the loopback output, the sweep on the device output,
        and the noise burst on both.
    level_dbfs : float
        Peak level of every section.
    """

    to_device: np.ndarray
    to_loopback: np.ndarray
    preroll: tuple[int, int]
    loopback_sweep: tuple[int, int]
    device_sweep: tuple[int, int]
    burst: tuple[int, int]
    level_dbfs: float


def make_test_signal(sample_rate_hz: int, level_dbfs: float = TEST_LEVEL_DBFS) -> TestSignal:
    """Build the test played by the rig check (see the module docstring for its layout).

    Parameters
    ----------
    sample_rate_hz : int
    level_dbfs : float, default -12
        Peak level of the sweeps and of the burst.
    """
    fs = sample_rate_hz
    peak = amplitude(level_dbfs)
    sweep_n, gap_n, fade_n = round(_SWEEP_S * fs), round(_GAP_S * fs), round(_FADE_S * fs)
    t = np.arange(sweep_n) / fs
    f0, f1 = 40.0, min(16000.0, 0.45 * fs)
    rate = math.log(f1 / f0)
    sweep = np.sin(2 * math.pi * f0 * _SWEEP_S / rate * (np.exp(t / _SWEEP_S * rate) - 1))
    # Band-limited noise: white noise's peaks between samples overshoot its sample peak.
    noise = np.random.default_rng(0).standard_normal(round(_BURST_S * fs))
    burst = signal.sosfilt(signal.butter(8, 0.3 * fs, fs=fs, output="sos"), noise)
    burst /= np.max(np.abs(burst))
    fade = 0.5 - 0.5 * np.cos(np.linspace(0, math.pi, fade_n))
    for part in (sweep, burst):
        part[:fade_n] *= fade
        part[-fade_n:] *= fade[::-1]
    pre = round(_PREROLL_S * fs)
    a0 = pre
    b0 = a0 + sweep_n + gap_n
    c0 = b0 + sweep_n + gap_n
    total = c0 + len(burst) + round((MAX_LATENCY_S + 0.1) * fs)
    to_device = np.zeros(total, dtype=np.float32)
    to_loopback = np.zeros(total, dtype=np.float32)
    to_loopback[a0 : a0 + sweep_n] = peak * sweep
    to_device[b0 : b0 + sweep_n] = peak * sweep
    to_device[c0 : c0 + len(burst)] = peak * burst
    to_loopback[c0 : c0 + len(burst)] = peak * burst
    return TestSignal(
        to_device=to_device,
        to_loopback=to_loopback,
        preroll=(0, pre),
        loopback_sweep=(a0, a0 + sweep_n),
        device_sweep=(b0, b0 + sweep_n),
        burst=(c0, c0 + len(burst)),
        level_dbfs=level_dbfs,
    )


def _db(value: float) -> float:
    # numpy's log10, not ampcap.levels.dbfs (math.log10): the two differ in the last bit for
    # about one value in ten, and ``rig check --json`` prints these levels unrounded.
    return float(20 * np.log10(value)) if value > 0 else float("-inf")


def _rms_dbfs(x: np.ndarray) -> float:
    return _db(float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))) if len(x) else -math.inf


def find_loopback_delay(
    played: np.ndarray, recorded: np.ndarray, max_lag: int
) -> tuple[float, float]:
    """Delay of ``played`` inside ``recorded`` by cross-correlation, to a fraction of a sample.

    The arguments come in the order of :func:`ampcap.dataset.delay.estimate_delay`: what was
    played (the reference) first, then what came back.

    Parameters
    ----------
    played, recorded : numpy.ndarray, shape (frames,)
        Same length; ``recorded`` holds ``played`` delayed (and possibly filtered).
    max_lag : int
        Largest delay searched, in samples.

    Returns
    -------
    delay_samples : float
        Positive: the recording lags what was played. The integer peak is refined to a
        hundredth of a sample by band-limited interpolation of the correlation around it.
    correlation : float
        Normalised correlation at the integer peak, in [-1, 1]: 1 for an exact delayed copy.
    """
    recorded = np.asarray(recorded, dtype=np.float64)
    played = np.asarray(played, dtype=np.float64)
    full = signal.correlate(recorded, played, mode="full", method="fft")
    zero = len(played) - 1  # index of lag 0
    window = full[zero : zero + max_lag + 1]
    peak = int(np.argmax(np.abs(window)))
    delay = float(peak)
    if _REFINE_HALF <= peak < len(window) - _REFINE_HALF:
        # Band-limited interpolation of the correlation around its peak (FFT upsampling): a
        # parabola is biased by up to a tenth of a sample on a sweep's narrow peak.
        local = np.abs(window[peak - _REFINE_HALF : peak + _REFINE_HALF + 1])
        fine = signal.resample(local * np.hanning(len(local)), len(local) * _REFINE_FACTOR)
        delay = peak - _REFINE_HALF + float(np.argmax(fine)) / _REFINE_FACTOR
    overlap_rec = recorded[peak:]
    overlap_play = played[: len(played) - peak]
    norm = math.sqrt(
        float(np.dot(overlap_rec, overlap_rec)) * float(np.dot(overlap_play, overlap_play))
    )
    correlation = float(window[peak]) / norm if norm > 0 else 0.0
    return delay, correlation


@dataclass(frozen=True)
class RigCheck:
    """What ``ampcap rig check`` found.

    Attributes
    ----------
    rig : str
        The rig's name.
    device : str
        The device as PortAudio reported it (``[id] name``), or the virtual interface.
    sample_rate_hz : int
    test_level_dbfs : float
        Peak level the test was played at.
    latency_samples, latency_ms : float or None
        Round-trip latency of the loopback (output to input), fractional; None when no input
        heard the loopback output.
    device_delay_samples : float or None
        Delay of the device channel against what was played (round trip plus the device's own
        delay); None when the device input heard nothing.
    loopback_correlation : float
        Normalised correlation of the recorded loopback with what was played (1: a clean wire).
    loopback_noise_dbfs, device_noise_dbfs : float
        RMS noise floor of each input during the leading silence (-inf: digital silence).
    loopback_peak_dbfs, device_peak_dbfs : float
        Peak of each input over the whole test.
    loopback_gain_db, device_gain_db : float
        RMS level recorded over RMS level played, for each path's own sweep (0 dB: unity).
    loopback_clipped_samples, device_clipped_samples : int
        Samples at or above 0.999 of full scale on each input.
    loopback_hears_loopback, loopback_hears_device, device_hears_loopback, device_hears_device
        : bool
        Whether each input (first word) heard each output's sweep (last word).
    wiring : str
        "ok", "swapped", "loopback silent", "device silent", "both silent" or "crosstalk".
    underflows, overflows : int
        PortAudio dropout flags during the test.
    advice : tuple of str
        Plain-language actions, most important first; empty when everything looks right.
    ok : bool
        True when nothing needs fixing before recording.
    """

    rig: str
    device: str
    sample_rate_hz: int
    test_level_dbfs: float
    latency_samples: float | None
    latency_ms: float | None
    device_delay_samples: float | None
    loopback_correlation: float
    loopback_noise_dbfs: float
    device_noise_dbfs: float
    loopback_peak_dbfs: float
    device_peak_dbfs: float
    loopback_gain_db: float
    device_gain_db: float
    loopback_clipped_samples: int
    device_clipped_samples: int
    loopback_hears_loopback: bool
    loopback_hears_device: bool
    device_hears_loopback: bool
    device_hears_device: bool
    wiring: str
    underflows: int
    overflows: int
    advice: tuple[str, ...]
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json`` (infinite levels become None: JSON has no infinity)."""
        return {
            key: (None if isinstance(value, float) and not math.isfinite(value) else value)
            for key, value in asdict(self).items()
        } | {"advice": list(self.advice)}

    def lines(self) -> list[str]:
        """The check as short lines for a terminal (level in dBFS, latency in samples and ms)."""

        def level(value: float) -> str:
            return "digital silence" if not math.isfinite(value) else f"{value:.1f} dBFS"

        latency = (
            "not measured (no input heard the loopback output)"
            if self.latency_samples is None or self.latency_ms is None
            else f"{self.latency_samples:.2f} samples ({self.latency_ms:.2f} ms)"
        )
        out = [
            f"rig {self.rig} on {self.device} at {self.sample_rate_hz} Hz, test at "
            f"{self.test_level_dbfs:g} dBFS",
            f"wiring: {self.wiring}",
            f"round-trip latency: {latency}",
            f"loopback: peak {level(self.loopback_peak_dbfs)}, gain {self.loopback_gain_db:+.1f} "
            f"dB, noise floor {level(self.loopback_noise_dbfs)}, "
            f"{self.loopback_clipped_samples} clipped",
            f"device:   peak {level(self.device_peak_dbfs)}, gain {self.device_gain_db:+.1f} dB, "
            f"noise floor {level(self.device_noise_dbfs)}, {self.device_clipped_samples} clipped",
            f"dropouts: {self.underflows} underflow(s), {self.overflows} overflow(s)",
        ]
        out += [f"advice: {line}" for line in self.advice] or ["advice: none, ready to record"]
        return out


@dataclass(frozen=True)
class _Levels:
    """What :func:`_measure` read off a recording of the test (levels in dBFS, gains in dB)."""

    noise: dict[str, float]  # "loop", "dev": RMS during the leading silence
    hears: tuple[bool, bool, bool, bool]  # loopback/device input hears loopback/device sweep
    latency: float | None
    correlation: float
    device_delay: float | None
    loop_gain_db: float
    dev_gain_db: float
    loop_peak: float
    dev_peak: float
    loop_clipped: int
    dev_clipped: int


def _measure(loop: np.ndarray, dev: np.ndarray, test: TestSignal, sample_rate_hz: int) -> _Levels:
    """Noise floors, which input hears which sweep, delays, gains, peaks and clipped samples."""
    max_lag = round(MAX_LATENCY_S * sample_rate_hz)

    def window(x: np.ndarray, section: tuple[int, int]) -> np.ndarray:
        return x[section[0] : section[1] + max_lag]

    noise = {name: _rms_dbfs(x[slice(*test.preroll)]) for name, x in (("loop", loop), ("dev", dev))}

    def hears(x: np.ndarray, floor_dbfs: float, section: tuple[int, int]) -> bool:
        level = _rms_dbfs(window(x, section))
        return level > max(floor_dbfs + _HEARS_ABOVE_FLOOR_DB, _HEARS_MIN_DBFS)

    ll = hears(loop, noise["loop"], test.loopback_sweep)
    ld = hears(loop, noise["loop"], test.device_sweep)
    dl = hears(dev, noise["dev"], test.loopback_sweep)
    dd = hears(dev, noise["dev"], test.device_sweep)

    # The latency is read from whichever input hears the loopback output (a swapped rig still
    # has a measurable round trip).
    latency: float | None = None
    correlation = 0.0
    source = loop if ll or not dl else dev
    if ll or dl:
        latency, correlation = find_loopback_delay(test.to_loopback, source, max_lag)
    device_delay: float | None = None
    target = dev if dd or not ld else loop
    if dd or ld:
        device_delay, _ = find_loopback_delay(test.to_device, target, max_lag)

    played_sweep = _rms_dbfs(test.to_loopback[slice(*test.loopback_sweep)])
    shift = round(latency) if latency is not None else 0
    loop_gain = _rms_dbfs(loop[test.loopback_sweep[0] + shift : test.loopback_sweep[1] + shift])
    dev_gain = _rms_dbfs(dev[test.device_sweep[0] + shift : test.device_sweep[1] + shift])
    return _Levels(
        noise=noise,
        hears=(ll, ld, dl, dd),
        latency=latency,
        correlation=correlation,
        device_delay=device_delay,
        loop_gain_db=loop_gain - played_sweep,
        dev_gain_db=dev_gain - played_sweep,
        loop_peak=_db(float(np.max(np.abs(loop)))),
        dev_peak=_db(float(np.max(np.abs(dev)))),
        loop_clipped=int(np.count_nonzero(np.abs(loop) >= _CLIP_LEVEL)),
        dev_clipped=int(np.count_nonzero(np.abs(dev) >= _CLIP_LEVEL)),
    )


def _wiring(ll: bool, ld: bool, dl: bool, dd: bool) -> str:
    """The wiring that explains which input heard which sweep (first letter: the input)."""
    if not ll and not dd and not ld and not dl:
        return "both silent"
    if ld and dl and not ll and not dd:
        return "swapped"
    if not ll and not ld:
        return "loopback silent"
    if not dd and not dl:
        return "device silent"
    if ll and dd and not ld and not dl:
        return "ok"
    return "crosstalk"


def _wiring_advice(wiring: str, ld: bool, dl: bool, rig: Rig) -> list[str]:
    """What to do about the wiring, naming the rig's channel numbers; empty when it is ok."""
    audio = rig.audio
    out_dev = audio.output_device if audio else 1
    out_loop = audio.output_loopback if audio else 2
    in_dev = audio.input_device if audio else 1
    in_loop = audio.input_loopback if audio else 2
    if wiring == "both silent":
        return [
            "Neither input heard anything. Check that this is the right device, that its outputs "
            f"{out_dev} and {out_loop} are not muted and its inputs {in_dev} and {in_loop} have "
            "gain (and, for JACK, that the device's ports are not connected elsewhere)."
        ]
    if wiring == "swapped":
        return [
            f"The loopback and device channels are swapped: input {in_loop} hears the device and "
            f"input {in_dev} hears the loopback. Swap the two cables at the inputs (or outputs), "
            "or swap input_device and input_loopback in the rig's [audio] table."
        ]
    if wiring == "loopback silent":
        return [
            f"The loopback is not patched: connect output {out_loop} straight to input "
            f"{in_loop} with a cable (no device in between) and turn that input's gain up."
        ]
    if wiring == "device silent":
        return [
            f"Input {in_dev} heard nothing from the device. Check output {out_dev} -> reamp box "
            "-> amp input, that the amp is on and out of standby with its volume up, and the "
            f"load box (or attenuator) line output -> input {in_dev}."
        ]
    if wiring == "crosstalk":
        heard = [
            f"input {in_loop} (loopback) hears output {out_dev} (device)" if ld else "",
            f"input {in_dev} (device) hears output {out_loop} (loopback)" if dl else "",
        ]
        return [
            f"Crosstalk: {'; '.join(h for h in heard if h)}. Turn off the interface's direct "
            "monitoring / internal mixer routing, and check no cable goes to two places."
        ]
    return []


def _level_advice(
    levels: _Levels, test: TestSignal, rig: Rig, underflows: int, overflows: int
) -> list[str]:
    """What to do about clipping, loopback gain, a hot device input, noise and dropouts."""
    in_dev = rig.audio.input_device if rig.audio else 1
    in_loop = rig.audio.input_loopback if rig.audio else 2
    ll, _, _, dd = levels.hears
    advice: list[str] = []
    for name, clipped, number in (
        ("loopback", levels.loop_clipped, in_loop),
        ("device", levels.dev_clipped, in_dev),
    ):
        if clipped:
            advice.append(
                f"The {name} input ({number}) clipped on {clipped} samples of a "
                f"{test.level_dbfs:g} dBFS test: turn its input gain down (for the device: the "
                "load box or attenuator level) until it peaks below -6 dBFS."
            )
    if ll and abs(levels.loop_gain_db) > _LOOPBACK_GAIN_TOLERANCE_DB:
        advice.append(
            f"The loopback comes back at {levels.loop_gain_db:+.1f} dB: set input {in_loop}'s "
            "gain to unity (line level, pad off) so the recorded loopback equals what was played."
        )
    if dd and levels.dev_peak > _HOT_INPUT_DBFS and not (levels.loop_clipped or levels.dev_clipped):
        advice.append(
            f"The device input peaks at {levels.dev_peak:.1f} dBFS on a {test.level_dbfs:g} dBFS "
            "test: a loud DI may clip it; leave more headroom."
        )
    for name, floor, number in (
        ("loopback", levels.noise["loop"], in_loop),
        ("device", levels.noise["dev"], in_dev),
    ):
        if floor > _NOISY_FLOOR_DBFS:
            advice.append(
                f"The {name} input ({number}) has a noise floor of {floor:.1f} dBFS: look for hum "
                "(ground loop: try a DI box ground lift), a noisy gain setting, or a cable "
                "picking up interference."
            )
    if underflows or overflows:
        advice.append(
            f"PortAudio reported {underflows} underflow(s) and {overflows} overflow(s) during "
            'the check: raise blocksize (or latency = "high") in the rig, close other audio '
            "programs, and for JACK use a larger period (-p 1024) or sync mode."
        )
    return advice


def analyse_check(
    recorded: np.ndarray,
    test: TestSignal,
    sample_rate_hz: int,
    rig: Rig,
    device: str,
    underflows: int = 0,
    overflows: int = 0,
) -> RigCheck:
    """Turn a recording of :func:`make_test_signal` into a :class:`RigCheck` with advice.

    Parameters
    ----------
    recorded : numpy.ndarray, float32, shape (frames, 2)
        What the inputs recorded, channels (loopback, device), same length as the test.
    test : TestSignal
    sample_rate_hz : int
    rig : Rig
        Used for its name and channel numbers in the advice.
    device : str
        The device as reported, for the report.
    underflows, overflows : int
        Dropout flags seen while recording.
    """
    loop = np.asarray(recorded[:, 0], dtype=np.float64)
    dev = np.asarray(recorded[:, 1], dtype=np.float64)
    levels = _measure(loop, dev, test, sample_rate_hz)
    ll, ld, dl, dd = levels.hears
    wiring = _wiring(ll, ld, dl, dd)
    advice = _wiring_advice(wiring, ld, dl, rig)
    advice += _level_advice(levels, test, rig, underflows, overflows)
    latency = levels.latency
    return RigCheck(
        rig=rig.name,
        device=device,
        sample_rate_hz=sample_rate_hz,
        test_level_dbfs=test.level_dbfs,
        latency_samples=latency,
        latency_ms=None if latency is None else latency / sample_rate_hz * 1000,
        device_delay_samples=levels.device_delay,
        loopback_correlation=levels.correlation,
        loopback_noise_dbfs=levels.noise["loop"],
        device_noise_dbfs=levels.noise["dev"],
        loopback_peak_dbfs=levels.loop_peak,
        device_peak_dbfs=levels.dev_peak,
        loopback_gain_db=levels.loop_gain_db,
        device_gain_db=levels.dev_gain_db,
        loopback_clipped_samples=levels.loop_clipped,
        device_clipped_samples=levels.dev_clipped,
        loopback_hears_loopback=ll,
        loopback_hears_device=ld,
        device_hears_loopback=dl,
        device_hears_device=dd,
        wiring=wiring,
        underflows=underflows,
        overflows=overflows,
        advice=tuple(advice),
        ok=wiring == "ok" and not advice,
    )


def _record_virtual(settings: VirtualSettings, test: TestSignal) -> np.ndarray:
    """Play the test through the virtual rig's amp and interface (default knob settings)."""
    from ampcap.capture.virtual import VirtualAmp, VirtualInterface

    amp = VirtualAmp(settings.sample_rate_hz, settings.seed)
    interface = VirtualInterface(
        settings.sample_rate_hz,
        settings.latency_samples,
        settings.noise_dbfs,
        settings.gain_db,
        settings.drift_ppm,
        settings.polarity,
        settings.seed,
    )
    frames = len(test.to_device)
    # Silence after the test lets the interface's interpolation window reach the last frame.
    pad = np.zeros(max(interface.needed(frames) - frames, 0), dtype=np.float32)
    to_device = np.concatenate([test.to_device, pad])
    to_loopback = np.concatenate([test.to_loopback, pad])
    interface.push(np.column_stack([to_loopback, amp.process(to_device)]))
    return interface.pull(frames).astype(np.float32)


def run_check(rig: Rig, device_override: str | None = None) -> RigCheck:
    """Play the test through ``rig`` and analyse what came back.

    Parameters
    ----------
    rig : Rig
        An audio rig (played through PortAudio) or the virtual rig (simulated).
    device_override : str, optional
        ``--device``: a substring of the device name used instead of the rig's.

    Raises
    ------
    DeviceError
        The device is missing, ambiguous, or refuses the rig's settings (nothing played).
    RigError
        ``device_override`` given for a virtual rig.
    """
    rig = rig.with_device(device_override)
    level = min(TEST_LEVEL_DBFS, rig.safety.max_output_dbfs)
    if rig.virtual is not None:
        test = make_test_signal(rig.virtual.sample_rate_hz, level)
        recorded = _record_virtual(rig.virtual, test)
        return analyse_check(
            recorded, test, rig.virtual.sample_rate_hz, rig, "ampcap virtual interface"
        )
    from ampcap.capture.audio import open_engine

    engine = open_engine(rig)
    test = make_test_signal(engine.sample_rate_hz, level)
    blocks: list[np.ndarray] = []
    result = engine.run_outputs(test.to_device, test.to_loopback, blocks.append)
    recorded = np.concatenate(blocks) if blocks else np.zeros((0, 2), dtype=np.float32)
    return analyse_check(
        recorded,
        test,
        engine.sample_rate_hz,
        rig,
        engine.device_names["device"],
        result.underflows,
        result.overflows,
    )
