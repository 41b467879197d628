"""What every audio engine does for one take, and the writer that streams a take to disk.

An engine plays a mono program through the rig (to the device and to the loopback output) and
hands each recorded block, shape ``(frames, 2)`` in ``TAKE_CHANNELS`` order (loopback, device),
to a sink. Real engines call the sink from the audio callback, so the sink must not block: the
:class:`TakeWriter`'s ``put`` only queues the block; its thread writes it with soundfile, so
memory does not grow with the length of a take.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import queue
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf

from ampcap.errors import CaptureError
from ampcap.schema.session import TAKE_CHANNELS

Sink = Callable[[np.ndarray], None]
Progress = Callable[[int, np.ndarray], None]
"""Called with (frames done, latest block) from a non-audio thread, for meters and bars."""


@dataclass(frozen=True)
class TakeResult:
    """How a take went. ``frames`` is what the engine delivered to the sink.

    ``interrupted`` is True when the take stopped early (Ctrl-C, SIGTERM, a stop request);
    ``underflows``/``overflows`` count blocks PortAudio flagged (0 on the virtual engine).
    """

    frames: int
    underflows: int = 0
    overflows: int = 0
    interrupted: bool = False


class AudioEngine(Protocol):
    """The interface ``capture.session`` records through, real or virtual."""

    sample_rate_hz: int
    device_names: dict[str, str]

    def run_take(
        self, program: np.ndarray, sink: Sink, progress: Progress | None = None
    ) -> TakeResult:
        """Play ``program`` (float32, shape (frames,)) and deliver every recorded block to ``sink``.

        Records ``len(program)`` frames in all. Stops early and returns ``interrupted=True`` when
        :meth:`stop` is called.
        """
        ...

    def stop(self) -> None:
        """Ask a running take to stop as soon as it can (safe from a signal handler)."""
        ...


def memory_map_of(samples: np.ndarray) -> mmap.mmap | None:
    """The memory map behind ``samples`` (a :class:`numpy.memmap`, a buffer over an
    :class:`mmap.mmap`, or a slice of either), or None for an array in memory."""
    mapped = samples.base
    while isinstance(mapped, np.ndarray):  # a slice of a mapped program
        mapped = mapped.base
    if isinstance(mapped, memoryview):
        mapped = mapped.obj
    return mapped if isinstance(mapped, mmap.mmap) and not mapped.closed else None


def release_played_pages(samples: np.ndarray, stop_frame: int, start_frame: int = 0) -> None:
    """Give back the memory of a memory-mapped array's pages in ``[start_frame, stop_frame)``.

    For programs played from a read-only map of ``program.wav``: pages already played leave the
    resident set, and are read from the file again if anything looks at them. Arrays in memory
    are left alone.
    """
    mapped = memory_map_of(samples)
    if mapped is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    offset = samples.ctypes.data - np.frombuffer(mapped, dtype=np.uint8, count=1).ctypes.data
    # Whole pages only: the first one may hold the file header, the last one frames still due.
    start = (offset + max(start_frame, 0) * samples.itemsize) // mmap.PAGESIZE * mmap.PAGESIZE
    stop = (offset + max(stop_frame, 0) * samples.itemsize) // mmap.PAGESIZE * mmap.PAGESIZE
    if stop > start:
        mapped.madvise(mmap.MADV_DONTNEED, start, stop - start)


# Less free space than this after a failed write: the disk is full.
_FULL_DISK_BYTES = 1 << 20


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return _FULL_DISK_BYTES  # the folder is gone: not a full disk


class TakeWriter:
    """Stream blocks of a take to a float32 WAV from a background thread.

    Use as a context manager; ``put`` never blocks and never raises (it runs in the audio
    callback). A write error is kept and raised as :class:`CaptureError` from ``close`` (or the
    next ``check``), saying how many frames were safely written. The file on disk is always a
    valid WAV holding every frame written so far: soundfile updates the header when closed, and
    the writer closes it whatever happens. ``sha256`` is the hex SHA-256 of the float32 samples
    written (:func:`ampcap.files.sha256_array` of the take), hashed on the writer's thread.
    """

    def __init__(self, path: str | Path, sample_rate_hz: int, channels: int = len(TAKE_CHANNELS)):
        self.path = Path(path)
        self.sample_rate_hz = sample_rate_hz
        self.channels = channels
        self.frames_written = 0
        self._digest = hashlib.sha256()
        self._queue: queue.SimpleQueue[np.ndarray | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ampcap-take-writer", daemon=True)
        self._file: sf.SoundFile | None = None

    def __enter__(self) -> TakeWriter:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = sf.SoundFile(
                str(self.path),
                "w",
                samplerate=self.sample_rate_hz,
                channels=self.channels,
                subtype="FLOAT",
                format="WAV",
            )
        except (OSError, sf.LibsndfileError) as exc:
            raise CaptureError(
                f"Could not create {self.path}: {exc}. Check the folder is "
                "writable and the disk has space."
            ) from exc
        self._thread.start()
        return self

    def put(self, block: np.ndarray) -> None:
        """Queue a copy of ``block`` (frames, channels) for writing. Safe in an audio callback."""
        self._queue.put(np.array(block, dtype=np.float32, copy=True))

    def _run(self) -> None:
        assert self._file is not None
        while (block := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep draining so the producer never blocks; the error is reported
            try:
                self._file.write(block)
                self._digest.update(memoryview(np.ascontiguousarray(block, dtype="<f4")))
                self.frames_written += len(block)
            except (OSError, sf.LibsndfileError, RuntimeError) as exc:
                self._error = exc

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the samples written so far (read it after the writer is closed)."""
        return self._digest.hexdigest()

    def check(self) -> None:
        """Raise :class:`CaptureError` now if a write has failed (call it between blocks)."""
        if self._error is not None:
            raise self._write_failure()

    def _write_failure(self) -> CaptureError:
        exc = self._error
        full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "space" in str(exc).lower()
        # libsndfile reports a full disk as a bare "System error."; the free space tells.
        full = full or _free_bytes(self.path.parent) < _FULL_DISK_BYTES
        cause = "the disk is full" if full else f"a write failed ({exc})"
        return CaptureError(
            f"Recording stopped because {cause} while writing {self.path}. The first "
            f"{self.frames_written} frames of this take are kept on disk and earlier takes are "
            "untouched. Free space (or fix the folder) and run the same command again to resume."
        )

    def __exit__(self, *exc_info: object) -> None:
        self._queue.put(None)
        self._thread.join()
        try:
            if self._file is not None:
                self._file.close()
        except (OSError, sf.LibsndfileError, RuntimeError) as exc:
            self._error = self._error or exc
        if self._error is not None and exc_info[0] is None:
            raise self._write_failure()
