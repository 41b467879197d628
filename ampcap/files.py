"""Files that pass between stages: atomic writes, hashes, and audio reads with clear errors.

Everything here is shared vocabulary: the stages use it, it imports no stage.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ampcap.errors import AmpcapError, AudioFileError
from ampcap.outputs import atomic_output
from ampcap.wavstream import WavStreamWriter

KEPT = "files written before this one are intact"


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old or the new file, never half.

    Written through :func:`ampcap.outputs.atomic_output`: on a write error (disk full, folder
    removed, read-only) the old file is left untouched and an :class:`AmpcapError` says so.
    """
    with atomic_output(Path(path), KEPT) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | os.PathLike[str], document: Any) -> None:
    """Write ``document`` as indented JSON, atomically (see :func:`atomic_write_bytes`)."""
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: str | os.PathLike[str], what: str) -> Any:
    """Read a JSON file, raising :class:`AmpcapError` that names ``what`` it should have been."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AmpcapError(f"{path} does not exist: expected {what}.") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AmpcapError(
            f"{path} is not valid JSON ({exc}); expected {what}. Was it edited "
            "by hand or cut short?"
        ) from exc


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks so memory stays flat."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_array(samples: np.ndarray) -> str:
    """Hex SHA-256 of an array's float32 little-endian bytes (independent of file container)."""
    return hashlib.sha256(memoryview(np.ascontiguousarray(samples, dtype="<f4"))).hexdigest()


def sha256_audio_file(path: str | os.PathLike[str], block_frames: int = 1 << 16) -> str:
    """:func:`sha256_array` of an audio file's samples as float32, read a block at a time."""
    digest = hashlib.sha256()
    try:
        with sf.SoundFile(str(path)) as handle:
            for block in handle.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                digest.update(memoryview(np.ascontiguousarray(block, dtype="<f4")))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioFileError(f"{path} could not be read ({exc}); it may be corrupt.") from exc
    return digest.hexdigest()


def check_sha256(
    samples: np.ndarray | Path, expected: str, path: Path, manifest: Path, advice: str = ""
) -> None:
    """Refuse audio whose samples no longer hash to what ``manifest`` recorded for ``path``.

    ``samples`` is the audio read from ``path``, or ``path`` itself to hash the file a block at
    a time. ``expected`` is a :func:`sha256_array` digest; an empty one (a manifest written
    before ampcap recorded it) checks nothing. The message names both files and what to do.
    """
    if not expected:
        return
    if isinstance(samples, np.ndarray):
        actual = sha256_array(samples)
    else:
        actual = sha256_audio_file(samples)
    if actual != expected:
        raise AudioFileError(
            f"{path} does not match {manifest}: its samples hash to SHA-256 {actual[:12]}... "
            f"but the manifest records {expected[:12]}.... The file was edited or replaced after "
            f"ampcap wrote it, so it is not used. "
            + (advice or "Restore the original file, or run the step that made it again.")
        )


@dataclass(frozen=True)
class AudioInfo:
    """What an audio file holds, read from its header."""

    path: Path
    sample_rate_hz: int
    frames: int
    channels: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate_hz


def _wav_promised_frames(path: Path) -> tuple[int, int] | None:
    """``(frames the header's data chunk promises, frames present)`` of a RIFF WAV, else None.

    libsndfile reads a cut-short WAV as far as its bytes go and reports that length, so a
    truncated file would pass for a short one. A data size of 0 or 0xFFFFFFFF (a stream whose
    writer never came back to fill it in) promises nothing.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            header = handle.read(12)
            if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
                return None
            position, block_align = 12, 0
            while position + 8 <= size:
                handle.seek(position)
                chunk = handle.read(8)
                name, length = chunk[:4], int.from_bytes(chunk[4:8], "little")
                if name == b"fmt ":
                    block_align = int.from_bytes(handle.read(14)[12:14], "little")
                elif name == b"data":
                    if block_align <= 0 or length in (0, 0xFFFFFFFF):
                        return None
                    present = (size - position - 8) // block_align
                    return length // block_align, present
                position += 8 + length + (length & 1)
    except OSError:
        return None
    return None


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Read an audio file's header; a missing, non-audio or truncated file raises
    :class:`AudioFileError`."""
    path = Path(path)
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as exc:  # a name too long, a folder without permission...
        raise AudioFileError(f"{path} cannot be read: {exc.strerror or exc}.") from exc
    if not exists:
        raise AudioFileError(f"{path} does not exist. Check the path and try again.")
    if is_dir:
        raise AudioFileError(f"{path} is a folder, not an audio file.")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioFileError(
            f"{path} is not an audio file soundfile can read ({exc}). Use WAV, FLAC or AIFF."
        ) from exc
    promised = _wav_promised_frames(path)
    if promised is not None and promised[1] < promised[0]:
        raise AudioFileError(
            f"{path} is truncated: its header promises {promised[0]} frames but the file holds "
            f"only {promised[1]} ({100 * promised[1] / promised[0]:.0f} %). It was cut short "
            "(an interrupted copy or export): copy or export it again."
        )
    return AudioInfo(path, int(info.samplerate), int(info.frames), int(info.channels))


def read_audio(
    path: str | os.PathLike[str],
    *,
    sample_rate_hz: int | None = None,
    channels: int | None = None,
    allow_silence: bool = False,
    start: int = 0,
    frames: int = -1,
) -> tuple[np.ndarray, int]:
    """Read audio as float32 of shape ``(frames, channels)``, validated.

    Parameters
    ----------
    path : path-like
        WAV, FLAC, AIFF or anything libsndfile reads.
    sample_rate_hz : int, optional
        When given, a file at another rate is refused (the message says how to resample).
    channels : int, optional
        When given, a file with another channel count is refused, naming both counts.
    allow_silence : bool, default False
        When False, an all-zero (or below -120 dBFS peak) file is refused.
    start, frames : int
        Read ``frames`` frames from ``start`` (``-1``: to the end).

    Returns
    -------
    samples : numpy.ndarray, float32, shape (frames, channels)
    sample_rate_hz : int

    Raises
    ------
    AudioFileError
        Missing, not audio, truncated, wrong rate or channel count, NaN/Inf, or silent.
    """
    info = audio_info(path)
    if sample_rate_hz is not None and info.sample_rate_hz != sample_rate_hz:
        raise AudioFileError(
            f"{info.path} is at {info.sample_rate_hz} Hz but {sample_rate_hz} Hz is expected. "
            f"Resample it to {sample_rate_hz} Hz (for example with sox: "
            f"`sox in.wav -r {sample_rate_hz} out.wav`) or use a rig at {info.sample_rate_hz} Hz."
        )
    if channels is not None and info.channels != channels:
        raise AudioFileError(
            f"{info.path} has {info.channels} channel(s) but {channels} is expected."
            + (
                " Mix or pick one channel first (a stereo DI is usually a mono signal twice)."
                if channels == 1
                else ""
            )
        )
    try:
        samples, rate = sf.read(
            str(info.path), dtype="float32", always_2d=True, start=start, frames=frames
        )
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioFileError(f"{info.path} could not be read ({exc}); it may be corrupt.") from exc
    expected = (info.frames - start) if frames < 0 else min(frames, info.frames - start)
    if samples.shape[0] < expected:
        raise AudioFileError(
            f"{info.path} is truncated: its header promises {expected} frames from frame {start} "
            f"but only {samples.shape[0]} could be read. Copy or export the file again."
        )
    # A NaN or infinity anywhere makes the float64 sum non-finite (float32 values cannot
    # overflow it): one pass, no temporary the size of the file.
    if not np.isfinite(samples.sum(dtype=np.float64)):
        bad = int(np.size(samples) - np.count_nonzero(np.isfinite(samples)))
        raise AudioFileError(
            f"{info.path} contains {bad} NaN or infinite sample(s). Export it again from its source."
        )
    if not allow_silence and (
        samples.size == 0 or max(float(samples.max()), -float(samples.min())) < 1e-6
    ):
        raise AudioFileError(f"{info.path} is silent (peak below -120 dBFS). Is it the right file?")
    return samples, int(rate)


def write_audio(path: str | os.PathLike[str], samples: np.ndarray, sample_rate_hz: int) -> None:
    """Write float32 WAV atomically. ``samples`` has shape (frames,) or (frames, channels).

    The file holds the format and the samples only, so the same samples give the same bytes
    (libsndfile would stamp the time of writing into a float WAV).
    """
    samples = np.asarray(samples, dtype=np.float32)
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    with (
        atomic_output(Path(path), KEPT) as tmp,
        WavStreamWriter(tmp, sample_rate_hz, channels, sha256=False) as writer,
    ):
        writer.write(samples.reshape(len(samples), channels))
