"""Recording through a real audio interface with python-sounddevice (PortAudio).

One full-duplex :class:`sounddevice.Stream` per take, on one device, so playback and recording
share one clock and the round-trip latency cannot change within a take. The rig's channel map
says which output feeds the device, which output is patched straight back (the loopback) and
which inputs record them (all 1-based, as printed on the interface).

The audio callback does nothing but copy: the next slice of the program to the two outputs, the
two recorded inputs to the sink (a :class:`~ampcap.capture.engine.TakeWriter`, whose ``put``
only queues), and it counts PortAudio's status flags. Disk, meters and messages run on other
threads, so memory does not grow with the length of a take and a slow disk cannot glitch audio.

Devices are chosen by a case-insensitive substring of the name PortAudio reports (and optionally
of its host API); a missing or ambiguous match raises :class:`~ampcap.errors.DeviceError`
listing the candidates as ``[id] name (host API, in/out channels)``.
"""

from __future__ import annotations

import atexit
import gc
import mmap
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ampcap.capture.engine import Progress, Sink, TakeResult, memory_map_of, release_played_pages
from ampcap.errors import CaptureError, DeviceError
from ampcap.levels import dbfs

if TYPE_CHECKING:
    from collections.abc import Callable

    from ampcap.capture.rig import AudioSettings, Rig, SafetySettings

# How often the main thread polls a running take: meters refresh at this rate.
_POLL_S = 0.05
# A stream whose callback has not run for this long (and at least ten blocks) has stalled: a
# device unplugged, a sound server stopped.
_STALL_S = 3.0
# How long PortAudio gets to abort a stalled stream before ampcap stops waiting for it.
_ABORT_WAIT_S = 2.0
# Peak allowed above max_output_dbfs: float32 rounding of a program scaled to exactly the limit.
_LEVEL_TOLERANCE_DB = 1e-3


def _page_in(samples: np.ndarray, start_frame: int, stop_frame: int) -> None:
    """Read one value per page of a memory-mapped array's frames ``[start, stop)``.

    Called ahead of the audio callback from another thread, so the callback never waits on the
    disk (or even on a page fault) for the program it plays.
    """
    if memory_map_of(samples) is not None:
        step = max(mmap.PAGESIZE // samples.itemsize, 1)
        float(np.sum(samples[max(start_frame, 0) : stop_frame : step], dtype=np.float64))


def _sounddevice() -> Any:
    """Import sounddevice, turning a missing PortAudio library into a DeviceError."""
    try:
        import sounddevice
    except OSError as exc:
        raise DeviceError(
            f"PortAudio could not be loaded ({exc}). Install it (Debian/Ubuntu: apt-get install "
            "libportaudio2; macOS and Windows: it ships with the sounddevice wheel)."
        ) from exc
    return sounddevice


@dataclass(frozen=True)
class DeviceInfo:
    """An audio device as PortAudio reports it.

    Attributes
    ----------
    index : int
        PortAudio's device id (changes when devices come and go; never store it).
    name : str
    host_api : str
        The host API's name ("JACK Audio Connection Kit", "ALSA", "Core Audio", "ASIO"...).
    max_input_channels, max_output_channels : int
    default_sample_rate_hz : float
        The device's default (for JACK: the server's) sample rate.
    """

    index: int
    name: str
    host_api: str
    max_input_channels: int
    max_output_channels: int
    default_sample_rate_hz: float

    def describe(self) -> str:
        """``[id] name (host API, in/out channels)``, as listed in device errors."""
        return (
            f"[{self.index}] {self.name} ({self.host_api}, {self.max_input_channels} in/"
            f"{self.max_output_channels} out)"
        )


def list_devices() -> list[DeviceInfo]:
    """Every device PortAudio reports now, in PortAudio's order.

    PortAudio reads the device list once; this refreshes it first, so a device plugged in (or a
    JACK client started) after ampcap started is seen.
    """
    sd = _sounddevice()
    # Re-initialising is only safe with no stream open; ampcap opens streams only inside a take.
    sd._terminate()
    sd._initialize()
    host_apis = sd.query_hostapis()
    return [
        DeviceInfo(
            index=index,
            name=str(device["name"]),
            host_api=str(host_apis[device["hostapi"]]["name"]),
            max_input_channels=int(device["max_input_channels"]),
            max_output_channels=int(device["max_output_channels"]),
            default_sample_rate_hz=float(device["default_samplerate"]),
        )
        for index, device in enumerate(sd.query_devices())
    ]


def _listing(devices: list[DeviceInfo]) -> str:
    return "\n".join(f"  {device.describe()}" for device in devices) or "  (none)"


def find_device(
    name: str,
    host_api: str = "",
    devices: list[DeviceInfo] | None = None,
) -> DeviceInfo:
    """The one device whose name contains ``name`` (case-insensitive).

    A device whose whole name equals ``name`` wins over devices that merely contain it, so an
    exact name always selects its device.

    Parameters
    ----------
    name : str
        Substring of the device name, e.g. "UltraLite" or "ampcap-virtual-amp".
    host_api : str, default ""
        Substring of the host API name ("JACK", "ALSA", "ASIO"); empty matches any.
    devices : list of DeviceInfo, optional
        The devices to choose from; default: :func:`list_devices`.

    Raises
    ------
    DeviceError
        No device or several devices match; the message lists the candidates.
    """
    devices = list_devices() if devices is None else devices
    on_api = [d for d in devices if host_api.lower() in d.host_api.lower()]
    where = f" on a host API matching {host_api!r}" if host_api else ""
    exact = [d for d in on_api if d.name.lower() == name.lower()]
    matches = exact or [d for d in on_api if name.lower() in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        hint = (
            " PortAudio reports no devices at all: is the interface connected and switched "
            "on (for JACK: is the server running, and is JACK_DEFAULT_SERVER right)?"
            if not devices
            else ""
        )
        raise DeviceError(
            f"No audio device matches {name!r}{where}.{hint} Devices PortAudio reports:\n"
            f"{_listing(devices)}\nSet device (and host_api) in the rig's [audio] table or pass "
            "--device with part of one of these names."
        )
    raise DeviceError(
        f"{name!r}{where} matches {len(matches)} audio devices:\n{_listing(matches)}\nUse more "
        "of the name with --device (or the rig's [audio] device), or set host_api in the rig "
        "to pick one."
    )


def _needed_channels(audio: AudioSettings) -> tuple[int, int]:
    return (
        max(audio.input_device, audio.input_loopback),
        max(audio.output_device, audio.output_loopback),
    )


def check_device(device: DeviceInfo, audio: AudioSettings) -> None:
    """Check that ``device`` can run the rig's channels and sample rate, before anything plays.

    Raises
    ------
    DeviceError
        Too few input or output channels for the rig's channel map, or a sample rate (or block
        size/latency) the device refuses; the message says which setting and what to change.
    """
    sd = _sounddevice()
    inputs, outputs = _needed_channels(audio)
    for direction, needed, available, keys in (
        ("input", inputs, device.max_input_channels, ("input_device", "input_loopback")),
        ("output", outputs, device.max_output_channels, ("output_device", "output_loopback")),
    ):
        if available < needed:
            raise DeviceError(
                f"The rig records through {direction} channel {needed} ({keys[0]} = "
                f"{getattr(audio, keys[0])}, {keys[1]} = {getattr(audio, keys[1])}) but "
                f"{device.describe()} has only {available} {direction} channel(s). Is this the "
                f"right device? Otherwise change {keys[0]}/{keys[1]} in the rig's [audio] table."
            )
    rate = audio.sample_rate_hz
    for direction, check, channels in (
        ("input", sd.check_input_settings, inputs),
        ("output", sd.check_output_settings, outputs),
    ):
        try:
            check(device=device.index, channels=channels, dtype="float32", samplerate=rate)
        except sd.PortAudioError as exc:
            raise DeviceError(
                f"{device.describe()} refuses {rate} Hz on its {direction} ({exc}); it reports "
                f"{device.default_sample_rate_hz:g} Hz as its rate. Set the interface (for JACK: "
                f"start the server with -r {rate}) to {rate} Hz, or use a rig whose "
                f"sample_rate_hz is {device.default_sample_rate_hz:g}."
            ) from exc


def _peak_dbfs(samples: np.ndarray, chunk: int = 1 << 20) -> float:
    peak = 0.0
    for start in range(0, len(samples), chunk):  # chunked: programs can be memory-mapped
        peak = max(peak, float(np.max(np.abs(samples[start : start + chunk]), initial=0.0)))
        # Scanned pages of a mapped program leave memory at once, not after the whole scan.
        release_played_pages(samples, min(start + chunk, len(samples)))
    return dbfs(peak)


def check_level(program: np.ndarray, max_output_dbfs: float) -> float:
    """Refuse a program that would exceed the rig's output limit; return its peak in dBFS.

    Raises
    ------
    CaptureError
        The program's peak is above ``max_output_dbfs`` (nothing has been played).
    """
    peak = _peak_dbfs(program)
    if peak > max_output_dbfs + _LEVEL_TOLERANCE_DB:
        raise CaptureError(
            f"The program peaks at {peak:.2f} dBFS, above this rig's limit of "
            f"{max_output_dbfs:g} dBFS ([safety] max_output_dbfs); nothing was played. Lower the "
            "DI level, or raise max_output_dbfs in the rig if the device's input can take it."
        )
    return peak


class SoundDeviceEngine:
    """Play a program through the rig and record the loopback and the device, via PortAudio.

    Parameters
    ----------
    device : DeviceInfo
        The resolved device (see :func:`find_device`); checked with :func:`check_device`.
    audio : AudioSettings
        The rig's ``[audio]`` table: rate, block size, latency and the 1-based channel map.
    safety : SafetySettings
        The rig's ``[safety]`` table: the output limit and the fade used when a take is stopped.

    Attributes
    ----------
    sample_rate_hz : int
    device_names : dict of str to str
        What PortAudio reported: ``device`` (``[id] name``), ``host_api``, ``portaudio``
        (version text); written to the session manifest.
    flag_counts : dict of str to int
        Blocks of the last take carrying each PortAudio status flag.
    """

    def __init__(self, device: DeviceInfo, audio: AudioSettings, safety: SafetySettings) -> None:
        sd = _sounddevice()
        self.device = device
        self.audio = audio
        self.safety = safety
        self.sample_rate_hz = audio.sample_rate_hz
        self.device_names = {
            "device": f"[{device.index}] {device.name}",
            "host_api": device.host_api,
            "portaudio": str(sd.get_portaudio_version()[1]),
        }
        self.flag_counts: dict[str, int] = {}
        self._stop_requested = False

    def stop(self) -> None:
        """Ask the running take to fade out and stop (only sets a flag: safe in a signal handler)."""
        self._stop_requested = True

    def run_take(
        self,
        program: np.ndarray,
        sink: Sink,
        progress: Progress | None = None,
    ) -> TakeResult:
        """Play ``program`` on both outputs and deliver every recorded block to ``sink``.

        Parameters
        ----------
        program : numpy.ndarray, float32, shape (frames,)
            What to play, in [-1, 1] and within the rig's ``max_output_dbfs`` (refused
            otherwise, before anything plays). A read-only memory map works and is read block
            by block.
        sink : callable
            Called from the audio callback with each recorded block, float32, shape
            ``(frames, 2)``, channels (loopback, device). It must not block.
        progress : callable, optional
            Called about 20 times a second from the calling thread with (frames recorded so
            far, the latest recorded block).

        Returns
        -------
        TakeResult
            ``frames`` recorded (``len(program)`` unless stopped), the number of blocks flagged
            as output underflow (or input underflow) and as input overflow (or output overflow),
            and ``interrupted`` when :meth:`stop` ended the take early. When stopped, the output
            fades out over the rig's ``fade_ms`` first, so nothing clicks into the device.

        Raises
        ------
        CaptureError
            The program is too loud, or the stream stalled (device unplugged, server stopped).
        DeviceError
            PortAudio refused to open or start the stream.
        """
        return self.run_outputs(program, program, sink, progress)

    def run_outputs(
        self,
        to_device: np.ndarray,
        to_loopback: np.ndarray,
        sink: Sink,
        progress: Progress | None = None,
    ) -> TakeResult:
        """Like :meth:`run_take`, with a different signal on each output.

        ``to_device`` goes to the output feeding the device, ``to_loopback`` to the output
        patched straight back; both float32, shape (frames,), same length, each checked against
        ``max_output_dbfs``. ``ampcap rig check`` uses it to tell the two paths apart.
        """
        for signal in (to_device, to_loopback):
            if signal.ndim != 1 or len(signal) != len(to_device):
                raise ValueError(
                    f"output signals must have shape ({len(to_device)},), not {signal.shape}"
                )
            check_level(signal, self.safety.max_output_dbfs)
        finished = threading.Event()
        state = _TakeState()
        self.flag_counts = {}
        self._stop_requested = False
        callback = self._callback(to_device, to_loopback, sink, state)
        stream = self._open_stream(callback, finished)
        sd = _sounddevice()
        # A full garbage collection takes tens of milliseconds with ampcap's modules loaded; in
        # the audio thread that is a dropout. Collect now and freeze what exists, so collections
        # during the take only look at objects the take itself creates.
        gc.collect()
        gc.freeze()
        try:
            stream.start()
            try:
                self._wait(stream, finished, state, progress, (to_device, to_loopback))
            finally:
                if not state.abandoned:
                    stream.stop()
                    stream.close()
        except sd.PortAudioError as exc:
            raise DeviceError(f"The stream on {self.device.describe()} failed: {exc}.") from exc
        finally:
            gc.unfreeze()
        if state.error is not None:
            raise state.error
        if progress is not None and state.latest is not None:
            progress(state.position, state.latest)
        flags = self.flag_counts
        return TakeResult(
            frames=state.position,
            underflows=flags.get("output_underflow", 0) + flags.get("input_underflow", 0),
            overflows=flags.get("input_overflow", 0) + flags.get("output_overflow", 0),
            interrupted=state.position < len(to_device),
        )

    def _callback(
        self, to_device: np.ndarray, to_loopback: np.ndarray, sink: Sink, state: _TakeState
    ) -> Callable[[np.ndarray, np.ndarray, int, Any, Any], None]:
        """The PortAudio callback of one take: plays the next block of each output (faded out
        once :meth:`stop` is asked), hands the recorded block to ``sink``, counts status flags."""
        sd = _sounddevice()
        audio = self.audio
        length = len(to_device)
        out_device, out_loop = audio.output_device - 1, audio.output_loopback - 1
        record = [audio.input_loopback - 1, audio.input_device - 1]  # TAKE_CHANNELS order
        fade_frames = max(1, round(self.safety.fade_ms * 1e-3 * self.sample_rate_hz))

        def callback(
            indata: np.ndarray, outdata: np.ndarray, frames: int, time_info: Any, status: Any
        ) -> None:
            state.calls += 1
            if status:
                for flag in _FLAGS:
                    if getattr(status, flag):
                        self.flag_counts[flag] = self.flag_counts.get(flag, 0) + 1
            outdata.fill(0.0)
            start = state.position
            count = min(frames, length - start)
            if count > 0:
                if self._stop_requested and state.fade_left is None:
                    state.fade_left = fade_frames
                gain: np.ndarray | float = 1.0
                if state.fade_left is not None:
                    count = min(count, state.fade_left)
                    gain = (state.fade_left - np.arange(count, dtype=np.float32)) / fade_frames
                    state.fade_left -= count
                outdata[:count, out_device] = to_device[start : start + count] * gain
                outdata[:count, out_loop] = to_loopback[start : start + count] * gain
                block = indata[:count, record]  # a new array: PortAudio reuses indata
                try:
                    sink(block)
                except Exception as exc:  # noqa: BLE001 - re-raised by run_take, not lost
                    state.error = exc
                    raise sd.CallbackAbort from exc
                state.latest = block
                state.position = start + count
            if state.position >= length or state.fade_left == 0:
                raise sd.CallbackStop

        return callback

    def _open_stream(self, callback: Callable[..., None], finished: threading.Event) -> Any:
        """A duplex stream on the rig's device, not started; ``finished`` is set when it ends."""
        sd = _sounddevice()
        try:
            return sd.Stream(
                device=(self.device.index, self.device.index),
                samplerate=self.sample_rate_hz,
                blocksize=self.audio.blocksize,
                latency=self.audio.latency,
                channels=_needed_channels(self.audio),
                dtype="float32",
                callback=callback,
                finished_callback=finished.set,
            )
        except sd.PortAudioError as exc:
            raise DeviceError(
                f"{self.device.describe()} could not open a stream at "
                f"{self.sample_rate_hz} Hz: {exc}."
            ) from exc

    def _wait(
        self,
        stream: Any,
        finished: threading.Event,
        state: _TakeState,
        progress: Progress | None,
        played: tuple[np.ndarray, ...],
    ) -> None:
        """Wait on the calling thread until the stream finishes, feeding the progress callback,
        paging memory-mapped output in ahead of the callback and giving back what it played."""
        block_s = self.audio.blocksize / self.sample_rate_hz
        stall_s = max(_STALL_S, 10 * block_s)
        last_calls, last_change = -1, time.monotonic()
        released_at = 0
        ahead = 2 * self.sample_rate_hz
        unique = [s for i, s in enumerate(played) if all(s is not t for t in played[:i])]
        for signal in unique:
            _page_in(signal, 0, ahead)
        paged_to = ahead
        try:
            while not finished.wait(_POLL_S):
                if progress is not None and state.latest is not None:
                    progress(state.position, state.latest)
                if state.position + ahead > paged_to:
                    for signal in unique:
                        _page_in(signal, paged_to, state.position + 2 * ahead)
                    paged_to = state.position + 2 * ahead
                if state.position - released_at > 2 * self.sample_rate_hz:
                    # Up to a second behind the callback: it never reads there again.
                    done = state.position - self.sample_rate_hz
                    for signal in unique:
                        release_played_pages(signal, done, released_at - self.sample_rate_hz)
                    released_at = state.position
                now = time.monotonic()
                if state.calls != last_calls:
                    last_calls, last_change = state.calls, now
                elif now - last_change > stall_s:
                    state.abandoned = not _abort_or_abandon(stream)
                    raise CaptureError(
                        f"The audio stream on {self.device.describe()} stopped delivering audio "
                        f"for {stall_s:g} s after {state.position} frames (device unplugged, or "
                        "the sound server stopped). The frames recorded so far are kept; check "
                        "the device and run the same command again to resume."
                    )
        except KeyboardInterrupt:
            # Ctrl-C without a handler: fade out and close the stream cleanly, then let the
            # caller see the interrupt.
            self.stop()
            finished.wait(max(1.0, 4 * block_s + self.safety.fade_ms * 1e-3))
            raise


_FLAGS = (
    "input_underflow",
    "input_overflow",
    "output_underflow",
    "output_overflow",
    "priming_output",
)


def _abort_or_abandon(stream: Any) -> bool:
    """Abort a stalled stream from a helper thread; True when PortAudio returned in time.

    When the JACK server dies under a stream, Pa_AbortStream (and every later call that stops
    or closes the stream, or terminates PortAudio) can block for ever. The stream is then
    abandoned: its stop and close are skipped and so is sounddevice's exit handler, so ampcap
    can still save what it recorded, say so and exit.
    """
    returned = threading.Event()

    def abort() -> None:
        stream.abort(ignore_errors=True)
        returned.set()

    threading.Thread(target=abort, name="ampcap-stream-abort", daemon=True).start()
    if returned.wait(_ABORT_WAIT_S):
        return True
    atexit.unregister(_sounddevice()._exit_handler)
    return False


class _TakeState:
    """What the callback shares with the waiting thread (plain attributes: no locks in audio)."""

    def __init__(self) -> None:
        self.position = 0
        self.calls = 0
        self.fade_left: int | None = None
        self.latest: np.ndarray | None = None
        self.error: BaseException | None = None
        # True when PortAudio did not come back from aborting a stalled stream.
        self.abandoned = False


def open_engine(rig: Rig, device_override: str | None = None) -> SoundDeviceEngine:
    """Find the rig's device, check it can run the rig, and return an engine for it.

    Parameters
    ----------
    rig : Rig
        An audio rig (``kind = "audio"``).
    device_override : str, optional
        ``--device``: a substring of the device name used instead of the rig's.

    Raises
    ------
    DeviceError
        The device is missing or ambiguous (candidates listed), has too few channels, or
        refuses the sample rate. Nothing has been played.
    """
    audio = rig.with_device(device_override).audio
    if audio is None:
        raise DeviceError(f"Rig {rig.name!r} is virtual: it records without an audio device.")
    device = find_device(audio.device, audio.host_api)
    check_device(device, audio)
    return SoundDeviceEngine(device, audio, rig.safety)
