"""The capture session manifest, ``captures/<session>/session.json``.

A session folder holds ``program.wav`` (what was played), ``session.json`` (this schema) and
``takes/<knob>=<value>.wav`` (float32, channels in :data:`TAKE_CHANNELS` order). All offsets are
in samples on the program's time axis: sample 0 is the first sample of ``program.wav``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ampcap.errors import SessionError
from ampcap.files import atomic_write_json, read_json
from ampcap.labels import knob_label, parse_label
from ampcap.schema.fields import PATH, build, expect_version

SCHEMA_VERSION = 1
MANIFEST_NAME = "session.json"
PROGRAM_NAME = "program.wav"
TAKES_DIR = "takes"
TAKE_CHANNELS = ("loopback", "device")
SECTION_NAMES = (
    "preroll",
    "marker_start",
    "reference_1",
    "di",
    "reference_2",
    "marker_end",
    "tail",
)
TAKE_STATUSES = ("pending", "partial", "complete", "failed")
SOURCE_KINDS = ("guitar", "bass", "other")


@dataclass(frozen=True)
class Section:
    """One part of the played program: ``[start, start + length)`` in samples."""

    name: str
    start: int
    length: int

    @property
    def stop(self) -> int:
        return self.start + self.length


@dataclass(frozen=True)
class Source:
    """One DI recording inside the ``di`` section; blocks of a split never span two sources.

    ``start`` is in samples on the program's time axis (not relative to the ``di`` section).
    """

    name: str
    kind: str
    start: int
    length: int
    sha256: str

    @property
    def stop(self) -> int:
        return self.start + self.length


@dataclass(frozen=True)
class Marker:
    """The sync marker played at the start and end: an exponential sine sweep.

    ``fade_samples`` is the raised-cosine fade at each end of the sweep, inside its length.
    """

    f_start_hz: float
    f_stop_hz: float
    length: int
    level_dbfs: float
    fade_samples: int


@dataclass(frozen=True)
class Program:
    """What ``program.wav`` holds and where."""

    file: str = field(metadata=PATH)
    sample_rate_hz: int
    length: int
    sha256: str
    peak_dbfs: float
    marker: Marker
    sections: tuple[Section, ...]
    sources: tuple[Source, ...]

    def section(self, name: str) -> Section:
        for section in self.sections:
            if section.name == name:
                return section
        raise SessionError(f"The program has no section {name!r}; the session file is damaged.")


@dataclass(frozen=True)
class Knob:
    """A knob of the device and the range its values are given in (the dial's numbers)."""

    name: str
    minimum: float
    maximum: float

    def normalise(self, value: float) -> float:
        """Map a dial value to [0, 1] over the knob's range (the model's conditioning input)."""
        span = self.maximum - self.minimum
        return 0.0 if span == 0 else (value - self.minimum) / span


@dataclass(frozen=True)
class Take:
    """One recording of the whole program at one knob setting.

    ``frames`` is how many frames are on disk; ``underflows``/``overflows`` count PortAudio's
    flags seen during the take; ``peaks_dbfs`` has one entry per channel in TAKE_CHANNELS.
    ``sha256`` is :func:`ampcap.files.sha256_array` of a complete take's samples (empty in
    sessions recorded before ampcap wrote it).
    """

    knobs: dict[str, float]
    file: str = field(metadata=PATH)
    status: str = "pending"
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    frames: int = 0
    underflows: int = 0
    overflows: int = 0
    peaks_dbfs: dict[str, float] = field(default_factory=dict)
    message: str | None = None
    sha256: str = ""


@dataclass(frozen=True)
class SessionManifest:
    """Everything needed to trust, resume and re-align a capture session."""

    schema_version: int
    ampcap_version: str
    created_at: str
    rig: dict[str, Any]
    devices: dict[str, str]
    sample_rate_hz: int
    channels: tuple[str, ...]
    program: Program
    knobs: tuple[Knob, ...]
    takes: tuple[Take, ...]

    def knob(self, name: str) -> Knob:
        for knob in self.knobs:
            if knob.name == name:
                return knob
        raise SessionError(
            f"The session has no knob {name!r}; its knobs are "
            f"{', '.join(k.name for k in self.knobs)}."
        )

    def with_take(self, index: int, **changes: Any) -> SessionManifest:
        """A copy with take ``index`` changed (manifests are values; write the copy back)."""
        takes = list(self.takes)
        takes[index] = replace(takes[index], **changes)
        return replace(self, takes=tuple(takes))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], where: str = MANIFEST_NAME, root: Path | None = None
    ) -> SessionManifest:
        """Read a session manifest; a damaged one raises :class:`SessionError` naming the field.

        ``root`` is the session folder: the take and program paths must lie inside it.
        """
        advice = "Restore the file, or record the session again into a new folder."
        expect_version(
            data,
            SCHEMA_VERSION,
            where,
            SessionError,
            advice,
            "Use the ampcap version that recorded it.",
        )
        manifest = build(cls, data, where, SessionError, advice, root)
        for index, take in enumerate(manifest.takes):
            if take.status not in TAKE_STATUSES:
                raise SessionError(
                    f"{where} is damaged: takes[{index}].status is {take.status!r}, not one of "
                    f"{', '.join(TAKE_STATUSES)}. {advice}"
                )
        return manifest


def take_file_name(knobs: dict[str, float]) -> str:
    """``takes/isf=2.5.wav``; several knobs join with commas in the knob order given."""
    return f"{TAKES_DIR}/{knob_label(knobs)}.wav"


def parse_take_stem(stem: str) -> dict[str, float]:
    """Inverse of :func:`take_file_name`'s stem: ``"isf=2.5,gain=5"`` -> ``{"isf": 2.5, ...}``."""
    knobs = parse_label(stem)
    if knobs is None:
        raise SessionError(f"{stem!r} is not a take name like 'isf=2.5'.")
    return knobs


def load_session(folder: str | Path) -> SessionManifest:
    """Read ``folder/session.json``; a folder that is not a session gets a clear error."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.exists():
        raise SessionError(
            f"{folder} is not a capture session: it has no {MANIFEST_NAME}. Record one with "
            "`ampcap record`, or give the session folder's path."
        )
    return SessionManifest.from_dict(
        read_json(path, "an ampcap session manifest"), str(path), folder
    )


def save_session(folder: str | Path, manifest: SessionManifest) -> None:
    """Replace ``folder/session.json`` atomically."""
    atomic_write_json(Path(folder) / MANIFEST_NAME, manifest.to_dict())
