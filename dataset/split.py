"""Plan a dataset split: time blocks of DI material, their split, guard gaps and pieces.

Pure functions over small dataclasses, no files. The rules, and why:

* Blocks are fixed-length time blocks cut inside one DI source (a block never spans two
  sources, so its audio is one instrument and one recording); a source's remainder shorter than
  a block is left unused.
* A block has one split for every knob setting, so test audio is unheard at every setting. DI
  material is identified by its SHA-256: the same DI file recorded in two sessions gets the same
  blocks and the same splits in both, so merging sessions cannot leak test audio into training.
* Each split keeps the mix of source kinds (guitar, bass, other): the number of blocks of each
  kind in each split is the kind's count times the split's ratio, rounded up or down, and each
  split's total is within one block of its ratio of all blocks (a controlled rounding of the
  kind x split table, found by exhaustive search over the few rounding choices).
* Which blocks of a kind go where is decided by a keyed hash of (seed, material, block index),
  not by a random generator, so the plan is the same on every platform and numpy version.
* Blocks of different splits closer than the guard (in program time, within one session) are
  trimmed apart: the device's memory (reverb, sag, tone-stack state) at the start of a test block
  then holds nothing of a training block's audio.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import product

from ampcap.errors import DatasetError
from ampcap.schema.dataset import SPLITS


@dataclass(frozen=True)
class SourceSpan:
    """A DI source where it sits in one session's program.

    ``start``/``length`` are in samples on that session's program axis; ``sha256`` identifies the
    DI material (the same file in two sessions has the same hash).
    """

    session: int
    name: str
    kind: str
    start: int
    length: int
    sha256: str

    @property
    def material(self) -> str:
        # A source without a hash is its own material: it can never be matched to another.
        return self.sha256 or f"session{self.session}:{self.name}"


@dataclass(frozen=True)
class PlannedBlock:
    """One block in one session, after guard trimming.

    ``nominal_start``/``nominal_length`` (samples, program axis) are the block as cut;
    ``trim_start``/``trim_stop`` are the samples the guards removed at each end.
    ``index`` counts blocks inside the source material from its start.
    """

    session: int
    source: str
    kind: str
    material: str
    index: int
    split: str
    nominal_start: int
    nominal_length: int
    trim_start: int = 0
    trim_stop: int = 0

    @property
    def start(self) -> int:
        return self.nominal_start + self.trim_start

    @property
    def length(self) -> int:
        return self.nominal_length - self.trim_start - self.trim_stop

    @property
    def stop(self) -> int:
        return self.start + self.length


@dataclass(frozen=True)
class SplitPlan:
    """All blocks of a dataset and how they were counted.

    ``blocks`` are ordered by (session, start). ``counts[kind][split]`` counts blocks of unique
    DI material (a material recorded in two sessions counts once). ``unused_samples`` is the
    unique material left over at the end of sources (shorter than one block).
    """

    block_samples: int
    guard_samples: int
    ratios: dict[str, float]
    blocks: tuple[PlannedBlock, ...]
    counts: dict[str, dict[str, int]]
    unused_samples: int


@dataclass(frozen=True)
class PlannedPiece:
    """One block at one knob setting, at ``offset`` (samples) in its split's files."""

    split: str
    block: int
    setting: int
    session: int
    start: int
    length: int
    offset: int
    heldout: bool


def split_ratios(val: float, test: float) -> dict[str, float]:
    """The train/val/test fractions of the DI material, validated.

    Raises
    ------
    DatasetError
        When a ratio is not a number in (0, 1) or val + test leaves nothing to train on.
    """
    for name, value in (("--val", val), ("--test", test)):
        if not math.isfinite(value) or not 0.0 < value < 1.0:
            raise DatasetError(
                f"{name} {value} is not a fraction between 0 and 1 (exclusive): every split "
                "needs some audio. The defaults are --val 0.15 --test 0.15."
            )
    if val + test >= 1.0:
        raise DatasetError(
            f"--val {val} and --test {test} add up to {val + test:g}, leaving nothing to train "
            "on. Keep their sum below 1 (the paper used about 0.17 and 0.13)."
        )
    # Rounded so the manifest reads 0.7, not 0.7000000000000001.
    return {"train": round(1.0 - val - test, 12), "val": val, "test": test}


def cut_blocks(length: int, block_samples: int) -> list[int]:
    """Start offsets (samples, from the source's start) of the whole blocks in a source."""
    return [i * block_samples for i in range(length // block_samples)]


def _row_options(count: int, ratios: Sequence[float]) -> list[tuple[int, ...]]:
    """Each way to round ``count * ratio`` up or down per split so the row still sums to count."""
    # Rounded first so that 20 x 0.15 = 3.0000000000000004 does not offer 4 as well.
    ideal = [round(count * r, 9) for r in ratios]
    choices = [sorted({math.floor(x), math.ceil(x)}) for x in ideal]
    return [row for row in product(*choices) if sum(row) == count]


def allocate_counts(
    kind_counts: dict[str, int],
    ratios: dict[str, float],
) -> dict[str, dict[str, int]] | None:
    """Blocks per kind per split: a controlled rounding of ``count x ratio``.

    Every entry is the ideal rounded up or down, each kind's row sums to its count, each split's
    total is the ideal rounded up or down, and every split gets at least one block. Among the
    roundings that satisfy this, the one closest to the ideal totals is chosen (ties: the first
    in a fixed order, preferring the closest mix of kinds within each split), so the result is
    deterministic.

    Parameters
    ----------
    kind_counts : dict of str to int
        Blocks of each kind of source.
    ratios : dict of str to float
        Fractions per split (keys :data:`SPLITS`), summing to 1.

    Returns
    -------
    dict of kind to dict of split to int, or None when no split can be given a block each.
    """
    kinds = sorted(kind_counts)
    r = [ratios[s] for s in SPLITS]
    total = sum(kind_counts.values())
    ideal = [round(total * x, 9) for x in r]
    low = [max(math.floor(x), 1) for x in ideal]
    high = [max(math.ceil(x), 1) for x in ideal]
    options = [_row_options(kind_counts[k], r) for k in kinds]
    best: tuple[tuple[float, float], tuple[tuple[int, ...], ...]] | None = None
    for rows in product(*options):
        cols = [sum(row[j] for row in rows) for j in range(len(SPLITS))]
        if any(not low[j] <= cols[j] <= high[j] for j in range(len(SPLITS))):
            continue
        # Closest split totals first; among equals, the closest mix of kinds in every split.
        score = (
            round(sum((c - x) ** 2 for c, x in zip(cols, ideal, strict=True)), 9),
            round(
                sum(
                    (c - kind_counts[k] * x) ** 2
                    for k, row in zip(kinds, rows, strict=True)
                    for c, x in zip(row, r, strict=True)
                ),
                9,
            ),
        )
        if best is None or score < best[0]:
            best = (score, rows)
    if best is None:
        return None
    return {k: dict(zip(SPLITS, row, strict=True)) for k, row in zip(kinds, best[1], strict=True)}


def minimum_blocks(ratios: dict[str, float]) -> int:
    """The fewest blocks that can give every split at least one (for error messages)."""
    n = len(SPLITS)
    while allocate_counts({"all": n}, ratios) is None:
        n += 1
    return n


def _order_key(seed: int, material: str, index: int) -> bytes:
    return hashlib.sha256(f"{seed}\x00{material}\x00{index}".encode()).digest()


def assign_splits(
    materials: dict[str, tuple[str, int]], ratios: dict[str, float], seed: int
) -> tuple[dict[tuple[str, int], str], dict[str, dict[str, int]]]:
    """Give every block of every DI material a split.

    Parameters
    ----------
    materials : dict of str to (kind, blocks)
        Each unique DI material (by hash) with its kind and its number of whole blocks.
    ratios : dict of str to float
        From :func:`split_ratios`.
    seed : int
        Same seed, same assignment.

    Returns
    -------
    assignment : dict of (material, block index) to split
    counts : dict of kind to dict of split to int

    Raises
    ------
    DatasetError
        When the blocks cannot fill every split (the caller words the numbers).
    """
    kind_counts: dict[str, int] = {}
    for kind, blocks in materials.values():
        kind_counts[kind] = kind_counts.get(kind, 0) + blocks
    kind_counts = {k: v for k, v in kind_counts.items() if v > 0}
    counts = allocate_counts(kind_counts, ratios) if kind_counts else None
    if counts is None:
        raise DatasetError("too few blocks to give every split one")
    assignment: dict[tuple[str, int], str] = {}
    for kind, per_split in counts.items():
        keys = sorted(
            ((m, i) for m, (k, n) in materials.items() if k == kind for i in range(n)),
            key=lambda key: _order_key(seed, *key),
        )
        position = 0
        for split in SPLITS:
            for key in keys[position : position + per_split[split]]:
                assignment[key] = split
            position += per_split[split]
    return assignment, counts


def apply_guards(blocks: Sequence[PlannedBlock], guard_samples: int) -> list[PlannedBlock]:
    """Trim blocks so that blocks of different splits are at least ``guard_samples`` apart.

    Distances are measured in program time within one session. The missing gap is taken half
    from each of the two neighbours, so neither split pays for the other. ``blocks`` must not
    overlap; the result keeps their order sorted by (session, nominal start).
    """
    ordered = sorted(blocks, key=lambda b: (b.session, b.nominal_start))
    trims = [[b.trim_start, b.trim_stop] for b in ordered]
    for i in range(1, len(ordered)):
        before, after = ordered[i - 1], ordered[i]
        if before.session != after.session or before.split == after.split:
            continue
        gap = after.nominal_start - (before.nominal_start + before.nominal_length)
        need = guard_samples - gap
        if need > 0:
            trims[i - 1][1] += need // 2
            trims[i][0] += need - need // 2
    return [
        replace(b, trim_start=t[0], trim_stop=t[1]) for b, t in zip(ordered, trims, strict=True)
    ]


def plan_blocks(
    spans: Sequence[SourceSpan],
    *,
    block_samples: int,
    guard_samples: int,
    ratios: dict[str, float],
    seed: int,
    sample_rate_hz: int,
) -> SplitPlan:
    """Cut the DI sources of all sessions into blocks, assign splits and trim guard gaps.

    Parameters
    ----------
    spans : sequence of SourceSpan
        Every DI source of every session, on its session's program axis.
    block_samples : int
        Length of a block in samples (> 0).
    guard_samples : int
        Minimum distance in samples between blocks of different splits; at most half a block,
        so a block trimmed at both ends keeps at least half its audio.
    ratios : dict of str to float
        From :func:`split_ratios`.
    seed : int
        Same seed, same plan.
    sample_rate_hz : int
        Only for the numbers in error messages.

    Raises
    ------
    DatasetError
        A guard longer than half a block, or DI material too short to give every split a block.
    """
    if block_samples < 1:
        raise DatasetError(
            f"A block of {block_samples} samples is too short; use a longer --block-seconds."
        )
    if guard_samples < 0 or 2 * guard_samples > block_samples:
        raise DatasetError(
            f"--guard-ms {1000 * guard_samples / sample_rate_hz:g} is more than half a block "
            f"({1000 * block_samples / sample_rate_hz / 2:g} ms at --block-seconds "
            f"{block_samples / sample_rate_hz:g}). Use a shorter guard or longer blocks."
        )
    materials: dict[str, tuple[str, int]] = {}
    lengths: dict[str, int] = {}
    for span in spans:
        if span.material not in materials:
            materials[span.material] = (span.kind, span.length // block_samples)
            lengths[span.material] = span.length
    try:
        assignment, counts = assign_splits(materials, ratios, seed)
    except DatasetError:
        raise _too_short(lengths, block_samples, ratios, sample_rate_hz) from None
    blocks = [
        PlannedBlock(
            session=span.session,
            source=span.name,
            kind=span.kind,
            material=span.material,
            index=i,
            split=assignment[(span.material, i)],
            nominal_start=span.start + offset,
            nominal_length=block_samples,
        )
        for span in spans
        for i, offset in enumerate(cut_blocks(span.length, block_samples))
    ]
    unused = sum(length % block_samples for length in lengths.values())
    return SplitPlan(
        block_samples=block_samples,
        guard_samples=guard_samples,
        ratios=ratios,
        blocks=tuple(apply_guards(blocks, guard_samples)),
        counts=counts,
        unused_samples=unused,
    )


def _too_short(
    lengths: dict[str, int], block_samples: int, ratios: dict[str, float], rate: int
) -> DatasetError:
    total_s = sum(lengths.values()) / rate
    blocks = sum(length // block_samples for length in lengths.values())
    need = minimum_blocks(ratios)
    # The longest block (in 0.1 s steps) that would cut enough whole blocks from these sources.
    step = max(1, rate // 10)
    candidate = (block_samples // step) * step
    while candidate >= step and sum(length // candidate for length in lengths.values()) < need:
        candidate -= step
    hint = (
        f"use --block-seconds {candidate / rate:g} or shorter, or record more DI"
        if candidate >= step
        else "record more DI material (ampcap record --di-seconds)"
    )
    ratio_text = " / ".join(f"{s} {ratios[s]:.2f}" for s in SPLITS)
    return DatasetError(
        f"The DI material is too short for the blocks requested: {total_s:.1f} s in "
        f"{len(lengths)} source(s) gives {blocks} whole block(s) of "
        f"{block_samples / rate:g} s, but {ratio_text} needs at least {need} so that no split "
        f"is left empty. To fix it, {hint}."
    )


def plan_pieces(
    blocks: Sequence[PlannedBlock],
    session_settings: Sequence[Sequence[int]],
    n_settings: int,
    heldout: set[int] | frozenset[int],
) -> tuple[PlannedPiece, ...]:
    """Lay out every (block, setting) pair in its split's files.

    Files are ordered setting by setting, blocks in (session, start) order inside a setting.
    A held-out setting contributes only its test blocks (flagged ``heldout``).

    Parameters
    ----------
    blocks : sequence of PlannedBlock
        The plan's blocks; ``block`` in a piece is the index into this sequence.
    session_settings : sequence of sequence of int
        For each session, the indices of the settings it recorded.
    n_settings : int
        Number of settings in all sessions together.
    heldout : set of int
        Indices of the settings kept out of train and val.
    """
    available = [set(s) for s in session_settings]
    pieces: list[PlannedPiece] = []
    for split in SPLITS:
        offset = 0
        for setting in range(n_settings):
            is_heldout = setting in heldout
            if is_heldout and split != "test":
                continue
            for index, block in enumerate(blocks):
                if block.split != split or setting not in available[block.session]:
                    continue
                pieces.append(
                    PlannedPiece(
                        split=split,
                        block=index,
                        setting=setting,
                        session=block.session,
                        start=block.start,
                        length=block.length,
                        offset=offset,
                        heldout=is_heldout,
                    )
                )
                offset += block.length
    return tuple(pieces)
