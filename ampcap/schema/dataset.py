"""The dataset manifest, ``data/<name>/manifest.json``, the only thing training reads.

A dataset folder holds ``{train,val,test}/input.wav`` (float32, channels
``[audio, knob_1 ... knob_n]`` with knob values normalised to [0, 1] over each knob's range) and
``{train,val,test}/target.wav`` (float32, mono), plus this manifest. Each split file is a
concatenation of *pieces*: one time block of DI material at one knob setting. A piece never
spans two blocks, two sources or two settings, so a trainer cuts its segments inside pieces.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ampcap.errors import DatasetError
from ampcap.files import atomic_write_json, read_json
from ampcap.schema.fields import PATH, build, expect_version
from ampcap.schema.session import Knob

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Block:
    """A time block of DI material; ``start``/``length`` in samples on the session's program axis.

    ``start``/``length`` are what the split files hold. ``trim_start``/``trim_stop`` are the
    samples the guard gaps removed from each end of the nominal block (the nominal block starts
    at ``start - trim_start``). ``source_sha256`` names the DI material: blocks of the same
    material in several sessions share their split.
    """

    id: int
    session: int
    source: str
    kind: str
    split: str
    start: int
    length: int
    source_sha256: str = ""
    trim_start: int = 0
    trim_stop: int = 0


@dataclass(frozen=True)
class Piece:
    """One block at one setting, at ``offset`` (samples) in its split's files.

    ``heldout`` is True for a knob setting kept out of training (``--holdout``).
    """

    split: str
    block: int
    knobs: dict[str, float]
    offset: int
    length: int
    heldout: bool = False


@dataclass(frozen=True)
class SplitFiles:
    """One split's files (relative to the dataset folder) and their length in frames.

    ``input_sha256``/``target_sha256`` are :func:`ampcap.files.sha256_array` of the samples.
    """

    input: str = field(metadata=PATH)
    target: str = field(metadata=PATH)
    frames: int
    input_sha256: str = ""
    target_sha256: str = ""


@dataclass(frozen=True)
class DatasetManifest:
    """What a dataset holds and how it was cut.

    ``settings`` are all knob settings in the dataset (dial values), ``heldout`` the ones kept
    out of train and val. ``minutes[split][setting label]`` is the audio per split per setting
    (labels like ``"isf=2.5"``). ``fingerprint`` hashes the inputs and options that made the
    dataset: the same fingerprint means the same bytes in every split file. ``exports`` maps an
    export format to its folder, relative to the dataset folder.
    """

    schema_version: int
    ampcap_version: str
    created_at: str
    sample_rate_hz: int
    knobs: tuple[Knob, ...]
    settings: tuple[dict[str, float], ...]
    heldout: tuple[dict[str, float], ...]
    sessions: tuple[dict[str, Any], ...]
    seed: int
    block_seconds: float
    guard_ms: float
    ratios: dict[str, float]
    blocks: tuple[Block, ...]
    pieces: tuple[Piece, ...]
    splits: dict[str, SplitFiles]
    minutes: dict[str, dict[str, float]] = field(default_factory=dict)
    # Added in ampcap 0.1 with defaults, so manifests without them still load.
    name: str = ""
    fingerprint: str = ""
    notes: tuple[str, ...] = ()
    exports: dict[str, str] = field(default_factory=dict, metadata=PATH)

    def pieces_of(self, split: str) -> tuple[Piece, ...]:
        return tuple(p for p in self.pieces if p.split == split)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], where: str = MANIFEST_NAME, root: Path | None = None
    ) -> DatasetManifest:
        """Read a dataset manifest; ``root`` is the dataset folder its split files lie in."""
        advice = "Run `ampcap split` again to rebuild the dataset."
        expect_version(
            data, SCHEMA_VERSION, where, DatasetError, advice, "Run `ampcap split` again."
        )
        return build(cls, data, where, DatasetError, advice, root)


def load_dataset(folder: str | Path) -> DatasetManifest:
    path = Path(folder) / MANIFEST_NAME
    if not path.exists():
        raise DatasetError(
            f"{folder} is not an ampcap dataset: it has no {MANIFEST_NAME}. Build one with "
            "`ampcap split SESSION --out FOLDER`."
        )
    return DatasetManifest.from_dict(
        read_json(path, "an ampcap dataset manifest"), str(path), Path(folder)
    )


def save_dataset(folder: str | Path, manifest: DatasetManifest) -> None:
    atomic_write_json(Path(folder) / MANIFEST_NAME, manifest.to_dict())
