"""Build a dataset folder from aligned sessions: ``ampcap split``'s library entry point.

Everything is checked before the output is touched; the dataset is then written into a hidden
folder beside ``--out`` and renamed into place at the end, so an error or an interruption never
leaves a partial dataset. Audio is streamed piece by piece (one block at one setting), reading
only the frames it needs from the aligned takes, so memory stays flat however long the sessions.

Determinism: the same sessions, options and seed give byte-identical WAVs and a manifest that
differs only in ``created_at`` (the time the dataset was first built). Rebuilding a dataset over
itself keeps its ``created_at``, so then the manifest is byte-identical too.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soundfile as sf

from ampcap import __version__
from ampcap.dataset.export import EXPORT_FORMATS, write_exports
from ampcap.dataset.split import PlannedPiece, SplitPlan, plan_blocks, plan_pieces, split_ratios
from ampcap.dataset.split_inputs import (
    SessionInput,
    collect_settings,
    heldout_settings,
    load_inputs,
    same_setting,
)
from ampcap.errors import AmpcapError, AudioFileError, DatasetError
from ampcap.labels import knob_label
from ampcap.outputs import holds_files
from ampcap.schema.dataset import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    SPLITS,
    Block,
    DatasetManifest,
    Piece,
    SplitFiles,
    load_dataset,
    save_dataset,
)
from ampcap.schema.session import Knob
from ampcap.wavstream import WavStreamWriter, check_size, data_bytes

MIN_BLOCK_SECONDS = 0.1
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class SplitOptions:
    """How to cut a dataset; every field is an ``ampcap split`` option of the same name."""

    val: float = 0.15
    test: float = 0.15
    block_seconds: float = 2.0
    guard_ms: float = 50.0
    holdout: tuple[tuple[str, float], ...] = ()
    seed: int = 0
    allow_warnings: bool = False
    exports: tuple[str, ...] = ()


@dataclass(frozen=True)
class SplitResult:
    """What :func:`build_dataset` made: the folder, its manifest, and warnings to show."""

    folder: Path
    manifest: DatasetManifest
    notes: tuple[str, ...]
    replaced_same: bool


def _check_options(options: SplitOptions) -> dict[str, float]:
    ratios = split_ratios(options.val, options.test)
    if not math.isfinite(options.block_seconds) or options.block_seconds < MIN_BLOCK_SECONDS:
        raise DatasetError(
            f"--block-seconds {options.block_seconds:g} is too short; use at least "
            f"{MIN_BLOCK_SECONDS:g} (the default, 2, suits the DAFx-19 recipe)."
        )
    if not math.isfinite(options.guard_ms) or options.guard_ms < 0:
        raise DatasetError(f"--guard-ms {options.guard_ms:g} must be zero or more milliseconds.")
    for fmt in options.exports:
        if fmt not in EXPORT_FORMATS:
            raise DatasetError(
                f"--export {fmt!r} is not a known layout; choose from {', '.join(EXPORT_FORMATS)}."
            )
    return ratios


def fingerprint(inputs: Sequence[SessionInput], options: SplitOptions, name: str) -> str:
    """SHA-256 of everything that decides a dataset's bytes: inputs, options, name, version."""
    document = {
        "schema_version": SCHEMA_VERSION,
        "ampcap_version": __version__,
        "name": name,
        "sessions": [[s.session_sha256, s.alignment_sha256] for s in inputs],
        "options": asdict(options),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def _existing_created_at(out: Path, print_: str) -> str | None:
    """The ``created_at`` of the same dataset already at ``out``; refuse anything else there."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise DatasetError(f"--out {out} is a file, not a folder. Choose another --out.")
    if not holds_files(out):
        return None
    if not (out / MANIFEST_NAME).exists():
        raise DatasetError(
            f"--out {out} already holds files and is not an ampcap dataset; refusing to "
            "overwrite it. Choose another --out, or empty that folder."
        )
    try:
        existing = load_dataset(out)
    except AmpcapError as exc:  # a damaged manifest is "a different dataset", never overwritten
        raise DatasetError(
            f"--out {out} holds a dataset whose manifest cannot be read ({exc}); "
            "refusing to overwrite it. Choose another --out."
        ) from exc
    if existing.fingerprint != print_:
        raise DatasetError(
            f"--out {out} already holds a different dataset (seed {existing.seed}, val "
            f"{existing.ratios.get('val', 0):g}, test {existing.ratios.get('test', 0):g}, blocks "
            f"of {existing.block_seconds:g} s, from {len(existing.sessions)} session(s): "
            f"{', '.join(str(s.get('path')) for s in existing.sessions)}). Choose another "
            "--out, or delete that folder to replace it."
        )
    return existing.created_at


def _check_disk(
    out: Path,
    frames: dict[str, int],
    channels: int,
    options: SplitOptions,
) -> None:
    needed = sum(data_bytes(n, channels) + data_bytes(n, 1) for n in frames.values())
    if "nam" in options.exports:
        needed += sum(2 * data_bytes(n, 1, "pcm24") for n in frames.values())
    existing = out.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise DatasetError(
            f"The dataset needs about {needed / 1e9:.2f} GB but {out.parent} has "
            f"{free / 1e9:.2f} GB free. Free some space or choose another --out."
        )


class _TakeReader:
    """Read frames of aligned takes into one reused buffer.

    The last file stays open (pieces come setting by setting, so in file order). Reusing the
    buffers matters: fresh memory for every piece costs more than the reading itself.
    """

    def __init__(self, max_frames: int) -> None:
        self._path: Path | None = None
        self._file: sf.SoundFile | None = None
        self._buffer = np.empty((max_frames, 2), dtype=np.float32)

    def read(self, path: Path, start: int, frames: int) -> np.ndarray:
        """Frames ``[start, start + frames)`` as a view of shape (frames, 2); valid until the
        next call."""
        handle = self._file
        if handle is None or self._path != path:
            self.close()
            handle = self._file = sf.SoundFile(str(path))
            self._path = path
        handle.seek(start)
        data = handle.read(frames, dtype="float32", always_2d=True, out=self._buffer[:frames])
        if data.shape[0] != frames:
            raise AudioFileError(
                f"{path} ends at frame {start + data.shape[0]} but frames up to "
                f"{start + frames} are needed; it is truncated. Run "
                "`ampcap align` on its session again."
            )
        if not np.isfinite(data.sum()):
            raise AudioFileError(
                f"{path} has NaN or infinite samples between frames {start} and "
                f"{start + frames}. Run `ampcap align` on its session again."
            )
        return data

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._path = None, None


def _write_splits(
    folder: Path,
    pieces: Sequence[PlannedPiece],
    paths: dict[tuple[int, int], Path],
    knob_values: list[np.ndarray],
    rate: int,
    progress: ProgressCallback | None,
) -> dict[str, SplitFiles]:
    """Stream every piece into ``folder/<split>/{input,target}.wav``."""
    total = sum(p.length for p in pieces)
    longest = max(p.length for p in pieces)
    done = 0
    reader = _TakeReader(longest)
    files: dict[str, SplitFiles] = {}
    channels = 1 + (len(knob_values[0]) if knob_values else 0)
    # Two sets of buffers, used in turn: the writers hash a piece while the next is prepared.
    frames = [np.empty((longest, channels), dtype="<f4") for _ in range(2)]
    targets = [np.empty((longest, 1), dtype="<f4") for _ in range(2)]
    try:
        for split in SPLITS:
            (folder / split).mkdir()
            with (
                WavStreamWriter(folder / split / "input.wav", rate, channels) as x_out,
                WavStreamWriter(folder / split / "target.wav", rate, 1) as y_out,
            ):
                for turn, piece in enumerate(p for p in pieces if p.split == split):
                    frame, target = frames[turn % 2], targets[turn % 2]
                    n = piece.length
                    data = reader.read(paths[(piece.session, piece.setting)], piece.start, n)
                    frame[:n, 0] = data[:, 0]
                    frame[:n, 1:] = knob_values[piece.setting]
                    target[:n, 0] = data[:, 1]
                    x_out.write(frame[:n])
                    y_out.write(target[:n])
                    done += n
                    if progress is not None:
                        progress(done, total)
                x_info, y_info = x_out.close(), y_out.close()
            files[split] = SplitFiles(
                input=f"{split}/input.wav",
                target=f"{split}/target.wav",
                frames=x_info.frames,
                input_sha256=x_info.sha256,
                target_sha256=y_info.sha256,
            )
    finally:
        reader.close()
    return files


@dataclass(frozen=True)
class _Planned:
    """What the dataset will hold, decided before anything is written.

    ``settings`` are the distinct knob settings (sorted), ``per_session`` the ones each session
    recorded (indices into ``settings``), ``frames`` the length of each split.
    """

    rate: int
    knobs: tuple[Knob, ...]
    settings: list[dict[str, float]]
    per_session: list[list[int]]
    heldout: frozenset[int]
    plan: SplitPlan
    pieces: tuple[PlannedPiece, ...]
    frames: dict[str, int]

    def knob_values(self) -> list[np.ndarray]:
        """Each setting's knobs normalised, float32 (the input's extra channels)."""
        return [
            np.array([k.normalise(s[k.name]) for k in self.knobs], dtype="<f4")
            for s in self.settings
        ]


def _plan(
    inputs: Sequence[SessionInput],
    options: SplitOptions,
    ratios: dict[str, float],
    notes: list[str],
) -> _Planned:
    """Blocks, pieces and split lengths; refuses a split that would be empty or too large."""
    rate = inputs[0].sample_rate_hz
    knobs = inputs[0].knobs
    settings, per_session = collect_settings(inputs, [k.name for k in knobs])
    heldout = heldout_settings(settings, options.holdout, knobs)
    plan = plan_blocks(
        [span for s in inputs for span in s.sources],
        block_samples=round(options.block_seconds * rate),
        guard_samples=round(options.guard_ms * rate / 1000.0),
        ratios=ratios,
        seed=options.seed,
        sample_rate_hz=rate,
    )
    pieces = plan_pieces(plan.blocks, per_session, len(settings), heldout)
    frames = {s: sum(p.length for p in pieces if p.split == s) for s in SPLITS}
    for split, count in frames.items():
        if count == 0:
            raise DatasetError(
                f"The {split} split would be empty: its blocks lie only in sessions whose knob "
                "settings are all held out. Hold out fewer settings, or split those sessions "
                "separately."
            )
        check_size(Path(split) / "input.wav", count, 1 + len(knobs))
    if plan.unused_samples:
        notes.append(
            f"{plan.unused_samples / rate:.2f} s of DI at the ends of sources is shorter "
            "than a block and left out."
        )
    return _Planned(rate, knobs, settings, per_session, heldout, plan, pieces, frames)


def _take_paths(inputs: Sequence[SessionInput], planned: _Planned) -> dict[tuple[int, int], Path]:
    """The aligned file of each (session index, setting index) recorded."""
    paths = {}
    for session, indices in zip(inputs, planned.per_session, strict=True):
        for i in indices:
            take = next(t for t in session.takes if same_setting(t.knobs, planned.settings[i]))
            paths[(session.index, i)] = take.path
    return paths


def _minutes(planned: _Planned) -> dict[str, dict[str, float]]:
    """Minutes of audio per split and knob setting."""
    minutes: dict[str, dict[str, float]] = {s: {} for s in SPLITS}
    for piece in planned.pieces:
        label = knob_label(planned.settings[piece.setting])
        minutes[piece.split][label] = minutes[piece.split].get(label, 0.0) + piece.length
    rate = planned.rate
    return {s: {k: round(v / rate / 60.0, 6) for k, v in m.items()} for s, m in minutes.items()}


def _session_record(session: SessionInput) -> dict[str, object]:
    """A session as the manifest names it: its hashes and the takes read."""
    return {
        "path": str(session.folder),
        "session_sha256": session.session_sha256,
        "alignment_sha256": session.alignment_sha256,
        "program_sha256": session.program_sha256,
        "takes": [
            {
                "setting": knob_label(t.knobs),
                "knobs": t.knobs,
                "file": str(t.path.relative_to(session.folder))
                if t.path.is_relative_to(session.folder)
                else str(t.path),
                "verdict": t.verdict,
            }
            for t in session.takes
        ],
    }


def _manifest_blocks(plan: SplitPlan) -> tuple[Block, ...]:
    return tuple(
        Block(
            id=i,
            session=b.session,
            source=b.source,
            kind=b.kind,
            split=b.split,
            start=b.start,
            length=b.length,
            source_sha256=b.material,
            trim_start=b.trim_start,
            trim_stop=b.trim_stop,
        )
        for i, b in enumerate(plan.blocks)
    )


def _manifest(
    *,
    name: str,
    created_at: str,
    print_: str,
    planned: _Planned,
    inputs: Sequence[SessionInput],
    options: SplitOptions,
    files: dict[str, SplitFiles],
    notes: Sequence[str],
) -> DatasetManifest:
    settings = planned.settings
    minutes = _minutes(planned)
    return DatasetManifest(
        schema_version=SCHEMA_VERSION,
        ampcap_version=__version__,
        created_at=created_at,
        sample_rate_hz=planned.rate,
        knobs=planned.knobs,
        settings=tuple(settings),
        heldout=tuple(settings[i] for i in sorted(planned.heldout)),
        sessions=tuple(_session_record(s) for s in inputs),
        seed=options.seed,
        block_seconds=options.block_seconds,
        guard_ms=options.guard_ms,
        ratios=planned.plan.ratios,
        blocks=_manifest_blocks(planned.plan),
        pieces=tuple(
            Piece(
                split=p.split,
                block=p.block,
                knobs=settings[p.setting],
                offset=p.offset,
                length=p.length,
                heldout=p.heldout,
            )
            for p in planned.pieces
        ),
        splits=files,
        minutes=minutes,
        name=name,
        fingerprint=print_,
        notes=tuple(notes),
    )


def build_dataset(
    sessions: Sequence[str | Path],
    out: str | Path,
    options: SplitOptions = SplitOptions(),
    progress: ProgressCallback | None = None,
) -> SplitResult:
    """Cut aligned sessions into a leak-free train/val/test dataset at ``out``.

    Parameters
    ----------
    sessions : sequence of path-like
        Aligned session folders of one device (same sample rate and knobs).
    out : path-like
        The dataset folder to create. If it already holds the same dataset (same inputs,
        options and seed) it is rebuilt identically; any other content is refused.
    options : SplitOptions
        Ratios, block and guard lengths, held-out settings, seed, exports.
    progress : callable, optional
        Called as ``progress(frames_done, frames_total)`` while the split files are written.

    Returns
    -------
    SplitResult

    Raises
    ------
    SessionError
        A folder that is not a session, or a session that has not been aligned.
    DatasetError
        Bad options, failed takes (without ``allow_warnings``), sessions that cannot be merged,
        too little DI material, or an ``out`` holding something else. Nothing is written.
    """
    out = Path(out)
    if not out.name or out.name in (".", ".."):
        raise DatasetError(f"--out {out} names no folder; give one such as data/demo.")
    ratios = _check_options(options)
    # Order-free options in one order, so that the same request is recognised as the same.
    options = replace(
        options,
        holdout=tuple(sorted(set(options.holdout))),
        exports=tuple(f for f in EXPORT_FORMATS if f in options.exports),
    )
    inputs, notes = load_inputs(sessions, allow_warnings=options.allow_warnings)
    planned = _plan(inputs, options, ratios, notes)
    print_ = fingerprint(inputs, options, out.name)
    created_at = _existing_created_at(out, print_)
    replaced_same = created_at is not None
    if created_at is None:
        created_at = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    _check_disk(out, planned.frames, 1 + len(planned.knobs), options)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = _take_paths(inputs, planned)
    tmp = _hidden_name(out, "partial")
    try:
        tmp.mkdir()
        files = _write_splits(
            tmp, planned.pieces, paths, planned.knob_values(), planned.rate, progress
        )
        manifest = _manifest(
            name=out.name,
            created_at=created_at,
            print_=print_,
            planned=planned,
            inputs=inputs,
            options=options,
            files=files,
            notes=notes,
        )
        exports, export_notes = write_exports(tmp, manifest, options.exports, out.resolve())
        notes.extend(export_notes)
        manifest = replace(manifest, exports=exports, notes=tuple(notes))
        save_dataset(tmp, manifest)
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SplitResult(
        folder=out, manifest=manifest, notes=tuple(notes), replaced_same=replaced_same
    )


def _hidden_name(out: Path, kind: str) -> Path:
    """A new hidden name beside ``out``, chosen before anything is made there, so that a
    Ctrl-C or SIGTERM at any point leaves nothing behind that the ``finally`` does not know."""
    return out.parent / f".{out.name}.{secrets.token_hex(8)}.{kind}"


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished dataset into place; an old copy of the same dataset goes last."""
    if out.exists():
        old = _hidden_name(out, "old")
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(old, out)  # put the old copy back before the new one is removed
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)
