"""The virtual rig: a simulated tube amp, a simulated audio interface, and an engine around them.

Everything here is a stateful block processor: processing a signal in blocks of any size gives
the same samples (to float64 rounding) as processing it in one call, because every filter keeps
its state between calls (``scipy.signal.sosfilt``/``lfilter`` with ``zi``) and every nonlinearity
is memoryless. Nothing loops over samples in Python, so the amp runs hundreds of times faster
than real time and a 1024-frame block costs well under a millisecond.

Signal path of :class:`VirtualAmp` (all filters designed for the given sample rate):

1. input coupling high-pass (25 Hz) and a 1st-order low-pass (7 kHz) that tames the pick attack;
2. first triode stage: gain, then asymmetric soft clipping ``tanh(g·x + b) - tanh(b)``, whose
   even harmonics and DC shift are what an unbalanced tube stage adds; a 20 Hz coupling
   high-pass after it removes that DC with a time constant (memory);
3. tone stack: low shelf, mid peak and high shelf whose gains and mid frequency move
   continuously with the ``isf`` knob between a scooped "American" voicing (0) and a mid-forward
   "British" voicing (10), like the Blackstar HT-1's ISF control;
4. supply sag: a 12 Hz low-pass of the signal's power lowers the second stage's drive when the
   amp works hard (a slow envelope: the memory an LSTM must learn);
5. second stage: symmetric soft clipping, then an output transformer band-pass (90 Hz-9 kHz:
   a small amp's transformer and load box pass little deep bass).

The drive is moderate (crunch, not fuzz), so a small recurrent model can learn it.
"""

from __future__ import annotations

import math
import threading
import zlib
from dataclasses import asdict, dataclass

import numpy as np
from scipy import signal

from ampcap.capture.engine import Progress, Sink, TakeResult, release_played_pages
from ampcap.capture.rig import VirtualSettings
from ampcap.errors import UsageError
from ampcap.labels import knob_label
from ampcap.levels import amplitude

#: The virtual amp's knobs: name -> (minimum, maximum, default), dial numbers.
AMP_KNOBS = {"isf": (0.0, 10.0, 5.0), "gain": (0.0, 10.0, 5.0)}


def _check_knob(name: str, value: float) -> None:
    if name not in AMP_KNOBS:
        raise UsageError(
            f"The virtual amp has no knob {name!r}; its knobs are {', '.join(AMP_KNOBS)}."
        )
    low, high, _ = AMP_KNOBS[name]
    if not low <= float(value) <= high:
        raise UsageError(f"{name}={value:g} is outside the virtual amp's dial {low:g}..{high:g}.")


@dataclass(frozen=True)
class _Voicing:
    low_db: float
    mid_db: float
    mid_hz: float
    high_db: float


# ISF 0: scooped mids, big bass and treble; ISF 10: mids forward, bass and treble cut.
_VOICING_0 = _Voicing(low_db=3.0, mid_db=-9.0, mid_hz=450.0, high_db=6.0)
_VOICING_10 = _Voicing(low_db=-3.0, mid_db=7.0, mid_hz=900.0, high_db=-3.0)


def _shelf(kind: str, gain_db: float, f_hz: float, fs: float) -> np.ndarray:
    """RBJ cookbook shelving biquad (S = 1) as one SOS row."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * f_hz / fs
    cw, alpha = math.cos(w0), math.sin(w0) / 2 * math.sqrt(2)
    sa = 2 * math.sqrt(a) * alpha
    sign = 1 if kind == "low" else -1
    b0 = a * ((a + 1) - sign * (a - 1) * cw + sa)
    b1 = sign * 2 * a * ((a - 1) - sign * (a + 1) * cw)
    b2 = a * ((a + 1) - sign * (a - 1) * cw - sa)
    a0 = (a + 1) + sign * (a - 1) * cw + sa
    a1 = -sign * 2 * ((a - 1) + sign * (a + 1) * cw)
    a2 = (a + 1) + sign * (a - 1) * cw - sa
    return np.array([b0, b1, b2, a0, a1, a2]) / a0


def _peak(gain_db: float, f_hz: float, q: float, fs: float) -> np.ndarray:
    """RBJ cookbook peaking biquad as one SOS row."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * f_hz / fs
    alpha = math.sin(w0) / (2 * q)
    cw = math.cos(w0)
    row = np.array([1 + alpha * a, -2 * cw, 1 - alpha * a, 1 + alpha / a, -2 * cw, 1 - alpha / a])
    return row / row[3]


def tone_stack_sos(isf: float, sample_rate_hz: float) -> np.ndarray:
    """The tone stack at dial value ``isf`` (0..10) as second-order sections, shape (3, 6).

    Gains (dB) and the mid frequency (on a log scale) are interpolated linearly between the two
    voicings, so the response moves continuously with the knob.
    """
    t = min(max(isf / 10.0, 0.0), 1.0)
    v0, v1 = _VOICING_0, _VOICING_10
    low = (1 - t) * v0.low_db + t * v1.low_db
    mid = (1 - t) * v0.mid_db + t * v1.mid_db
    high = (1 - t) * v0.high_db + t * v1.high_db
    mid_hz = math.exp((1 - t) * math.log(v0.mid_hz) + t * math.log(v1.mid_hz))
    return np.vstack(
        [
            _shelf("low", low, 120.0, sample_rate_hz),
            _peak(mid, mid_hz, 0.8, sample_rate_hz),
            _shelf("high", high, 2800.0, sample_rate_hz),
        ]
    )


class VirtualAmp:
    """A simulated tube amp with memory and continuous knobs, as a stateful block processor.

    Parameters
    ----------
    sample_rate_hz : int
        Sample rate of the blocks, in Hz.
    seed : int, default 0
        Unit-to-unit variation: 0 is the nominal amp; any other seed moves the tube bias and
        the stage gains by a few percent, like two amps of the same model. The amp is noiseless
        and deterministic for a seed.

    Notes
    -----
    ``process`` may be called with blocks of any size (including 0) and gives the same output as
    one call over the concatenated input. ``set_knobs`` changes the filters without clearing
    their state, like turning a real knob while playing; :meth:`reset` returns to silence.
    Knobs: ``isf`` (0..10, tone voicing, default 5) and ``gain`` (0..10, first-stage drive
    +-6 dB around the default 5).
    """

    def __init__(self, sample_rate_hz: int, seed: int = 0) -> None:
        self.sample_rate_hz = int(sample_rate_hz)
        self.seed = seed
        fs = float(self.sample_rate_hz)
        if seed:
            spread = np.random.default_rng(seed).uniform(-0.05, 0.05, size=3)
            self._gain_1, self._bias_1, self._gain_2 = (
                c * (1 + d)
                for c, d in zip((self._GAIN_1, self._BIAS_1, self._GAIN_2), spread, strict=False)
            )
        else:
            self._gain_1, self._bias_1, self._gain_2 = self._GAIN_1, self._BIAS_1, self._GAIN_2
        self.knobs = {name: default for name, (_, _, default) in AMP_KNOBS.items()}
        self._pre_sos = np.vstack(
            [
                signal.butter(1, 25.0, "highpass", fs=fs, output="sos"),
                signal.butter(1, 7000.0, "lowpass", fs=fs, output="sos"),
            ]
        )
        self._couple_sos = signal.butter(1, 20.0, "highpass", fs=fs, output="sos")
        self._sag_ba = signal.butter(1, 12.0, "lowpass", fs=fs)
        self._out_sos = np.vstack(
            [
                signal.butter(1, 90.0, "highpass", fs=fs, output="sos"),
                signal.butter(2, 9000.0, "lowpass", fs=fs, output="sos"),
            ]
        )
        self._tone_sos = tone_stack_sos(self.knobs["isf"], fs)
        self.reset()

    # Stage constants: crunch, not fuzz (see the module docstring).
    _GAIN_1 = 2.6
    _BIAS_1 = 0.35
    _GAIN_2 = 1.6
    _SAG_DEPTH = 1.2
    _OUTPUT = 0.55

    def reset(self) -> None:
        """Clear all filter state (the amp as after a long silence)."""
        self._zi_pre = np.zeros((self._pre_sos.shape[0], 2))
        self._zi_couple = np.zeros((self._couple_sos.shape[0], 2))
        self._zi_tone = np.zeros((self._tone_sos.shape[0], 2))
        self._zi_sag = np.zeros(1)
        self._zi_out = np.zeros((self._out_sos.shape[0], 2))

    def set_knobs(self, knobs: dict[str, float]) -> None:
        """Set knobs by dial value, e.g. ``{"isf": 7.5}``.

        Raises
        ------
        UsageError
            An unknown knob name (lists the amp's knobs) or a value outside its dial.
        """
        for name, value in knobs.items():
            _check_knob(name, value)
            self.knobs[name] = float(value)
        self._tone_sos = tone_stack_sos(self.knobs["isf"], float(self.sample_rate_hz))

    def process(self, block: np.ndarray) -> np.ndarray:
        """Run one block through the amp.

        Parameters
        ----------
        block : numpy.ndarray, shape (frames,)
            Input samples (the reamped DI), full scale 1.0.

        Returns
        -------
        numpy.ndarray, float64, shape (frames,)
            The amp's output (line level after a load box), full scale 1.0.
        """
        x = np.asarray(block, dtype=np.float64)
        if x.size == 0:
            return np.zeros(0)
        x, self._zi_pre = signal.sosfilt(self._pre_sos, x, zi=self._zi_pre)
        drive = self._gain_1 * 10 ** ((self.knobs["gain"] - 5.0) / 10.0 * 6.0 / 20.0)
        y = np.tanh(drive * x + self._bias_1) - math.tanh(self._bias_1)
        y, self._zi_couple = signal.sosfilt(self._couple_sos, y, zi=self._zi_couple)
        y, self._zi_tone = signal.sosfilt(self._tone_sos, y, zi=self._zi_tone)
        power, self._zi_sag = signal.lfilter(*self._sag_ba, y * y, zi=self._zi_sag)
        sag = 1.0 / (1.0 + self._SAG_DEPTH * np.sqrt(np.maximum(power, 0.0)))
        y = np.tanh(self._gain_2 * sag * y)
        y, self._zi_out = signal.sosfilt(self._out_sos, y, zi=self._zi_out)
        return self._OUTPUT * y


def check_amp_knobs(settings: list[dict[str, float]]) -> None:
    """Refuse, before anything runs, knob settings the virtual amp cannot take.

    Raises
    ------
    UsageError
        An unknown knob (the message lists the amp's knobs) or a value outside its dial.
    """
    for setting in settings:
        for name, value in setting.items():
            _check_knob(name, value)


_SINC_HALF_TAPS = 16
_KAISER_BETA = 8.0


def _sinc_taps(frac: np.ndarray) -> np.ndarray:
    """Kaiser-windowed sinc interpolation taps for fractional positions ``frac`` in [0, 1).

    Returns shape ``(len(frac), 2*K)``: weights of samples ``floor(t) - K + 1 .. floor(t) + K``
    for reading the band-limited signal at ``t = floor(t) + frac``.
    """
    k = np.arange(-_SINC_HALF_TAPS + 1, _SINC_HALF_TAPS + 1)
    x = k[None, :] - frac[:, None]
    window = np.i0(_KAISER_BETA * np.sqrt(np.clip(1 - (x / _SINC_HALF_TAPS) ** 2, 0, None)))
    return np.sinc(x) * window / np.i0(_KAISER_BETA)


_TABLE_PHASES = 1024
_DRIFT_CHUNK = 8192
# Taps at 1024 fractional phases; with drift every frame reads at its own phase, and linear
# interpolation between neighbouring rows of this table (error below 1e-6) is far cheaper than
# evaluating the windowed sinc per frame.
_TAP_TABLE = _sinc_taps(np.arange(_TABLE_PHASES + 1) / _TABLE_PHASES)


def _table_taps(frac: np.ndarray) -> np.ndarray:
    """:func:`_sinc_taps` by interpolation in :data:`_TAP_TABLE`, same shape."""
    position = frac * _TABLE_PHASES
    row = np.minimum(position.astype(np.int64), _TABLE_PHASES - 1)
    weight = (position - row)[:, None]
    return _TAP_TABLE[row] * (1 - weight) + _TAP_TABLE[row + 1] * weight


class VirtualInterface:
    """A simulated audio interface: what its inputs record of what its outputs played.

    Push what the outputs play (and what comes back from the device); pull what the inputs
    record. Recorded frame ``n`` reads the played signal at time (in played samples)
    ``t = n / (1 + drift_ppm·1e-6) - latency_samples`` by Kaiser-windowed sinc interpolation
    (32 taps), so a positive latency delays the recording and a positive drift makes events land
    later and later. Then the device channel gets ``gain_db`` and ``polarity``, and both channels
    get white converter noise at ``noise_dbfs`` RMS from a seeded generator.

    Parameters
    ----------
    sample_rate_hz : int
    latency_samples : float
        Round-trip latency in samples, 0 or more.
    noise_dbfs : float
        RMS noise per input in dBFS; -inf or below -300 for none.
    gain_db : float
        Gain of the device input, dB.
    drift_ppm : float
        Input clock against output clock, parts per million.
    polarity : int
        1 or -1, applied to the device input.
    seed : int
        Seed of the noise generator.

    Notes
    -----
    Pulled samples depend only on the pushed samples and the seed, never on the block sizes of
    ``push`` and ``pull``.
    """

    def __init__(
        self,
        sample_rate_hz: int,
        latency_samples: float,
        noise_dbfs: float = -96.0,
        gain_db: float = 0.0,
        drift_ppm: float = 0.0,
        polarity: int = 1,
        seed: int = 0,
    ) -> None:
        self.sample_rate_hz = int(sample_rate_hz)
        self.latency_samples = float(latency_samples)
        self.ratio = 1.0 / (1.0 + drift_ppm * 1e-6)
        self.noise_rms = amplitude(noise_dbfs) if noise_dbfs > -300 else 0.0
        self.device_scale = polarity * 10 ** (gain_db / 20)
        self._rng = np.random.default_rng(seed)
        # Played history: self._played[i] is played sample self._offset + i, channels as
        # TAKE_CHANNELS. The leading zeros are the silence before the first played sample,
        # as far back as the first recorded frame's interpolation window reaches.
        lead = math.ceil(self.latency_samples) + 2 * _SINC_HALF_TAPS + 2
        self._played = np.zeros((lead, 2))
        self._offset = -lead
        self._pushed = 0
        self._pulled = 0
        self._fixed_taps: np.ndarray | None = None
        if self.ratio == 1.0:
            # Without drift every frame reads at the same fractional position: one set of taps.
            frac = -self.latency_samples - math.floor(-self.latency_samples)
            self._fixed_taps = _sinc_taps(np.array([frac]))[0]

    def push(self, played: np.ndarray) -> None:
        """Append played frames, shape (frames, 2): [loopback output, device return]."""
        played = np.asarray(played, dtype=np.float64).reshape(-1, 2)
        self._played = np.concatenate([self._played, played])
        self._pushed += len(played)

    def _positions(self, start: int, frames: int) -> np.ndarray:
        return np.arange(start, start + frames) * self.ratio - self.latency_samples

    def needed(self, frames: int) -> int:
        """How many played frames must have been pushed before pulling ``frames`` more."""
        if frames <= 0:
            return 0
        last = self._positions(self._pulled + frames - 1, 1)[0]
        return max(math.floor(last) + _SINC_HALF_TAPS + 1, 0)

    def _pull_drifting(self, t: np.ndarray, views: list[np.ndarray], out: np.ndarray) -> None:
        """Fill ``out`` (n, 2) with the history read at positions ``t`` (n,), each with its own
        interpolation taps (the drift moves the fractional position from frame to frame)."""
        base = np.floor(t)
        index = base.astype(np.int64) - _SINC_HALF_TAPS + 1 - self._offset
        taps = _table_taps(t - base)
        # Read positions advance by one sample per frame except where the drift has added or
        # dropped one: between those breaks the windows are consecutive rows of a sliding view
        # of the history, read without copying.
        bounds = np.concatenate([[0], np.flatnonzero(np.diff(index) != 1) + 1, [len(t)]])
        for c in range(2):
            for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
                first = int(index[start])
                out[start:stop, c] = np.einsum(
                    "ij,ij->i", views[c][first : first + stop - start], taps[start:stop]
                )

    def pull(self, frames: int) -> np.ndarray:
        """The next ``frames`` recorded frames, float64 shape (frames, 2) in TAKE_CHANNELS order.

        Raises
        ------
        ValueError
            If fewer played frames were pushed than :meth:`needed` asks (a programming error).
        """
        if self.needed(frames) > self._pushed:
            raise ValueError(
                f"pull({frames}) needs {self.needed(frames)} played frames, "
                f"{self._pushed} were pushed"
            )
        taps_n = 2 * _SINC_HALF_TAPS
        out = np.zeros((frames, 2))
        if frames:
            if self._fixed_taps is not None:
                first = self._pulled + math.floor(-self.latency_samples) - _SINC_HALF_TAPS + 1
                first -= self._offset
                window = self._played[first : first + frames + taps_n - 1]
                for c in range(2):
                    views = np.lib.stride_tricks.sliding_window_view(window[:, c], taps_n)
                    out[:, c] = views @ self._fixed_taps
            else:
                t = self._positions(self._pulled, frames)
                views = [
                    np.lib.stride_tricks.sliding_window_view(self._played[:, c], taps_n)
                    for c in range(2)
                ]
                for chunk in range(0, frames, _DRIFT_CHUNK):
                    self._pull_drifting(
                        t[chunk : chunk + _DRIFT_CHUNK], views, out[chunk : chunk + _DRIFT_CHUNK]
                    )
        out[:, 1] *= self.device_scale
        if self.noise_rms:
            out += self.noise_rms * self._rng.standard_normal((frames, 2))
        self._pulled += frames
        # Forget played samples that no later read can reach (read positions only increase).
        next_first = math.floor(self._positions(self._pulled, 1)[0]) - _SINC_HALF_TAPS
        drop = next_first - self._offset
        if drop > 65536:
            self._played = self._played[drop:]
            self._offset += drop
        return out


def take_seed(seed: int, knobs: dict[str, float]) -> int:
    """The noise seed of one take: the rig's seed mixed with the knob setting, so a take
    recorded again (resumed, retaken) gets the same noise whatever order takes ran in."""
    key = knob_label(dict(sorted(knobs.items())))
    return int(np.random.SeedSequence([seed, zlib.crc32(key.encode())]).generate_state(1)[0])


class VirtualEngine:
    """The :class:`~ampcap.capture.engine.AudioEngine` of the virtual rig.

    Plays the program to the loopback output and through a :class:`VirtualAmp` (the device
    return), records both through a :class:`VirtualInterface`, and hands ``(frames, 2)`` float32
    blocks ``[loopback, device]`` to the sink, as fast as the CPU allows.

    Parameters
    ----------
    sample_rate_hz, latency_samples, noise_dbfs, gain_db, drift_ppm, polarity, seed
        The rig's ``[virtual]`` table (see :class:`ampcap.capture.rig.VirtualSettings`).
    blocksize : int, default 8192
        Frames per block handed to the sink.

    Notes
    -----
    Each take starts from silence (amp state cleared) and its noise is seeded from ``seed`` and
    the knob setting (:func:`take_seed`), so the same take recorded twice is identical.
    """

    def __init__(
        self,
        sample_rate_hz: int = 48000,
        latency_samples: float = 183.37,
        noise_dbfs: float = -96.0,
        gain_db: float = 0.0,
        drift_ppm: float = 0.0,
        polarity: int = 1,
        seed: int = 0,
        blocksize: int = 8192,
    ) -> None:
        self.sample_rate_hz = int(sample_rate_hz)
        self.latency_samples = latency_samples
        self.noise_dbfs = noise_dbfs
        self.gain_db = gain_db
        self.drift_ppm = drift_ppm
        self.polarity = polarity
        self.seed = seed
        self.blocksize = int(blocksize)
        self.amp = VirtualAmp(self.sample_rate_hz, seed)
        self.device_names = {
            "output": "ampcap virtual interface, outputs 1 (device) and 2 (loopback)",
            "input": "ampcap virtual interface, inputs 1 (device) and 2 (loopback)",
            "device": "ampcap virtual tube amp",
        }
        self._stop = threading.Event()

    def set_knobs(self, knobs: dict[str, float]) -> None:
        """Turn the virtual amp's knobs (see :meth:`VirtualAmp.set_knobs`)."""
        self.amp.set_knobs(knobs)

    def stop(self) -> None:
        """Ask the running take to stop after the current block (safe from a signal handler)."""
        self._stop.set()

    def run_take(
        self, program: np.ndarray, sink: Sink, progress: Progress | None = None
    ) -> TakeResult:
        """Record ``len(program)`` frames of the program played through the virtual rig.

        Parameters
        ----------
        program : numpy.ndarray, float32, shape (frames,)
        sink : callable
            Gets each recorded block, float32 shape (frames, 2) in TAKE_CHANNELS order.
        progress : callable, optional
            Called after each block with (frames done, block).

        Returns
        -------
        TakeResult
            ``interrupted`` is True when :meth:`stop` cut the take short.
        """
        # Sliced block by block (never copied whole): the program may be a memory map.
        total = len(program)
        self.amp.reset()
        interface = VirtualInterface(
            self.sample_rate_hz,
            self.latency_samples,
            self.noise_dbfs,
            self.gain_db,
            self.drift_ppm,
            self.polarity,
            take_seed(self.seed, self.amp.knobs),
        )
        played = 0
        done = 0
        while done < total:
            if self._stop.is_set():
                self._stop.clear()
                return TakeResult(frames=done, interrupted=True)
            frames = min(self.blocksize, total - done)
            while played < interface.needed(frames):
                # After the program ends the outputs play silence, and the amp rings out.
                chunk = np.zeros(self.blocksize)
                part = np.asarray(program[played : played + self.blocksize], dtype=np.float64)
                chunk[: len(part)] = part
                interface.push(np.column_stack([chunk, self.amp.process(chunk)]))
                played += self.blocksize
            block = interface.pull(frames).astype(np.float32)
            sink(block)
            done += frames
            # A program played from a map of program.wav: played pages leave memory, so a long
            # take costs no more than a short one.
            release_played_pages(program, played - self.blocksize)
            if progress is not None:
                progress(done, block)
        return TakeResult(frames=done, interrupted=False)


def engine_for(settings: VirtualSettings, blocksize: int = 8192) -> VirtualEngine:
    """A :class:`VirtualEngine` from a rig's ``[virtual]`` table."""
    return VirtualEngine(**asdict(settings), blocksize=blocksize)
