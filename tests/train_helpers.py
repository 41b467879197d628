"""Synthetic datasets for the training tests: a tiny nonlinear filter with one knob.

The "device" is a one-pole low-pass whose pole moves with the knob, mixed with the dry signal
and soft-clipped: it has memory and a knob that matters, and runs in microseconds. The dataset
folder follows ``ampcap.schema.dataset`` exactly, so the trainer reads it as it reads a split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from ampcap.files import write_audio
from ampcap.schema.dataset import Block, DatasetManifest, Piece, SplitFiles, save_dataset
from ampcap.schema.session import Knob

KNOB = Knob("tone", 0.0, 10.0)


def toy_device(x: np.ndarray, tone: float) -> np.ndarray:
    """The toy device: ``tanh(3 (0.4 x + lowpass_tone(x))) / 2``; ``tone`` in [0, 10]."""
    pole = 0.6 + 0.035 * tone
    low = lfilter([1.0 - pole], [1.0, -pole], x)
    return (0.5 * np.tanh(3.0 * (0.4 * x + low))).astype(np.float32)


def plucks(rng: np.random.Generator, frames: int, sample_rate_hz: int) -> np.ndarray:
    """Decaying tones at random pitches and levels: a crude DI-like test signal."""
    out = np.zeros(frames)
    t = np.arange(frames) / sample_rate_hz
    onset = 0
    while onset < frames:
        length = int(rng.uniform(0.1, 0.4) * sample_rate_hz)
        freq = rng.uniform(80.0, 800.0)
        level = rng.uniform(0.05, 0.6)
        stop = min(frames, onset + length)
        tt = t[: stop - onset]
        out[onset:stop] += level * np.exp(-tt * rng.uniform(4, 12)) * np.sin(2 * np.pi * freq * tt)
        onset = stop
    return out.astype(np.float32)


def make_dataset(
    folder: Path,
    *,
    sample_rate_hz: int = 8000,
    settings: tuple[float, ...] = (0.0, 5.0, 10.0),
    heldout: tuple[float, ...] = (),
    block_seconds: float = 2.0,
    blocks: dict[str, int] | None = None,
    seed: int = 0,
) -> Path:
    """Write a dataset folder of the toy device and return its path.

    Each split has ``blocks[split]`` blocks of ``block_seconds`` of fresh plucks; every block is
    recorded at every setting (one piece each), as ``ampcap split`` lays them out. Settings in
    ``heldout`` are marked held out (their pieces appear in val and test only).
    """
    rng = np.random.default_rng(seed)
    blocks = blocks or {"train": 6, "val": 1, "test": 1}
    block_len = int(block_seconds * sample_rate_hz)
    all_blocks: list[Block] = []
    all_pieces: list[Piece] = []
    split_files: dict[str, SplitFiles] = {}
    start = 0
    for split in ("train", "val", "test"):
        inputs, targets = [], []
        offset = 0
        for _ in range(blocks[split]):
            block = Block(len(all_blocks), 0, "plucks", "guitar", split, start, block_len)
            all_blocks.append(block)
            start += block_len
            audio = plucks(rng, block_len, sample_rate_hz)
            for value in settings:
                is_heldout = value in heldout
                if split == "train" and is_heldout:
                    continue
                knob = np.full(block_len, KNOB.normalise(value), dtype=np.float32)
                inputs.append(np.stack([audio, knob], axis=1))
                targets.append(toy_device(audio, value))
                all_pieces.append(
                    Piece(split, block.id, {KNOB.name: value}, offset, block_len, is_heldout)
                )
                offset += block_len
        write_audio(folder / split / "input.wav", np.concatenate(inputs), sample_rate_hz)
        write_audio(folder / split / "target.wav", np.concatenate(targets), sample_rate_hz)
        split_files[split] = SplitFiles(f"{split}/input.wav", f"{split}/target.wav", offset)
    manifest = DatasetManifest(
        schema_version=1,
        ampcap_version="0.1.0",
        created_at="2026-01-01T00:00:00Z",
        sample_rate_hz=sample_rate_hz,
        knobs=(KNOB,),
        settings=tuple({KNOB.name: v} for v in settings),
        heldout=tuple({KNOB.name: v} for v in heldout),
        sessions=({"path": "synthetic", "sha256": "0" * 64},),
        seed=seed,
        block_seconds=block_seconds,
        guard_ms=0.0,
        ratios={"train": 0.75, "val": 0.125, "test": 0.125},
        blocks=tuple(all_blocks),
        pieces=tuple(all_pieces),
        splits=split_files,
    )
    save_dataset(folder, manifest)
    return folder


@pytest.fixture(autouse=True)
def one_thread():
    """Run torch on one intra-op thread, as training does.

    The recurrent layers' per-sample products are tiny; on a loaded machine a second OpenMP
    thread spin-waits and can make a test hundreds of times slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
