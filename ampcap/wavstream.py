"""WAV files written piece by piece, with nothing in them but the format and the samples.

Datasets must be byte-identical for the same input and seed. libsndfile adds a ``PEAK`` chunk to
float WAVs that carries the wall-clock time of writing, so two identical splits would differ in
four bytes; this writer emits only ``fmt``, ``fact`` (float) and ``data``. It streams: memory
holds one piece at a time, and the sizes in the header are filled in when the file is closed.
"""

from __future__ import annotations

import hashlib
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from ampcap.errors import AmpcapError, DatasetError, write_error

SUBTYPES = ("float32", "pcm24")
# RIFF sizes are 32-bit: a file's data chunk must stay below 4 GiB minus the header.
MAX_DATA_BYTES = 0xFFFFFFFF - 256
_FORMAT_PCM = 0x0001
_FORMAT_FLOAT = 0x0003
_FORMAT_EXTENSIBLE = 0xFFFE
# The KSDATAFORMAT_SUBTYPE GUID tail shared by PCM and IEEE float (Microsoft's WAVEFORMATEXTENSIBLE).
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_PCM24_MAX = 2**23 - 1


@dataclass(frozen=True)
class WrittenWav:
    """What :class:`WavStreamWriter` wrote.

    ``sha256`` is the SHA-256 of the sample bytes as written (for float32 files this equals
    :func:`ampcap.files.sha256_array` of the ``(frames, channels)`` array; empty when the
    writer was made with ``sha256=False``); ``peak`` is the
    largest absolute sample value before any integer conversion.
    """

    path: Path
    frames: int
    channels: int
    sample_rate_hz: int
    sha256: str
    peak: float


def data_bytes(frames: int, channels: int, subtype: str = "float32") -> int:
    """Bytes of sample data for ``frames`` frames of ``channels`` channels."""
    return frames * channels * (4 if subtype == "float32" else 3)


def check_size(path: str | Path, frames: int, channels: int, subtype: str = "float32") -> None:
    """Refuse, before writing anything, a file too long for a WAV's 32-bit sizes."""
    needed = data_bytes(frames, channels, subtype)
    if needed > MAX_DATA_BYTES:
        raise DatasetError(
            f"{path} would hold {needed / 2**30:.2f} GiB of samples ({frames} frames x "
            f"{channels} channel(s)), more than a WAV file can (4 GiB). Split fewer knob "
            "settings or less DI material into one dataset."
        )


def _header(frames: int, channels: int, rate: int, subtype: str) -> bytes:
    width = 4 if subtype == "float32" else 3
    block_align = channels * width
    if subtype == "float32" and channels <= 2:
        fmt = struct.pack(
            "<HHIIHHH", _FORMAT_FLOAT, channels, rate, rate * block_align, block_align, width * 8, 0
        )
    elif channels <= 2:
        fmt = struct.pack(
            "<HHIIHH", _FORMAT_PCM, channels, rate, rate * block_align, block_align, width * 8
        )
    else:
        # More than two channels: WAVE_FORMAT_EXTENSIBLE, as the format's specification asks,
        # with no speaker positions (the channels are audio and knob values, not speakers).
        code = _FORMAT_FLOAT if subtype == "float32" else _FORMAT_PCM
        fmt = struct.pack(
            "<HHIIHHHHI",
            _FORMAT_EXTENSIBLE,
            channels,
            rate,
            rate * block_align,
            block_align,
            width * 8,
            22,
            width * 8,
            0,
        )
        fmt += struct.pack("<H", code) + _GUID_TAIL
    size = frames * block_align
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if subtype == "float32":
        # Non-PCM data carries a fact chunk with the frame count.
        chunks += b"fact" + struct.pack("<II", 4, frames)
    chunks += b"data" + struct.pack("<I", size)
    riff_size = 4 + len(chunks) + size + (size & 1)
    return b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + chunks


class WavStreamWriter:
    """Write a WAV file in pieces; use as a context manager.

    Float32 pieces that are already little-endian and C-contiguous are hashed and written
    straight from their memory, without copies: a split is bound by how fast new pages reach
    the file, so the writer adds none of its own. The hash of a piece is computed on a worker
    thread while the caller prepares the next one, so **a piece given to** :meth:`write` **must
    not change until the next** :meth:`write` **or** :meth:`close` **returns** (alternate two
    buffers). 24-bit pieces are converted into the writer's own buffers, so that rule does not
    apply to them.

    Parameters
    ----------
    path : path-like
        Where to write; replaced if it exists.
    sample_rate_hz : int
        Sample rate written in the header.
    channels : int
        Channels per frame; every :meth:`write` must give this many columns.
    subtype : {"float32", "pcm24"}, default "float32"
        Sample format. ``pcm24`` clips to the largest 24-bit values (symmetric, so a full-scale
        sample never reads back as exactly -1.0).
    sha256 : bool, default True
        Hash the sample bytes (see :class:`WrittenWav`); off saves the time where no one reads it.

    Raises
    ------
    AmpcapError
        When the file cannot be written (disk full, folder gone).
    """

    def __init__(
        self,
        path: str | Path,
        sample_rate_hz: int,
        channels: int,
        subtype: str = "float32",
        *,
        sha256: bool = True,
    ) -> None:
        if subtype not in SUBTYPES:
            raise ValueError(f"subtype must be one of {SUBTYPES}, not {subtype!r}")
        self.path = Path(path)
        self.sample_rate_hz = int(sample_rate_hz)
        self.channels = int(channels)
        self.subtype = subtype
        self.frames = 0
        self.peak = 0.0
        self._digest = hashlib.sha256()
        # One worker keeps the hash updates in order; hashlib releases the GIL while hashing.
        self._hasher = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="wav-sha256") if sha256 else None
        )
        self._pending: Future[None] | None = None
        self._scratch = np.empty(0, dtype=np.float32)
        self._ints = np.empty(0, dtype="<i4")
        self._bytes = np.empty(0, dtype=np.uint8)
        try:
            self._handle = open(self.path, "wb")  # closed in close()
            self._handle.write(_header(0, self.channels, self.sample_rate_hz, subtype))
        except OSError as exc:
            raise self._failure(exc) from exc

    def _failure(self, exc: OSError) -> AmpcapError:
        return write_error(self.path, exc, "nothing partial is kept")

    def write(self, samples: np.ndarray) -> None:
        """Append frames: ``samples`` is float32-convertible, shape (frames, channels)."""
        samples = np.asarray(samples)
        if samples.ndim == 1 and self.channels == 1:
            samples = samples[:, None]
        if samples.ndim != 2 or samples.shape[1] != self.channels:
            raise ValueError(f"expected (frames, {self.channels}) samples, got {samples.shape}")
        if samples.size:
            # max and -min rather than abs(): no temporary array per piece.
            self.peak = max(self.peak, float(samples.max()), -float(samples.min()))
        # The previous piece's hash must be done before its bytes (or the scratch) are reused.
        self._wait_for_hash()
        if self.subtype == "float32":
            raw = np.ascontiguousarray(samples, dtype="<f4").reshape(-1).view(np.uint8)
        else:
            raw = self._pcm24(samples)
        if self._hasher is not None:
            self._pending = self._hasher.submit(self._digest.update, raw)
        try:
            self._handle.write(raw)
        except OSError as exc:
            raise self._failure(exc) from exc
        self.frames += samples.shape[0]

    def _pcm24(self, samples: np.ndarray) -> np.ndarray:
        """Little-endian 24-bit bytes of ``samples``, built in scratch buffers kept between
        pieces (scaling by 2**23 and rounding are exact in float32 below 2**24)."""
        n = samples.size
        if self._scratch.size < n:
            self._scratch = np.empty(n, dtype=np.float32)
            self._ints = np.empty(n, dtype="<i4")
            self._bytes = np.empty(3 * n, dtype=np.uint8)
        scaled = self._scratch[:n].reshape(samples.shape)
        np.multiply(samples, np.float32(2**23), out=scaled, casting="unsafe")
        np.rint(scaled, out=scaled)
        np.clip(scaled, -_PCM24_MAX, _PCM24_MAX, out=scaled)
        ints = self._ints[:n]
        np.copyto(ints, self._scratch[:n], casting="unsafe")
        raw = self._bytes[: 3 * n]
        np.copyto(raw.reshape(-1, 3), ints.view(np.uint8).reshape(-1, 4)[:, :3])
        return raw

    def _wait_for_hash(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def close(self) -> WrittenWav:
        """Fill in the header's sizes and close the file."""
        self._wait_for_hash()
        if self._hasher is not None:
            self._hasher.shutdown()
        if not self._handle.closed:
            try:
                size = data_bytes(self.frames, self.channels, self.subtype)
                if size & 1:
                    self._handle.write(b"\x00")
                self._handle.seek(0)
                self._handle.write(
                    _header(self.frames, self.channels, self.sample_rate_hz, self.subtype)
                )
            except OSError as exc:
                raise self._failure(exc) from exc
            finally:
                self._handle.close()
        return WrittenWav(
            self.path,
            self.frames,
            self.channels,
            self.sample_rate_hz,
            self._digest.hexdigest() if self._hasher is not None else "",
            self.peak,
        )

    def __enter__(self) -> WavStreamWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
