"""The alignment manifest, ``captures/<session>/aligned/alignment.json``.

``ampcap align`` writes one aligned pair per take to ``aligned/<take stem>.wav``: float32, two
channels ``[input, target]``, **on the program's time axis** (frame n of the aligned file is
frame n of ``program.wav``) and exactly as long as the program. ``input`` is what reached the
device (the loopback, or the program itself when a take has no usable loopback) and ``target``
is the device's output with its latency, drift and polarity undone. The raw takes are never
rewritten. Section and source offsets of the session manifest therefore apply unchanged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ampcap.errors import SessionError
from ampcap.files import atomic_write_json, read_json
from ampcap.schema.fields import PATH, build, expect_version

SCHEMA_VERSION = 1
ALIGNED_DIR = "aligned"
MANIFEST_NAME = "alignment.json"
ALIGNED_CHANNELS = ("input", "target")
VERDICTS = ("ok", "warning", "failed")


@dataclass(frozen=True)
class AlignedTake:
    """One take's alignment: where its pair is, the verdict, and the estimates behind it.

    ``estimates`` maps names with units (``latency_samples``, ``device_latency_samples``,
    ``drift_ppm``, ``polarity``, ``snr_db``, ``repeatability_esr``...) to numbers.
    ``messages`` are plain-language warnings, each saying what to do. ``file`` and
    ``raw_file`` are relative to the session folder (``file`` is empty for a failed take);
    ``sha256`` is :func:`ampcap.files.sha256_array` of the aligned pair (empty in alignments
    made before ampcap wrote it).
    """

    knobs: dict[str, float]
    raw_file: str = field(metadata=PATH)
    file: str = field(metadata=PATH)
    verdict: str
    messages: tuple[str, ...] = ()
    estimates: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""


# Estimates are numbers (or null) except these; the report and split read them by name.
_FLAG_ESTIMATES = ("channels_swapped", "drift_corrected")
_TEXT_ESTIMATES = ("input", "device_method")


@dataclass(frozen=True)
class _VolumePoint:
    knobs: dict[str, float]
    output_rms_dbfs: float | None = None


@dataclass(frozen=True)
class _SessionChecks:
    """The shape of ``session_checks``, checked on reading (the manifest keeps the dict)."""

    takes_aligned: int = 0
    takes_failed: int = 0
    latency_spread_samples: float | None = None
    latency_consistent: bool = True
    volume_curve: tuple[_VolumePoint, ...] = ()
    messages: tuple[str, ...] = ()


def _check_estimates(take: AlignedTake, index: int, where: str, advice: str) -> None:
    """Each estimate has its kind of value: a number (or null), or the few flags and texts."""
    name = f"takes[{index}].estimates"
    for key, value in take.estimates.items():
        if key in _FLAG_ESTIMATES:
            ok, kind = isinstance(value, bool), "true or false"
        elif key in _TEXT_ESTIMATES:
            ok, kind = isinstance(value, str), "text"
        else:
            ok = value is None or (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
            )
            kind = "a number"
        if not ok:
            raise SessionError(
                f"{where} is damaged: {name}.{key} should be {kind}, not {value!r}. {advice}"
            )


@dataclass(frozen=True)
class AlignmentManifest:
    """All takes of a session, aligned; ``session_sha256`` ties it to the session it came from."""

    schema_version: int
    ampcap_version: str
    created_at: str
    session_sha256: str
    program_sha256: str
    sample_rate_hz: int
    takes: tuple[AlignedTake, ...]
    session_checks: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], where: str = MANIFEST_NAME, root: Path | None = None
    ) -> AlignmentManifest:
        """Read an alignment manifest; ``root`` is the session folder its paths lie in."""
        advice = "Run `ampcap align` on the session again."
        expect_version(
            data, SCHEMA_VERSION, where, SessionError, advice, "Run `ampcap align` again."
        )
        manifest = build(cls, data, where, SessionError, advice, root)
        build(
            _SessionChecks,
            manifest.session_checks,
            where,
            SessionError,
            advice,
            prefix="session_checks",
        )
        for index, take in enumerate(manifest.takes):
            if take.verdict not in VERDICTS:
                raise SessionError(
                    f"{where} is damaged: takes[{index}].verdict is {take.verdict!r}, not one "
                    f"of {', '.join(VERDICTS)}. {advice}"
                )
            _check_estimates(take, index, where, advice)
        return manifest


def load_alignment(session_folder: str | Path) -> AlignmentManifest:
    """Read a session's alignment; an unaligned session gets a message that says to align it."""
    path = Path(session_folder) / ALIGNED_DIR / MANIFEST_NAME
    if not path.exists():
        raise SessionError(
            f"{session_folder} has not been aligned ({path} is missing). Run "
            f"`ampcap align {session_folder}` first."
        )
    return AlignmentManifest.from_dict(
        read_json(path, "an ampcap alignment manifest"), str(path), Path(session_folder)
    )


def save_alignment(session_folder: str | Path, manifest: AlignmentManifest) -> None:
    atomic_write_json(Path(session_folder) / ALIGNED_DIR / MANIFEST_NAME, manifest.to_dict())
