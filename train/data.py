"""A split dataset in memory, cut the DAFx-19 way: half-second segments inside pieces.

Training reads a dataset only through :mod:`ampcap.schema.dataset`. Each split file is a
concatenation of pieces (one time block at one knob setting); a segment never crosses a piece
boundary, because the audio on either side of one was never played in a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ampcap.errors import DatasetError
from ampcap.files import check_sha256, read_audio, sha256_file
from ampcap.labels import describe
from ampcap.schema.dataset import MANIFEST_NAME, SPLITS, DatasetManifest, Piece, load_dataset


@dataclass(frozen=True)
class SplitData:
    """One split's audio and pieces.

    Attributes
    ----------
    name : str
        "train", "val" or "test".
    input : numpy.ndarray, float32, shape (frames, 1 + knobs)
        Channels ``[audio, knob_1 ... knob_n]``, knobs normalised to [0, 1].
    target : numpy.ndarray, float32, shape (frames,)
        The device's output.
    pieces : tuple of Piece
    """

    name: str
    input: np.ndarray
    target: np.ndarray
    pieces: tuple[Piece, ...]


@dataclass(frozen=True)
class Dataset:
    """A dataset folder read for training: its manifest, its hash and the three splits."""

    folder: Path
    manifest: DatasetManifest
    manifest_sha256: str
    splits: dict[str, SplitData]

    @property
    def sample_rate_hz(self) -> int:
        return self.manifest.sample_rate_hz

    @property
    def input_size(self) -> int:
        return 1 + len(self.manifest.knobs)

    def knob_list(self) -> list[dict[str, float | str]]:
        return [
            {"name": k.name, "minimum": k.minimum, "maximum": k.maximum}
            for k in self.manifest.knobs
        ]


def load_split(folder: Path, manifest: DatasetManifest, split: str) -> SplitData:
    """Read one split's files and check them against the manifest.

    Raises
    ------
    DatasetError
        Missing split, wrong channel count or rate, input and target of different lengths, or a
        piece outside the files.
    """
    if split not in manifest.splits:
        raise DatasetError(f"{folder} has no {split!r} split. Run `ampcap split` again.")
    files = manifest.splits[split]
    channels = 1 + len(manifest.knobs)
    rate = manifest.sample_rate_hz
    x, _ = read_audio(folder / files.input, sample_rate_hz=rate, channels=channels)
    y, _ = read_audio(folder / files.target, sample_rate_hz=rate, channels=1)
    advice = "Restore it, or run `ampcap split` again to rebuild the dataset."
    check_sha256(x, files.input_sha256, folder / files.input, folder / MANIFEST_NAME, advice)
    check_sha256(y, files.target_sha256, folder / files.target, folder / MANIFEST_NAME, advice)
    if x.shape[0] != y.shape[0]:
        raise DatasetError(
            f"{folder / files.input} has {x.shape[0]} frames but {folder / files.target} has "
            f"{y.shape[0]}; the split is damaged. Run `ampcap split` again."
        )
    pieces = manifest.pieces_of(split)
    for piece in pieces:
        if piece.offset < 0 or piece.offset + piece.length > x.shape[0]:
            raise DatasetError(
                f"A {split} piece at samples {piece.offset}..{piece.offset + piece.length} lies "
                f"outside {folder / files.input} ({x.shape[0]} frames). Run `ampcap split` again."
            )
    return SplitData(split, np.ascontiguousarray(x), np.ascontiguousarray(y[:, 0]), pieces)


def load_training_data(folder: str | Path) -> Dataset:
    """Read a dataset folder made by ``ampcap split`` (manifest, hash and all three splits)."""
    folder = Path(folder)
    manifest = load_dataset(folder)
    splits = {name: load_split(folder, manifest, name) for name in SPLITS}
    if not any(not p.heldout for p in splits["train"].pieces):
        raise DatasetError(f"{folder} has no training pieces. Run `ampcap split` again.")
    return Dataset(folder, manifest, sha256_file(folder / MANIFEST_NAME), splits)


def segment_starts(
    pieces: tuple[Piece, ...], segment_samples: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Start offsets (samples into the split files) of every whole segment inside the pieces.

    Held-out pieces are skipped. Each piece holds ``length // segment_samples`` segments; with
    ``rng`` the grid is shifted inside the piece by a random offset in
    ``[0, length % segment_samples]``, so over the epochs every sample is used and segment edges
    move.

    Returns
    -------
    numpy.ndarray, int64, shape (segments,)
    """
    starts = []
    for piece in pieces:
        if piece.heldout:
            continue
        count = piece.length // segment_samples
        if count == 0:
            continue
        spare = piece.length - count * segment_samples
        shift = int(rng.integers(0, spare + 1)) if rng is not None and spare else 0
        starts.append(piece.offset + shift + segment_samples * np.arange(count, dtype=np.int64))
    return np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of one epoch: a function of (seed, epoch) alone, so a resumed run shuffles
    exactly as an uninterrupted one would."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)]))


def epoch_batches(
    split: SplitData, segment_samples: int, batch_size: int, seed: int, epoch: int
) -> list[np.ndarray]:
    """One epoch of mini-batches: every segment once, shuffled, ``batch_size`` to a batch.

    Returns a list of int64 arrays of segment starts; the last batch may be smaller.
    """
    rng = epoch_rng(seed, epoch)
    starts = segment_starts(split.pieces, segment_samples, rng)
    if starts.size == 0:
        raise DatasetError(
            f"The {split.name} split has no piece as long as one segment ({segment_samples} "
            "samples). Use longer split blocks or a shorter segment."
        )
    starts = starts[rng.permutation(starts.size)]
    return [starts[i : i + batch_size] for i in range(0, starts.size, batch_size)]


def setting_energies(split: SplitData, coefficient: float = 0.85) -> dict[str, tuple[float, float]]:
    """Mean energy per sample of the target at each knob setting of ``split``.

    Returns ``{setting_key: (pre-emphasised energy, plain energy)}`` over the split's pieces
    (held-out ones included), the pre-emphasis ``y[n] - coefficient·y[n-1]`` inside each piece.
    """
    sums: dict[str, list[float]] = {}
    for piece in split.pieces:
        y = split.target[piece.offset : piece.offset + piece.length].astype(np.float64)
        if len(y) < 2:
            continue
        emphasised = y[1:] - coefficient * y[:-1]
        entry = sums.setdefault(setting_key(piece.knobs), [0.0, 0.0, 0.0, 0.0])
        entry[0] += float(np.dot(emphasised, emphasised))
        entry[1] += len(emphasised)
        entry[2] += float(np.dot(y, y))
        entry[3] += len(y)
    return {key: (e[0] / e[1], e[2] / e[3]) for key, e in sums.items()}


def balanced_energies(
    energies: dict[str, tuple[float, float]], balance: float
) -> dict[str, tuple[float, float]]:
    """The energy each setting's error is divided by, for a loss balanced by ``balance``.

    A setting of energy ``e`` is divided by ``e ** balance * m ** (1 - balance)``, where ``m``
    is the mean energy over the settings (each column separately). With ``balance`` 1 every
    setting weighs alike whatever its level; towards 0 a setting weighs in proportion to its
    energy, as in an ESR pooled over the batch; in between, a quiet setting counts more than its
    energy alone would give it, without the loud ones counting for little.
    """
    mean = np.mean(np.asarray(list(energies.values()), dtype=np.float64), axis=0)
    return {
        key: tuple(float(v) for v in np.power(value, balance) * np.power(mean, 1.0 - balance))
        for key, value in energies.items()
    }


class BatchMaker:
    """Gathers segments of a split into ``(batch, time, channels)`` tensors.

    The split's audio is held once as a tensor of frames ``[audio, knobs..., target]``; a batch
    is one indexed gather into it, with no per-segment Python copies. With ``balance`` above 0
    each batch also carries, per segment, the energy its error is divided by
    (:func:`balanced_energies`), by which the loss weighs the settings more evenly.
    """

    def __init__(self, split: SplitData, segment_samples: int, balance: float = 0.0) -> None:
        columns = [split.input, split.target[:, None]]
        balance = float(balance)
        if balance > 0:
            energies = balanced_energies(setting_energies(split), balance)
            per_frame = np.zeros((len(split.target), 2), dtype=np.float32)
            for piece in split.pieces:
                key = setting_key(piece.knobs)
                per_frame[piece.offset : piece.offset + piece.length] = energies.get(key, (1, 1))
            columns.append(per_frame)
        frames = np.concatenate(columns, axis=1)
        self.frames = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
        self.offsets = torch.arange(segment_samples, dtype=torch.int64)
        self.input_size = split.input.shape[1]
        self.balance = balance > 0

    def __call__(
        self, starts: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(x (batch, time, input_size), y (batch, time, 1), energy (batch, 2) or None)``
        for the given segment starts."""
        index = torch.from_numpy(np.asarray(starts, dtype=np.int64))[:, None] + self.offsets
        batch = self.frames[index]
        n = self.input_size
        energy = batch[:, 0, n + 1 : n + 3] if self.balance else None
        return batch[..., :n], batch[..., n : n + 1], energy


@dataclass(frozen=True)
class PieceBatch:
    """All pieces of a split as rows, zero-padded to the longest piece.

    ``x``: (pieces, longest, input_size); ``y``: (pieces, longest, 1); ``lengths``: samples of
    each row that are real; ``pieces``: the pieces in row order.
    """

    x: torch.Tensor
    y: torch.Tensor
    lengths: np.ndarray
    pieces: tuple[Piece, ...]


def piece_batch(split: SplitData, include_heldout: bool = True) -> PieceBatch:
    """Every piece of ``split`` as one row, so a whole split runs through a model in one pass.

    Each row starts from silence (zero state), as in training; the padding after a short row is
    never scored.
    """
    pieces = tuple(p for p in split.pieces if include_heldout or not p.heldout)
    if not pieces:
        raise DatasetError(f"The {split.name} split has no pieces to evaluate.")
    longest = max(p.length for p in pieces)
    channels = split.input.shape[1]
    x = np.zeros((len(pieces), longest, channels), dtype=np.float32)
    y = np.zeros((len(pieces), longest, 1), dtype=np.float32)
    for row, piece in enumerate(pieces):
        x[row, : piece.length] = split.input[piece.offset : piece.offset + piece.length]
        y[row, : piece.length, 0] = split.target[piece.offset : piece.offset + piece.length]
    lengths = np.array([p.length for p in pieces], dtype=np.int64)
    return PieceBatch(torch.from_numpy(x), torch.from_numpy(y), lengths, pieces)


def setting_key(knobs: dict[str, float]) -> str:
    """A stable label for a knob setting, ``"isf=2.5"`` or ``"gain=5, tone=0"``."""
    if not knobs:
        return "(no knobs)"
    return describe(dict(sorted(knobs.items())))
