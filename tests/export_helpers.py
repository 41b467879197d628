"""Models, checkpoints, run folders and test audio for the export and render tests.

Models are built with ampcap's own ``build_model`` and given seeded random weights scaled up so
that the gates saturate and the non-linearities matter (a model that stays in its linear region
would hide a wrong activation or gate order).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ampcap.files import write_audio
from ampcap.schema.dataset import DatasetManifest, save_dataset
from ampcap.schema.session import Knob
from ampcap.train.checkpoint import save_checkpoint
from ampcap.train.model import ModelConfig, build_model

RATE_HZ = 8000
ISF = Knob("isf", 0.0, 10.0)
GAIN = Knob("gain", 1.0, 5.0)


def make_model(
    arch: str = "lstm",
    *,
    hidden: int = 8,
    knobs: int = 1,
    layers: int = 1,
    skip: bool = False,
    scale: float = 2.0,
    seed: int = 0,
) -> torch.nn.Module:
    """An ampcap model with seeded weights multiplied by ``scale`` (eval mode)."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(arch, 1 + knobs, hidden, layers, skip))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(scale)
    return model.eval()


def guitar_audio(frames: int = 3000, seed: int = 0) -> np.ndarray:
    """Plucked decaying tones plus a little noise, peak about 0.8 (float32)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / RATE_HZ
    out = np.zeros(frames)
    for onset in range(0, frames, frames // 4 or 1):
        tt = t[: frames - onset]
        freq = rng.uniform(80, 900)
        out[onset:] += rng.uniform(0.2, 0.5) * np.exp(-tt * 8) * np.sin(2 * np.pi * freq * tt)
    out += 0.01 * rng.standard_normal(frames)
    return (0.8 * out / np.max(np.abs(out))).astype(np.float32)


def torch_output(
    model: torch.nn.Module, audio: np.ndarray, knobs: list[float], silence: int = 0
) -> np.ndarray:
    """The model's own forward pass over the whole signal from a zero state, in float64 numpy.

    With ``silence`` the model first runs that many samples of silence (outputs dropped): a
    ``.nam`` file starts from the state after 48,000 of them, a player warms up on more.
    """
    audio = np.concatenate([np.zeros(silence, dtype=np.float32), audio])
    x = np.empty((1, audio.size, 1 + len(knobs)), dtype=np.float32)
    x[0, :, 0] = audio
    for j, value in enumerate(knobs):
        x[0, :, 1 + j] = value
    # One thread: at batch size 1 a second OpenMP thread only adds synchronisation, and on a
    # busy machine its spin-waits slow the step loop down by an order of magnitude.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            y, _ = model(torch.from_numpy(x))
    finally:
        torch.set_num_threads(threads)
    return y[0, silence:, 0].double().numpy()


def save_model(
    path: Path, model: torch.nn.Module, knobs: list[Knob], dataset: Path | None = None
) -> Path:
    """Write ``model`` as an ampcap checkpoint (``RATE_HZ``, the given knobs)."""
    save_checkpoint(
        path,
        model,
        model.config,
        knobs=[{"name": k.name, "minimum": k.minimum, "maximum": k.maximum} for k in knobs],
        sample_rate_hz=RATE_HZ,
        dataset={"path": str(dataset), "manifest_sha256": ""} if dataset else {},
    )
    return path


def make_dataset_manifest(folder: Path, knobs: list[Knob], settings, heldout=()) -> Path:
    """A dataset folder holding only a manifest with these knob settings (no audio)."""
    manifest = DatasetManifest(
        schema_version=1,
        ampcap_version="test",
        created_at="2026-01-01T00:00:00Z",
        sample_rate_hz=RATE_HZ,
        knobs=tuple(knobs),
        settings=tuple(settings),
        heldout=tuple(heldout),
        sessions=(),
        seed=0,
        block_seconds=1.0,
        guard_ms=0.0,
        ratios={"train": 0.7, "val": 0.15, "test": 0.15},
        blocks=(),
        pieces=(),
        splits={},
    )
    folder.mkdir(parents=True, exist_ok=True)
    save_dataset(folder, manifest)
    return folder


def make_run(
    folder: Path, model: torch.nn.Module, knobs: list[Knob], dataset: Path | None = None
) -> Path:
    """A run folder with ``model.pt`` (what export and render read)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_model(folder / "model.pt", model, knobs, dataset)
    return folder


def write_wav(path: Path, audio: np.ndarray, rate: int = RATE_HZ) -> Path:
    write_audio(path, audio, rate)
    return path
