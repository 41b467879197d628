"""Alignment of capture sessions: every take of a session, and ``aligned/alignment.json``.

A session take holds two recorded channels, ``[loopback, device]``, of the whole program. Each
take is measured and checked against the program (:mod:`.take`), then gets an aligned pair
``aligned/<stem>.wav``, ``[input, target]`` on the program's time axis (:mod:`.render`):

* ``input``: the loopback read at ``loopback_latency + (1 + drift)·m`` (the program itself when
  the loopback is missing or unusable);
* ``target``: the device channel read at ``loopback_latency + device_latency + (1 + drift)·m``,
  its polarity undone.

Reading "at" a fractional position is band-limited interpolation (:mod:`.resample`). The raw
takes are only read. Recordings made elsewhere, without markers, are aligned by :mod:`.pairs`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ampcap import __version__
from ampcap.errors import AudioFileError, SessionError
from ampcap.files import check_sha256, read_audio, sha256_array, sha256_file
from ampcap.schema.alignment import (
    ALIGNED_DIR,
    AlignedTake,
    AlignmentManifest,
    save_alignment,
)
from ampcap.schema.session import (
    MANIFEST_NAME,
    PROGRAM_NAME,
    TAKE_CHANNELS,
    Program,
    SessionManifest,
    Take,
    load_session,
)
from ampcap.threads import one_blas_thread

from .render import render_aligned
from .take import MAX_LATENCY_SECONDS, TakeAnalysis, analyse_take, with_repeatability

#: Takes whose loopback latencies spread more than this (samples) have a rig that changed.
LATENCY_SPREAD_WARNING_SAMPLES = 1.0

ProgressCallback = Callable[[int, int, str], None]
"""Called with (takes done, takes in all, stem of the take just done)."""


def _session_checks(takes: list[AlignedTake]) -> dict[str, Any]:
    """Across takes: consistent latency, and the output level per knob setting."""
    aligned = [t for t in takes if t.verdict != "failed" and t.estimates]
    latencies = [
        t.estimates["loopback_latency_samples"]
        for t in aligned
        if t.estimates.get("loopback_latency_samples") is not None
    ] or [t.estimates["latency_samples"] for t in aligned]
    messages = []
    spread = float(np.ptp(latencies)) if latencies else 0.0
    if spread > LATENCY_SPREAD_WARNING_SAMPLES:
        messages.append(
            f"The round-trip latency changed by {spread:.2f} samples between takes: the audio "
            "driver reopened with other buffer settings. Each take was aligned on its own, so "
            "the data is fine; for steadier captures fix the buffer size in the driver."
        )
    failed = [t for t in takes if t.verdict == "failed"]
    if failed:
        messages.append(
            f"{len(failed)} of {len(takes)} take(s) failed and were not aligned; see each "
            "take's message, then record them again."
        )
    curve = [
        {"knobs": t.knobs, "output_rms_dbfs": t.estimates.get("output_rms_dbfs")} for t in aligned
    ]
    return {
        "takes_aligned": len(aligned),
        "takes_failed": len(failed),
        "latency_spread_samples": round(spread, 4),
        "latency_consistent": spread <= LATENCY_SPREAD_WARNING_SAMPLES,
        "volume_curve": curve,
        "messages": messages,
    }


def _take_stem(take: Take) -> str:
    return Path(take.file).stem


@one_blas_thread
def align_session(
    folder: str | os.PathLike[str],
    *,
    progress: ProgressCallback | None = None,
    max_latency_seconds: float = MAX_LATENCY_SECONDS,
) -> AlignmentManifest:
    """Align every complete take of a session and write ``aligned/``.

    Parameters
    ----------
    folder : path-like
        The session folder (``session.json``, ``program.wav``, ``takes/``).
    progress : callable, optional
        Called after each take with (done, total, take stem).
    max_latency_seconds : float, default :data:`MAX_LATENCY_SECONDS`
        Latencies searched around each marker (both signs).

    Returns
    -------
    AlignmentManifest
        Also written to ``aligned/alignment.json``. Takes that are pending, partial, failed,
        missing or unreadable get verdict ``failed``, a message, and no aligned file.

    Raises
    ------
    SessionError
        Not a session, or ``program.wav`` missing or not matching the manifest.
    """
    folder = Path(folder)
    session = load_session(folder)
    program = _read_program(folder, session)
    rate = session.sample_rate_hz
    aligned_dir = folder / ALIGNED_DIR
    results: list[AlignedTake] = []
    total = len(session.takes)
    for index, take in enumerate(session.takes):
        stem = _take_stem(take)
        results.append(
            _align_one(folder, take, program, session.program, rate, max_latency_seconds)
        )
        if results[-1].verdict == "failed":
            stale = aligned_dir / f"{stem}.wav"
            if stale.exists():
                stale.unlink()
        if progress is not None:
            progress(index + 1, total, stem)
    manifest = AlignmentManifest(
        schema_version=1,
        ampcap_version=__version__,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        session_sha256=sha256_file(folder / MANIFEST_NAME),
        program_sha256=session.program.sha256,
        sample_rate_hz=rate,
        takes=tuple(results),
        session_checks=_session_checks(results),
    )
    save_alignment(folder, manifest)
    return manifest


def _read_program(folder: Path, session: SessionManifest) -> np.ndarray:
    """``program.wav``, shape (frames,), checked against the session manifest."""
    program_path = folder / PROGRAM_NAME
    program_audio, rate = read_audio(program_path)
    if program_audio.shape[1] != 1:
        raise SessionError(
            f"{program_path} has {program_audio.shape[1]} channels; a program is mono."
        )
    program = program_audio[:, 0]
    if (
        rate != session.sample_rate_hz
        or len(program) != session.program.length
        or sha256_array(program) != session.program.sha256
    ):
        raise SessionError(
            f"{program_path} ({len(program)} frames at {rate} Hz) does not match session.json "
            f"({session.program.length} frames at {session.sample_rate_hz} Hz, SHA-256 "
            f"{session.program.sha256[:12]}...). It was replaced or edited; record the session "
            "again."
        )
    return program


def _failed_take(
    take: Take, messages: tuple[str, ...], estimates: dict[str, Any] | None = None
) -> AlignedTake:
    return AlignedTake(
        knobs=dict(take.knobs),
        raw_file=take.file,
        file="",
        verdict="failed",
        messages=messages,
        estimates=estimates if estimates is not None else {},
    )


def _read_take(folder: Path, take: Take, rate: int) -> tuple[np.ndarray | None, str]:
    """The take's audio, shape (frames, 2); or None and why it cannot be aligned.

    Raises
    ------
    AmpcapError
        The take's checksum does not match the session manifest (it was edited).
    """
    if take.status != "complete":
        return None, (
            f"The take is {take.status}, not complete: it was not aligned. Run the same "
            "`ampcap record` command again to record it (complete takes are kept)."
        )
    try:
        audio, _ = read_audio(
            folder / take.file, sample_rate_hz=rate, channels=len(TAKE_CHANNELS), allow_silence=True
        )
    except AudioFileError as exc:
        return None, f"{exc} Record the take again (`ampcap record ... --retake`)."
    check_sha256(
        audio,
        take.sha256,
        folder / take.file,
        folder / MANIFEST_NAME,
        "Restore the original take, or record it again (`ampcap record ... --retake`).",
    )
    if take.frames and len(audio) < take.frames:
        return None, (
            f"{take.file} holds {len(audio)} frames but session.json says {take.frames} were "
            f"recorded: the file was cut short after recording ({len(audio) / rate:.1f} of "
            f"{take.frames / rate:.1f} s; an interrupted copy?). Copy it again from where it was "
            "recorded, or record the take again (`ampcap record ... --retake`)."
        )
    return audio, ""


def _align_one(
    folder: Path,
    take: Take,
    program: np.ndarray,
    layout: Program,
    rate: int,
    max_latency_seconds: float,
) -> AlignedTake:
    """Read, measure, check and write one take; its manifest entry."""
    audio, unusable = _read_take(folder, take, rate)
    if audio is None:
        return _failed_take(take, (unusable,))
    analysis = analyse_take(program, audio, layout, rate, max_latency_seconds=max_latency_seconds)
    if analysis.plan is None:
        return _failed_take(take, analysis.messages, analysis.estimates)
    if len(audio) < len(program):
        analysis = TakeAnalysis(
            "warning",
            analysis.messages
            + (
                f"The take has {len(audio)} frames, fewer than the program's {len(program)}: "
                "its end was padded with silence. Record it again if the tail matters.",
            ),
            analysis.estimates,
            analysis.plan,
        )
    return _write_take(folder, take, program, layout, audio, analysis, rate)


def _write_take(
    folder: Path,
    take: Take,
    program: np.ndarray,
    layout: Program,
    audio: np.ndarray,
    analysis: TakeAnalysis,
    rate: int,
) -> AlignedTake:
    """Write the aligned pair, add the repeatability check, and make the manifest entry."""
    assert analysis.plan is not None  # failed takes are not written
    out_name = f"{ALIGNED_DIR}/{_take_stem(take)}.wav"
    references = [s for s in layout.sections if s.name in ("reference_1", "reference_2")]
    segments, digest = render_aligned(
        folder / out_name,
        program,
        [audio[:, 0], audio[:, 1]],
        analysis.plan,
        rate,
        keep=tuple((s.start, s.length) for s in references),
    )
    if len(segments) == 2:
        analysis = with_repeatability(analysis, segments[0], segments[1])
    return AlignedTake(
        knobs=dict(take.knobs),
        raw_file=take.file,
        file=out_name,
        verdict=analysis.verdict,
        messages=analysis.messages,
        estimates=analysis.estimates,
        sha256=digest,
    )
