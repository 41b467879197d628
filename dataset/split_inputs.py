"""Read and check the aligned sessions a split is made from, before anything is written.

Sessions are read only through :mod:`ampcap.schema.session` and :mod:`ampcap.schema.alignment`.
Every refusal here happens before the output folder is touched, so a bad input never leaves a
partial dataset behind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ampcap.dataset.split import SourceSpan
from ampcap.errors import DatasetError, UsageError
from ampcap.files import audio_info, check_sha256, sha256_file
from ampcap.labels import knob_label, parse_assignment
from ampcap.schema.alignment import (
    ALIGNED_CHANNELS,
    ALIGNED_DIR,
    AlignedTake,
    AlignmentManifest,
    load_alignment,
)
from ampcap.schema.alignment import (
    MANIFEST_NAME as ALIGNMENT_NAME,
)
from ampcap.schema.session import MANIFEST_NAME as SESSION_NAME
from ampcap.schema.session import Knob, SessionManifest, Source, load_session
from ampcap.settings import same_setting


@dataclass(frozen=True)
class UsableTake:
    """An aligned take a split may read: its knob setting, file and verdict."""

    knobs: dict[str, float]
    path: Path
    frames: int
    verdict: str
    messages: tuple[str, ...]


@dataclass(frozen=True)
class SessionInput:
    """One aligned session, checked: where its DI sources are and which takes it has."""

    index: int
    folder: Path
    sample_rate_hz: int
    knobs: tuple[Knob, ...]
    sources: tuple[SourceSpan, ...]
    takes: tuple[UsableTake, ...]
    session_sha256: str
    alignment_sha256: str
    program_sha256: str


def parse_holdout(text: str) -> tuple[str, float]:
    """``"isf=5"`` -> ``("isf", 5.0)``; anything else is a :class:`UsageError` with an example."""
    assignment = parse_assignment(text)
    if assignment is None:
        raise UsageError(f"--holdout {text!r} is not KNOB=VALUE, for example --holdout isf=5.")
    return assignment


def _aligned_path(folder: Path, take: AlignedTake) -> Path:
    path = folder / take.file
    if not path.exists() and (folder / ALIGNED_DIR / Path(take.file).name).exists():
        path = folder / ALIGNED_DIR / Path(take.file).name
    return path


def load_session_input(
    folder: str | Path,
    index: int,
    *,
    allow_warnings: bool,
) -> tuple[SessionInput, list[str]]:
    """Read one session and its alignment and check that a split can use them.

    Returns
    -------
    session : SessionInput
    notes : list of str
        Plain-language warnings (takes with warnings, failed takes used on request).

    Raises
    ------
    SessionError
        No session, or not aligned (the message says to run ``ampcap align``).
    DatasetError
        A failed take without ``allow_warnings``, a stale alignment, a missing or wrong aligned
        file, or a session with no DI sources.
    """
    folder = Path(folder)
    session = load_session(folder)
    alignment = load_alignment(folder)
    session_sha256 = _check_current(folder, session, alignment)
    _check_failed(folder, alignment, allow_warnings)
    knob_names = tuple(k.name for k in session.knobs)
    notes: list[str] = []
    takes: list[UsableTake] = []
    for aligned in alignment.takes:
        usable = _usable_take(folder, aligned, knob_names, session.sample_rate_hz, notes)
        if usable is not None:
            takes.append(usable)
    if not takes:
        raise DatasetError(
            f"{folder} has no aligned takes. Record takes with `ampcap record`, "
            f"then run `ampcap align {folder}`."
        )
    return SessionInput(
        index=index,
        folder=folder,
        sample_rate_hz=session.sample_rate_hz,
        knobs=session.knobs,
        sources=_source_spans(folder, index, session.program.sources, takes),
        takes=tuple(takes),
        session_sha256=session_sha256,
        alignment_sha256=sha256_file(folder / ALIGNED_DIR / ALIGNMENT_NAME),
        program_sha256=session.program.sha256,
    ), notes


def _check_current(folder: Path, session: SessionManifest, alignment: AlignmentManifest) -> str:
    """Refuse an alignment made before the session last changed; the session's SHA-256."""
    if alignment.program_sha256 != session.program.sha256:
        raise DatasetError(
            f"The alignment of {folder} was made for another program.wav (hash "
            f"{alignment.program_sha256[:12]} vs {session.program.sha256[:12]}). Run "
            f"`ampcap align {folder}` again."
        )
    if alignment.sample_rate_hz != session.sample_rate_hz:
        raise DatasetError(
            f"The alignment of {folder} is at {alignment.sample_rate_hz} Hz but the session at "
            f"{session.sample_rate_hz} Hz. Run `ampcap align {folder}` again."
        )
    for take in session.takes:
        if take.status == "complete" and not any(
            same_setting(take.knobs, a.knobs) for a in alignment.takes
        ):
            raise DatasetError(
                f"Take {knob_label(take.knobs)} of {folder} was recorded after the session was "
                f"aligned. Run `ampcap align {folder}` again."
            )
    session_sha256 = sha256_file(folder / SESSION_NAME)
    if alignment.session_sha256 != session_sha256:
        raise DatasetError(
            f"{folder} changed after it was aligned (a take recorded again?): session.json no "
            f"longer matches the hash in {ALIGNED_DIR}/{ALIGNMENT_NAME}. Run "
            f"`ampcap align {folder}` again."
        )
    return session_sha256


def _check_failed(folder: Path, alignment: AlignmentManifest, allow_warnings: bool) -> None:
    """Refuse takes whose alignment failed, unless ``--allow-warnings``."""
    failed = [a for a in alignment.takes if a.verdict == "failed"]
    if failed and not allow_warnings:
        lines = "; ".join(
            f"take {knob_label(a.knobs)} ({a.raw_file}): "
            f"{' '.join(a.messages) or 'alignment failed'}"
            for a in failed
        )
        raise DatasetError(
            f"{folder} has take(s) whose alignment failed, so their audio may not line up with "
            f"the input: {lines}. Record those takes again, or pass --allow-warnings to use "
            "them anyway."
        )


def _usable_take(
    folder: Path,
    aligned: AlignedTake,
    knob_names: tuple[str, ...],
    sample_rate_hz: int,
    notes: list[str],
) -> UsableTake | None:
    """One aligned take checked (knobs, file, format, hash); None when it has no audio.

    Appends to ``notes`` what a user should know about the take.
    """
    if set(aligned.knobs) != set(knob_names):
        raise DatasetError(
            f"Take {aligned.file} of {folder} has knobs {sorted(aligned.knobs)} but the "
            f"session's knobs are {list(knob_names)}. Run `ampcap align {folder}` again."
        )
    if aligned.verdict == "failed" and not aligned.file:
        # Alignment gave up on this take and wrote no audio: there is nothing to use.
        notes.append(
            f"{folder}: take {knob_label(aligned.knobs)} is left out: its alignment "
            f"failed and has no aligned audio ({' '.join(aligned.messages) or 'no reason'})."
        )
        return None
    path = _aligned_path(folder, aligned)
    if not aligned.file or not path.is_file():
        missing = path if aligned.file else f"The aligned file of take {aligned.raw_file}"
        raise DatasetError(f"{missing} is missing. Run `ampcap align {folder}` again.")
    info = audio_info(path)
    if info.channels != len(ALIGNED_CHANNELS) or info.sample_rate_hz != sample_rate_hz:
        raise DatasetError(
            f"{path} has {info.channels} channel(s) at {info.sample_rate_hz} Hz; an aligned "
            f"take has {len(ALIGNED_CHANNELS)} ({', '.join(ALIGNED_CHANNELS)}) at "
            f"{sample_rate_hz} Hz. Run `ampcap align {folder}` again."
        )
    check_sha256(
        path,
        aligned.sha256,
        path,
        folder / ALIGNED_DIR / ALIGNMENT_NAME,
        f"Run `ampcap align {folder}` again to rewrite it from the raw takes.",
    )
    if aligned.verdict == "failed":
        notes.append(
            f"{folder}: using take {knob_label(aligned.knobs)} although its "
            f"alignment failed ({' '.join(aligned.messages) or 'no reason given'})."
        )
    elif aligned.verdict == "warning":
        notes.append(
            f"{folder}: take {knob_label(aligned.knobs)} has alignment warnings: "
            f"{' '.join(aligned.messages) or 'see `ampcap report`'}"
        )
    return UsableTake(
        dict(aligned.knobs), path, info.frames, aligned.verdict, tuple(aligned.messages)
    )


def _source_spans(
    folder: Path, index: int, sources: Sequence[Source], takes: Sequence[UsableTake]
) -> tuple[SourceSpan, ...]:
    """The program's DI sources, each checked to lie inside every take."""
    if not sources:
        raise DatasetError(f"{folder} has no DI sources in its program; there is nothing to split.")
    spans = []
    for source in sources:
        short = [t for t in takes if t.frames < source.stop]
        if source.start < 0 or short:
            raise DatasetError(
                f"DI source {source.name!r} of {folder} ends at sample {source.stop} but "
                + (
                    f"{short[0].path} has only {short[0].frames} frames"
                    if short
                    else "starts before the program"
                )
                + f". Run `ampcap align {folder}` again; if that does not help the session is "
                "damaged."
            )
        spans.append(
            SourceSpan(
                session=index,
                name=source.name,
                kind=source.kind,
                start=source.start,
                length=source.length,
                sha256=source.sha256,
            )
        )
    return tuple(spans)


def load_inputs(
    folders: Sequence[str | Path],
    *,
    allow_warnings: bool,
) -> tuple[list[SessionInput], list[str]]:
    """Read every session and check they can be merged: same sample rate, same knobs.

    Raises
    ------
    DatasetError
        No session, the same session twice, or sessions of different rates or knobs.
    """
    if not folders:
        raise UsageError("Give at least one aligned session folder, e.g. captures/demo.")
    resolved = [Path(f).resolve() for f in folders]
    for i, path in enumerate(resolved):
        if path in resolved[:i]:
            raise DatasetError(f"{folders[i]} is given twice; give each session once.")
    inputs: list[SessionInput] = []
    notes: list[str] = []
    for index, folder in enumerate(folders):
        session, session_notes = load_session_input(folder, index, allow_warnings=allow_warnings)
        inputs.append(session)
        notes.extend(session_notes)
    first = inputs[0]
    for other in inputs[1:]:
        if other.sample_rate_hz != first.sample_rate_hz:
            raise DatasetError(
                f"{other.folder} is at {other.sample_rate_hz} Hz but {first.folder} at "
                f"{first.sample_rate_hz} Hz; sessions merged into one dataset must share a "
                "sample rate. Split them into separate datasets, or record again at one rate."
            )
        names = [k.name for k in other.knobs]
        if sorted(names) != sorted(k.name for k in first.knobs):
            raise DatasetError(
                f"{other.folder} has knobs {names} but {first.folder} has "
                f"{[k.name for k in first.knobs]}; merged sessions must have the same knobs. "
                "Split them into separate datasets."
            )
        for knob in other.knobs:
            ref = next(k for k in first.knobs if k.name == knob.name)
            if (knob.minimum, knob.maximum) != (ref.minimum, ref.maximum):
                raise DatasetError(
                    f"Knob {knob.name!r} ranges over {knob.minimum:g}..{knob.maximum:g} in "
                    f"{other.folder} but {ref.minimum:g}..{ref.maximum:g} in {first.folder}; "
                    "the model's knob input would mean different things. Record with one range."
                )
    return inputs, notes


def collect_settings(
    inputs: Sequence[SessionInput],
    knob_order: Sequence[str],
) -> tuple[list[dict[str, float]], list[list[int]]]:
    """All distinct knob settings (sorted by value) and, per session, the ones it recorded."""
    settings: list[dict[str, float]] = []
    for session in inputs:
        for take in session.takes:
            if not any(same_setting(take.knobs, s) for s in settings):
                settings.append({k: float(take.knobs[k]) for k in knob_order})
    settings.sort(key=lambda s: tuple(s[k] for k in knob_order))
    per_session = [
        [i for i, s in enumerate(settings) if any(same_setting(t.knobs, s) for t in session.takes)]
        for session in inputs
    ]
    return settings, per_session


def heldout_settings(
    settings: Sequence[dict[str, float]],
    holdout: Sequence[tuple[str, float]],
    knobs: Sequence[Knob],
) -> frozenset[int]:
    """Indices of the settings matched by any ``--holdout KNOB=VALUE``.

    Raises
    ------
    DatasetError
        An unknown knob, a value no take was recorded at, or every setting held out.
    """
    names = [k.name for k in knobs]
    chosen: set[int] = set()
    for name, value in holdout:
        assignment = knob_label({name: value})
        if name not in names:
            raise DatasetError(
                f"--holdout {assignment}: the sessions have no knob {name!r}; "
                f"their knobs are {', '.join(names)}."
            )
        matched = {i for i, s in enumerate(settings) if math.isclose(s[name], value, abs_tol=1e-9)}
        if not matched:
            recorded = sorted({s[name] for s in settings})
            raise DatasetError(
                f"--holdout {assignment}: no take was recorded at {assignment}; the "
                f"recorded values are {', '.join(f'{v:g}' for v in recorded)}."
            )
        chosen |= matched
    if settings and len(chosen) == len(settings):
        raise DatasetError(
            f"--holdout keeps all {len(settings)} knob setting(s) out of training, leaving "
            "nothing to train on. Hold out fewer settings (the paper held out only the centre)."
        )
    return frozenset(chosen)
