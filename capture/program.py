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
before anything is written or played.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ampcap.capture.di import DiSource
from ampcap.capture.rig import SafetySettings
from ampcap.errors import CaptureError, UsageError
from ampcap.files import sha256_array
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


def raised_cosine_fades(samples: np.ndarray, fade: int) -> np.ndarray:
    """A copy of ``samples`` (frames,) with raised-cosine fades of ``fade`` samples at each end."""
    out = np.array(samples, dtype=np.float64)
    fade = min(fade, len(out) // 2)
    if fade > 0:
        ramp = 0.5 * (1 - np.cos(np.pi * (np.arange(fade) + 0.5) / fade))
        out[:fade] *= ramp
        out[len(out) - fade :] *= ramp[::-1]
    return out


def _place(out: np.ndarray, start: int, part: np.ndarray, fade: int) -> None:
    """Copy ``part`` into ``out[start:]`` with raised-cosine fades of ``fade`` samples at its
    ends (computed in float64 and rounded once, like :func:`raised_cosine_fades`)."""
    length = len(part)
    out[start : start + length] = part
    fade = min(fade, length // 2)
    if fade > 0:
        ramp = 0.5 * (1 - np.cos(np.pi * (np.arange(fade) + 0.5) / fade))
        out[start : start + fade] = part[:fade].astype(np.float64) * ramp
        out[start + length - fade : start + length] = (
            part[length - fade :].astype(np.float64) * (ramp[::-1])
        )


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
    samples = raised_cosine_fades(10 ** (level_dbfs / 20) * np.sin(phase), fade)
    return samples, Marker(
        f_start_hz=f1, f_stop_hz=f2, length=length, level_dbfs=level_dbfs, fade_samples=fade
    )


def _loudest_window(sources: list[DiSource], length: int, hop: int) -> tuple[int, int]:
    """(source index, start) of the loudest ``length``-sample stretch inside one source."""
    best = (-1.0, 0, 0)
    for index, source in enumerate(sources):
        energy = np.concatenate([[0.0], np.cumsum(source.samples.astype(np.float64) ** 2)])
        starts = np.arange(0, len(source.samples) - length + 1, hop)
        if len(starts) == 0:
            continue
        sums = energy[starts + length] - energy[starts]
        k = int(np.argmax(sums))
        if sums[k] > best[0]:
            best = (float(sums[k]), index, int(starts[k]))
    return best[1], best[2]


def build_program(
    sources: list[DiSource], sample_rate_hz: int, safety: SafetySettings, rig_name: str = "the rig"
) -> BuiltProgram:
    """Lay out the program around ``sources`` and check it against the rig's output limit.

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

    Raises
    ------
    UsageError
        No sources, or a source shorter than the fades.
    CaptureError
        The program peaks above ``max_output_dbfs`` (the message names the peak, the limit, the
        loudest source and by how much to lower it).
    """
    if not sources:
        raise UsageError(
            "There is no DI to play: give --di files or leave --di out for the built-in DI."
        )
    fs = sample_rate_hz
    fade = int(round(safety.fade_ms * 1e-3 * fs))
    for source in sources:
        if len(source.samples) < max(2 * fade, int(0.1 * fs)):
            raise UsageError(
                f"The DI {source.origin} ({source.name}) is only "
                f"{len(source.samples) / fs:.3f} s long; give at least 0.1 s."
            )
    marker, marker_info = sweep_marker(fs, min(-6.0, safety.max_output_dbfs - 5.0))
    gap = int(round(GAP_S * fs))
    source_gap = int(round(SOURCE_GAP_S * fs))
    ref_length = min(int(round(REFERENCE_S * fs)), max(len(s.samples) for s in sources))
    ref_index, ref_start = _loudest_window(sources, ref_length, max(fs // 10, 1))
    reference = sources[ref_index].samples[ref_start : ref_start + ref_length]

    # Each section: its parts as (samples or None for silence, length, faded?).
    di_parts: list[tuple[np.ndarray | None, int, bool]] = []
    for i, source in enumerate(sources):
        if i:
            di_parts.append((None, source_gap, False))
        di_parts.append((source.samples, len(source.samples), True))
    di_parts.append((None, gap, False))
    layout: list[tuple[str, list[tuple[np.ndarray | None, int, bool]]]] = [
        ("preroll", [(None, int(round(PREROLL_S * fs)), False)]),
        ("marker_start", [(marker, len(marker), False), (None, gap, False)]),
        ("reference_1", [(reference, ref_length, True), (None, gap, False)]),
        ("di", di_parts),
        ("reference_2", [(reference, ref_length, True), (None, gap, False)]),
        ("marker_end", [(marker, len(marker), False), (None, gap, False)]),
        ("tail", [(None, int(round(TAIL_S * fs)), False)]),
    ]
    total = sum(length for _, parts in layout for _, length, _ in parts)
    # Filled in place, float32: the program is never held twice or in float64.
    samples = np.zeros(total, dtype=np.float32)
    sections = []
    source_starts = []
    position = 0
    for name, parts in layout:
        start = position
        for part, length, faded in parts:
            if part is not None:
                _place(samples, position, part, fade if faded else 0)
                if name == "di":
                    source_starts.append(position)
            position += length
        sections.append(Section(name=name, start=start, length=position - start))

    placed = [
        Source(
            name=source.name,
            kind=source.kind,
            start=start,
            length=len(source.samples),
            sha256=sha256_array(samples[start : start + len(source.samples)]),
        )
        for source, start in zip(sources, source_starts, strict=True)
    ]

    peak = float(np.max(np.abs(samples)))
    peak_dbfs = 20 * math.log10(peak) if peak > 0 else -math.inf
    if peak_dbfs > safety.max_output_dbfs + 1e-6:
        loudest = max(sources, key=lambda s: float(np.max(np.abs(s.samples))))
        over = peak_dbfs - safety.max_output_dbfs
        raise CaptureError(
            f"The program would peak at {peak_dbfs:.2f} dBFS, above {rig_name}'s limit "
            f"max_output_dbfs = {safety.max_output_dbfs:g} dBFS; nothing was played. The "
            f"loudest DI is {loudest.origin} ({loudest.name}). Lower the DI by at least "
            f"{math.ceil(over * 10) / 10:.1f} dB (for example `sox in.wav out.wav gain "
            f"-{math.ceil(over + 0.5):.0f}`), or, if your reamp box takes more, raise "
            "max_output_dbfs in your own copy of the rig file."
        )
    program = Program(
        file=PROGRAM_NAME,
        sample_rate_hz=fs,
        length=len(samples),
        sha256=sha256_array(samples),
        peak_dbfs=round(peak_dbfs, 4),
        marker=marker_info,
        sections=tuple(sections),
        sources=tuple(placed),
    )
    return BuiltProgram(samples=samples, program=program)
