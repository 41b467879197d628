"""The played program: one mono signal per session, laid out as the session schema describes.

Layout, in order, every section starting where the previous one ends (offsets in samples, all
recorded in ``session.json``)::

    preroll       0.5 s of silence: the recording's noise floor
    marker_start  the sync marker (exponential sine sweep, ``Marker.length``), then 0.5 s silence
    reference_1   a few seconds cut from the DI (the loudest stretch), then 0.5 s silence
    di            the DI sources back to back, 0.25 s apart, then 0.5 s silence
    reference_2   exactly the samples of reference_1
    marker_end    the same sweep, then 0.5 s silence
    tail          1.5 s of silence: the device rings out and the round-trip latency fits

The markers give each take's latency and clock drift; the two identical reference segments give
a repeatability check. The program's peak is checked against the rig's ``max_output_dbfs``
before anything is played.

:func:`build_program_file` makes the program a block at a time, reading each DI stretch by
stretch (:class:`~ampcap.capture.di.DiStream`) and writing the WAV as it goes, so its memory
does not grow with the program's length; :func:`build_program` makes the same samples in
memory.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ampcap.capture.di import DiSource, DiStream, stream_of
from ampcap.capture.rig import SafetySettings
from ampcap.errors import CaptureError, UsageError
from ampcap.levels import amplitude, dbfs
from ampcap.schema.session import PROGRAM_NAME, Marker, Program, Section, Source

PREROLL_S = 0.5
MARKER_S = 0.5
MARKER_FADE_S = 0.005
MARKER_F_START_HZ = 50.0
MARKER_F_STOP_HZ = 20000.0
GAP_S = 0.5
SOURCE_GAP_S = 0.25
REFERENCE_S = 3.0
TAIL_S = 1.5
#: Samples made, hashed and written at a time.
BLOCK_FRAMES = 1 << 17


@dataclass(frozen=True)
class BuiltProgram:
    """The program's samples and its description for the manifest.

    Attributes
    ----------
    samples : numpy.ndarray, float32, shape (frames,)
    program : ampcap.schema.session.Program
    """

    samples: np.ndarray
    program: Program


@dataclass(frozen=True)
class ProgramFile:
    """A program written to a float32 mono WAV, and its description for the manifest.

    Attributes
    ----------
    path : Path
        The WAV :func:`build_program_file` wrote.
    program : ampcap.schema.session.Program
    """

    path: Path
    program: Program


def raised_cosine_fades(samples: np.ndarray, fade: int) -> np.ndarray:
    """A copy of ``samples`` (frames,) with raised-cosine fades of ``fade`` samples at each end."""
    out = np.array(samples, dtype=np.float64)
    fade = min(fade, len(out) // 2)
    if fade > 0:
        ramp = 0.5 * (1 - np.cos(np.pi * (np.arange(fade) + 0.5) / fade))
        out[:fade] *= ramp
        out[len(out) - fade :] *= ramp[::-1]
    return out


def _fade_ramp(fade: int) -> np.ndarray:
    """The rising half of a raised-cosine fade of ``fade`` samples, float64."""
    return 0.5 * (1 - np.cos(np.pi * (np.arange(fade) + 0.5) / fade))


def _faded_block(block: np.ndarray, offset: int, length: int, fade: int) -> np.ndarray:
    """``block`` (samples ``offset:offset + len(block)`` of a part ``length`` long) as float32,
    with the part's raised-cosine fades of ``fade`` samples where they fall inside the block,
    each faded sample computed in float64 and rounded once."""
    out = np.array(block, dtype=np.float32)
    fade = min(fade, length // 2)
    if fade <= 0:
        return out
    ramp = _fade_ramp(fade)
    stop = offset + len(block)
    head = slice(offset, min(stop, fade))
    if head.start < head.stop:
        out[: head.stop - offset] = block[: head.stop - offset].astype(np.float64) * ramp[head]
    # Index into the falling ramp: the part's sample length - fade is its first.
    tail = slice(max(offset, length - fade), stop)
    if tail.start < tail.stop:
        falling = ramp[::-1][tail.start - (length - fade) : tail.stop - (length - fade)]
        out[tail.start - offset :] = block[tail.start - offset :].astype(np.float64) * falling
    return out


def sweep_marker(sample_rate_hz: int, level_dbfs: float) -> tuple[np.ndarray, Marker]:
    """The sync marker: an exponential sine sweep (Farina, AES 108th convention, 2000).

    ``x(t) = A sin(2 pi f1 T / ln(f2/f1) (exp(t ln(f2/f1) / T) - 1))`` over ``T`` =
    :data:`MARKER_S`, from 50 Hz to 20 kHz (or 0.45 of the rate, whichever is lower), with
    raised-cosine fades of :data:`MARKER_FADE_S` inside its length.

    Returns
    -------
    samples : numpy.ndarray, float64, shape (length,)
    marker : Marker
    """
    length = int(round(MARKER_S * sample_rate_hz))
    f1 = MARKER_F_START_HZ
    f2 = min(MARKER_F_STOP_HZ, 0.45 * sample_rate_hz)
    t = np.arange(length) / sample_rate_hz
    rate = math.log(f2 / f1)
    phase = 2 * np.pi * f1 * MARKER_S / rate * (np.exp(t * rate / MARKER_S) - 1)
    fade = int(round(MARKER_FADE_S * sample_rate_hz))
    samples = raised_cosine_fades(amplitude(level_dbfs) * np.sin(phase), fade)
    return samples, Marker(
        f_start_hz=f1, f_stop_hz=f2, length=length, level_dbfs=level_dbfs, fade_samples=fade
    )


@dataclass(frozen=True)
class _Scan:
    """What one pass over a source gives: its peak and the energies of its windows."""

    peak: float
    window_sums: np.ndarray  # float64, energy of the window starting at each multiple of hop


def _scan(stream: DiStream, length: int, hop: int) -> _Scan:
    """Peak and window energies of ``stream``, read a block at a time.

    The running sum of squares is carried from block to block by starting each block's
    cumulative sum at the previous block's last value, which adds the same numbers in the same
    order as one cumulative sum over the whole source, so the energies match it bit for bit.
    """
    starts = np.arange(0, stream.frames - length + 1, hop)
    wanted = np.concatenate([starts, starts + length])
    found = np.zeros(len(wanted))
    carry = 0.0
    peak = 0.0
    for first in range(0, stream.frames, BLOCK_FRAMES):
        block = stream.read(first, min(first + BLOCK_FRAMES, stream.frames))
        peak = max(peak, float(np.max(np.abs(block), initial=0.0)))
        # energy[first + k] for k = 0 .. len(block): sums of squares of the samples before it.
        energy = np.cumsum(np.concatenate([[carry], block.astype(np.float64) ** 2]))
        inside = (wanted > first) & (wanted <= first + len(block))
        found[inside] = energy[wanted[inside] - first]
        carry = float(energy[-1])
    return _Scan(peak=peak, window_sums=found[len(starts) :] - found[: len(starts)])


def _loudest_window(scans: list[_Scan], length: int, hop: int) -> tuple[int, int]:
    """(source index, start) of the loudest ``length``-sample stretch inside one source."""
    best = (-1.0, 0, 0)
    for index, scan in enumerate(scans):
        sums = scan.window_sums
        if len(sums) == 0:
            continue
        k = int(np.argmax(sums))
        if sums[k] > best[0]:
            best = (float(sums[k]), index, k * hop)
    return best[1], best[2]


@dataclass(frozen=True)
class _Part:
    """One stretch of a section: silence, fixed samples (a marker, the reference) or one DI
    source, faded in and out over ``fade`` samples (0: not faded)."""

    length: int
    samples: np.ndarray | None = None
    source: int | None = None  # index into the DI streams
    fade: int = 0


def _part_blocks(part: _Part, streams: list[DiStream]) -> Iterator[np.ndarray]:
    """The part's float32 samples as played, at most :data:`BLOCK_FRAMES` at a time."""
    for first in range(0, part.length, BLOCK_FRAMES):
        stop = min(first + BLOCK_FRAMES, part.length)
        if part.source is not None:
            block = streams[part.source].read(first, stop)
        elif part.samples is not None:
            block = part.samples[first:stop]
        else:
            yield np.zeros(stop - first, dtype=np.float32)
            continue
        yield _faded_block(block, first, part.length, part.fade)


def _layout(
    streams: list[DiStream], fs: int, safety: SafetySettings
) -> tuple[list[tuple[str, list[_Part]]], list[_Scan], Marker]:
    """The program's sections in play order, the DI scans, and the marker's description.

    The reference is the loudest :data:`REFERENCE_S` window of the DI; every source and the
    reference fade in and out over ``fade_ms``.
    """
    fade = int(round(safety.fade_ms * 1e-3 * fs))
    for stream in streams:
        if stream.frames < max(2 * fade, int(0.1 * fs)):
            raise UsageError(
                f"The DI {stream.origin} ({stream.name}) is only "
                f"{stream.frames / fs:.3f} s long; give at least 0.1 s."
            )
    marker, marker_info = sweep_marker(fs, min(-6.0, safety.max_output_dbfs - 5.0))
    gap = int(round(GAP_S * fs))
    source_gap = int(round(SOURCE_GAP_S * fs))
    ref_length = min(int(round(REFERENCE_S * fs)), max(s.frames for s in streams))
    hop = max(fs // 10, 1)
    scans = [_scan(stream, ref_length, hop) for stream in streams]
    ref_index, ref_start = _loudest_window(scans, ref_length, hop)
    reference = streams[ref_index].read(ref_start, ref_start + ref_length)

    di_parts: list[_Part] = []
    for i, stream in enumerate(streams):
        if i:
            di_parts.append(_Part(source_gap))
        di_parts.append(_Part(stream.frames, source=i, fade=fade))
    di_parts.append(_Part(gap))
    layout: list[tuple[str, list[_Part]]] = [
        ("preroll", [_Part(int(round(PREROLL_S * fs)))]),
        ("marker_start", [_Part(len(marker), samples=marker), _Part(gap)]),
        ("reference_1", [_Part(ref_length, samples=reference, fade=fade), _Part(gap)]),
        ("di", di_parts),
        ("reference_2", [_Part(ref_length, samples=reference, fade=fade), _Part(gap)]),
        ("marker_end", [_Part(len(marker), samples=marker), _Part(gap)]),
        ("tail", [_Part(int(round(TAIL_S * fs)))]),
    ]
    return layout, scans, marker_info


@dataclass
class _Written:
    """What :func:`_write_layout` handed to ``write``: sections, hashes, peak and length."""

    sections: list[Section]
    program_hash: Any
    source_hashes: list[Any]
    source_starts: list[int]
    peak: float = 0.0
    length: int = 0


def _write_layout(
    layout: list[tuple[str, list[_Part]]],
    streams: list[DiStream],
    write: Callable[[np.ndarray], None],
) -> _Written:
    """Hand the program to ``write`` a block at a time, hashing it (and each source's part) and
    tracking its peak on the way."""
    written = _Written(
        sections=[],
        program_hash=hashlib.sha256(),
        source_hashes=[hashlib.sha256() for _ in streams],
        source_starts=[0] * len(streams),
    )
    for name, parts in layout:
        start = written.length
        for part in parts:
            if part.source is not None:
                written.source_starts[part.source] = written.length
            for block in _part_blocks(part, streams):
                data = np.ascontiguousarray(block, dtype="<f4").tobytes()
                written.program_hash.update(data)
                if part.source is not None:
                    written.source_hashes[part.source].update(data)
                written.peak = max(written.peak, float(np.max(np.abs(block), initial=0.0)))
                write(block)
                written.length += len(block)
        written.sections.append(Section(name=name, start=start, length=written.length - start))
    return written


def _check_peak(
    peak_dbfs: float,
    safety: SafetySettings,
    rig_name: str,
    streams: list[DiStream],
    scans: list[_Scan],
) -> None:
    """Refuse a program above the rig's limit, naming its loudest DI and how far to lower it."""
    if peak_dbfs > safety.max_output_dbfs + 1e-6:
        loudest = streams[max(range(len(streams)), key=lambda i: scans[i].peak)]
        over = peak_dbfs - safety.max_output_dbfs
        raise CaptureError(
            f"The program would peak at {peak_dbfs:.2f} dBFS, above {rig_name}'s limit "
            f"max_output_dbfs = {safety.max_output_dbfs:g} dBFS; nothing was played. The "
            f"loudest DI is {loudest.origin} ({loudest.name}). Lower the DI by at least "
            f"{math.ceil(over * 10) / 10:.1f} dB (for example `sox in.wav out.wav gain "
            f"-{math.ceil(over + 0.5):.0f}`), or, if your reamp box takes more, raise "
            "max_output_dbfs in your own copy of the rig file."
        )


def _assemble(
    streams: list[DiStream],
    sample_rate_hz: int,
    safety: SafetySettings,
    rig_name: str,
    write: Callable[[np.ndarray], None],
) -> Program:
    """Lay out the program, hand its samples to ``write`` a block at a time, and describe it.

    Raises the over-level :class:`CaptureError` after the last block: the caller discards what
    ``write`` received.
    """
    if not streams:
        raise UsageError(
            "There is no DI to play: give --di files or leave --di out for the built-in DI."
        )
    layout, scans, marker_info = _layout(streams, sample_rate_hz, safety)
    written = _write_layout(layout, streams, write)
    peak_dbfs = dbfs(written.peak)
    _check_peak(peak_dbfs, safety, rig_name, streams, scans)
    placed = tuple(
        Source(name=s.name, kind=s.kind, start=start, length=s.frames, sha256=h.hexdigest())
        for s, start, h in zip(streams, written.source_starts, written.source_hashes, strict=True)
    )
    return Program(
        file=PROGRAM_NAME,
        sample_rate_hz=sample_rate_hz,
        length=written.length,
        sha256=written.program_hash.hexdigest(),
        peak_dbfs=round(peak_dbfs, 4),
        marker=marker_info,
        sections=tuple(written.sections),
        sources=placed,
    )


def build_program(
    sources: list[DiSource], sample_rate_hz: int, safety: SafetySettings, rig_name: str = "the rig"
) -> BuiltProgram:
    """Lay out the program around ``sources`` in memory and check it against the rig's limit.

    Parameters
    ----------
    sources : list of DiSource
        Mono DI at ``sample_rate_hz``, played in this order.
    sample_rate_hz : int
    safety : SafetySettings
        ``fade_ms`` fades every source and the reference at both ends; ``max_output_dbfs`` is
        the highest peak allowed. The markers play 5 dB below the limit (at most -6 dBFS).
    rig_name : str
        Named in the over-level message.

    Returns
    -------
    BuiltProgram
        The same samples and description :func:`build_program_file` gives for the same DI.

    Raises
    ------
    UsageError
        No sources, or a source shorter than the fades.
    CaptureError
        The program peaks above ``max_output_dbfs`` (the message names the peak, the limit, the
        loudest source and by how much to lower it).
    """
    blocks: list[np.ndarray] = []
    program = _assemble(
        [stream_of(s) for s in sources], sample_rate_hz, safety, rig_name, blocks.append
    )
    samples = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
    return BuiltProgram(samples=samples, program=program)


def build_program_file(
    streams: list[DiStream],
    sample_rate_hz: int,
    safety: SafetySettings,
    path: Path,
    rig_name: str = "the rig",
) -> ProgramFile:
    """Write the program around ``streams`` to ``path`` a block at a time and check its level.

    Memory stays bounded by a few blocks of :data:`BLOCK_FRAMES` samples and the reference
    segment, whatever the program's length: each source is read twice (once for its peak and
    loudest stretch, once to play it) and every block is hashed and written as it is made.

    Parameters
    ----------
    streams : list of DiStream
        Mono DI at ``sample_rate_hz``, played in this order.
    sample_rate_hz : int
    safety : SafetySettings
        As in :func:`build_program`.
    path : Path
        The float32 mono WAV to write (its folder must exist). Nothing is left there when
        building fails, the over-level refusal included.
    rig_name : str
        Named in the over-level message.

    Returns
    -------
    ProgramFile

    Raises
    ------
    UsageError, CaptureError
        As :func:`build_program`; CaptureError also when ``path`` cannot be written.
    """
    try:
        with sf.SoundFile(
            str(path), "w", sample_rate_hz, 1, subtype="FLOAT", format="WAV"
        ) as handle:
            program = _assemble(streams, sample_rate_hz, safety, rig_name, handle.write)
    except (OSError, sf.LibsndfileError) as exc:
        path.unlink(missing_ok=True)
        raise CaptureError(
            f"The program could not be written to {path} ({exc}); nothing was played. Free some "
            "disk space there (or point TMPDIR at a disk with room) and run the command again."
        ) from exc
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return ProgramFile(path=path, program=program)
