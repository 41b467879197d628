"""Synthetic aligned sessions on disk for the split and export tests (and the split benchmark).

A session made here has the files ``ampcap split`` reads and nothing else: ``session.json``,
``program.wav``, ``aligned/alignment.json`` and ``aligned/<setting>.wav``. Every sample says
where it came from: the aligned input at program frame n is ``n / 2**24`` and the target at
setting k is ``n / 2**(25 + k)`` (both exact in float32 for n < 2**24), so a test can decode
from any output sample which program frame and which setting it was cut from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ampcap.files import sha256_file
from ampcap.schema.alignment import AlignedTake, AlignmentManifest, save_alignment
from ampcap.schema.session import (
    TAKE_CHANNELS,
    Knob,
    Marker,
    Program,
    Section,
    SessionManifest,
    Source,
    Take,
    save_session,
    take_file_name,
)

SCALE = 2.0**-24
CHUNK_FRAMES = 1 << 20


@dataclass(frozen=True)
class SourceSpec:
    """A DI source to place in the synthetic program: name, kind, length in samples."""

    name: str
    kind: str
    length: int
    sha256: str = ""

    def material_hash(self) -> str:
        # The same name and length in two sessions stands for the same DI file.
        return self.sha256 or hashlib.sha256(f"{self.name}:{self.length}".encode()).hexdigest()


def _write_chunked(path: Path, frames: int, rate: int, channels: int, fill) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(str(path), "w", rate, channels, subtype="FLOAT", format="WAV") as handle:
        for start in range(0, frames, CHUNK_FRAMES):
            n = np.arange(start, min(frames, start + CHUNK_FRAMES), dtype=np.int64)
            handle.write(fill(n))


def decode_input(values: np.ndarray) -> np.ndarray:
    """Program frame index of aligned-input samples."""
    return np.rint(np.asarray(values, dtype=np.float64) / SCALE).astype(np.int64)


def make_session(
    folder: Path,
    *,
    rate: int = 8000,
    sources: Sequence[SourceSpec] = (
        SourceSpec("guitar.wav", "guitar", 24000),
        SourceSpec("bass.wav", "bass", 16000),
    ),
    gaps: Sequence[int] | None = None,
    knobs: Sequence[Knob] = (Knob("isf", 0.0, 10.0),),
    settings: Sequence[dict[str, float]] = ({"isf": 0.0}, {"isf": 5.0}, {"isf": 10.0}),
    verdicts: Sequence[str] | None = None,
    messages: Sequence[tuple[str, ...]] | None = None,
    edge: int = 400,
) -> Path:
    """Write an aligned session; returns its folder.

    ``gaps[i]`` samples of silence follow source i (default none). ``edge`` is the length in
    samples of each non-DI section (pre-roll, markers, references, tail).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gaps = list(gaps) if gaps is not None else [0] * len(sources)
    position = 3 * edge  # preroll, marker_start, reference_1
    placed: list[Source] = []
    for spec, gap in zip(sources, gaps, strict=True):
        placed.append(Source(spec.name, spec.kind, position, spec.length, spec.material_hash()))
        position += spec.length + gap
    di = Section("di", 3 * edge, position - 3 * edge)
    names = ("preroll", "marker_start", "reference_1")
    sections = [Section(n, i * edge, edge) for i, n in enumerate(names)] + [di]
    sections += [
        Section(n, position + i * edge, edge)
        for i, n in enumerate(("reference_2", "marker_end", "tail"))
    ]
    length = position + 3 * edge
    _write_chunked(
        folder / "program.wav", length, rate, 1, lambda n: ((n % 2**24) * SCALE).astype(np.float32)
    )
    program = Program(
        file="program.wav",
        sample_rate_hz=rate,
        length=length,
        sha256=sha256_file(folder / "program.wav"),
        peak_dbfs=0.0,
        marker=Marker(100.0, 1000.0, edge, -6.0, 8),
        sections=tuple(sections),
        sources=tuple(placed),
    )
    takes = tuple(
        Take(knobs=dict(s), file=take_file_name(s), status="complete", attempts=1, frames=length)
        for s in settings
    )
    manifest = SessionManifest(
        schema_version=1,
        ampcap_version="0.1.0",
        created_at="2026-01-01T00:00:00+00:00",
        rig={"name": "synthetic"},
        devices={},
        sample_rate_hz=rate,
        channels=TAKE_CHANNELS,
        program=program,
        knobs=tuple(knobs),
        takes=takes,
    )
    save_session(folder, manifest)
    verdicts = list(verdicts) if verdicts is not None else ["ok"] * len(settings)
    messages = list(messages) if messages is not None else [()] * len(settings)
    aligned = []
    for k, setting in enumerate(settings):
        stem = Path(take_file_name(setting)).stem
        _write_chunked(
            folder / "aligned" / f"{stem}.wav",
            length,
            rate,
            2,
            lambda n, k=k: np.stack(
                [(n % 2**24) * SCALE, (n % 2**24) * SCALE / 2 ** (k + 1)], axis=1
            ).astype(np.float32),
        )
        aligned.append(
            AlignedTake(
                knobs=dict(setting),
                raw_file=take_file_name(setting),
                file=f"aligned/{stem}.wav",
                verdict=verdicts[k],
                messages=tuple(messages[k]),
            )
        )
    save_alignment(
        folder,
        AlignmentManifest(
            schema_version=1,
            ampcap_version="0.1.0",
            created_at="2026-01-01T00:00:00+00:00",
            session_sha256=sha256_file(folder / "session.json"),
            program_sha256=program.sha256,
            sample_rate_hz=rate,
            takes=tuple(aligned),
        ),
    )
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), for byte-identity checks."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }
