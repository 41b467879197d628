"""Checkpoints: plain dictionaries of tensors, numbers and strings, read with ``weights_only``.

A checkpoint never holds pickled Python objects, so :func:`load_checkpoint` uses
``torch.load(weights_only=True)`` and a stranger's file cannot run code. Layout (version 1)::

    {"format": "ampcap-checkpoint", "version": 1,
     "model_config": ModelConfig.to_dict(), "state_dict": {name: tensor},
     "knobs": [{"name", "minimum", "maximum"}], "sample_rate_hz": int,
     "epoch": int, "step": int, "best_val_loss": float,
     "optimizer_state": dict | None, "train_config": {...},
     "dataset": {"path": str, "manifest_sha256": str},
     "progress": {...}}            # where training stood, for --resume

``runs/<name>/checkpoints/last.pt`` is written at every validation; ``runs/<name>/model.pt`` holds
the parameters with the best validation loss so far.
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ampcap.errors import ModelFormatError
from ampcap.files import atomic_write_bytes
from ampcap.train.model import ModelConfig, build_model

FORMAT = "ampcap-checkpoint"
VERSION = 1
REQUIRED_KEYS = (
    "model_config",
    "state_dict",
    "knobs",
    "sample_rate_hz",
    "epoch",
    "step",
    "best_val_loss",
)


def _cpu(value: Any) -> Any:
    """Tensors moved to the CPU and detached, inside nested dicts/lists (optimizer state)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu(v) for v in value)
    return value


def make_checkpoint(
    model: nn.Module,
    config: ModelConfig,
    *,
    knobs: list[dict[str, Any]],
    sample_rate_hz: int,
    epoch: int = 0,
    step: int = 0,
    best_val_loss: float = math.inf,
    optimizer_state: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    dataset: dict[str, str] | None = None,
    progress: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dictionary for ``model`` (every tensor copied to the CPU).

    Parameters
    ----------
    knobs : list of dict
        ``{"name", "minimum", "maximum"}`` per knob, in the model's input channel order.
    sample_rate_hz : int
        The rate the model was trained at.
    epoch, step : int
        Completed epochs and optimizer updates.
    best_val_loss : float
        Lowest validation loss so far (``inf`` before the first validation).
    optimizer_state : dict, optional
        ``optimizer.state_dict()``.
    train_config, dataset, progress : dict, optional
        The training settings, ``{"path", "manifest_sha256"}`` of the dataset, and the loop's
        own bookkeeping for ``--resume``.
    """
    return {
        "format": FORMAT,
        "version": VERSION,
        "model_config": config.to_dict(),
        "state_dict": _cpu(model.state_dict()),
        "knobs": [
            {"name": str(k["name"]), "minimum": float(k["minimum"]), "maximum": float(k["maximum"])}
            for k in knobs
        ],
        "sample_rate_hz": int(sample_rate_hz),
        "epoch": int(epoch),
        "step": int(step),
        "best_val_loss": float(best_val_loss),
        "optimizer_state": _cpu(optimizer_state) if optimizer_state is not None else None,
        "train_config": dict(train_config or {}),
        "dataset": dict(dataset or {}),
        "progress": dict(progress or {}),
    }


def write_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write a checkpoint dictionary (from :func:`make_checkpoint`) atomically to ``path``.

    The file is replaced in one rename, so an interrupted run leaves the previous checkpoint.
    """
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def save_checkpoint(
    path: str | Path, model: nn.Module, config: ModelConfig, **fields: Any
) -> dict[str, Any]:
    """Write ``model`` as a checkpoint to ``path``; ``fields`` as in :func:`make_checkpoint`.

    Returns the dictionary written. ``knobs`` and ``sample_rate_hz`` are required.
    """
    checkpoint = make_checkpoint(model, config, **fields)
    write_checkpoint(path, checkpoint)
    return checkpoint


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint written by :func:`save_checkpoint` or :func:`write_checkpoint`.

    Raises
    ------
    ModelFormatError
        Missing file, not a torch file, a file that needs unpickling (refused: it could run
        code), another format or version, or missing keys.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path} does not exist; expected an ampcap checkpoint (.pt).")
    try:
        # is_zipfile itself raises on some damaged end-of-archive records (a "multi-disk" one).
        readable = zipfile.is_zipfile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        readable = False
    if not readable:
        raise ModelFormatError(
            f"{path} is not a readable checkpoint (not a file torch.save wrote); expected the "
            "model.pt or checkpoints/last.pt of an ampcap run."
        )
    # torch.load does not check the CRC-32 the zip container keeps of every entry, so a file
    # with flipped bytes in its tensors would load; the check reads the (small) file once.
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, RuntimeError) as exc:
        raise ModelFormatError(f"{path} is not a readable checkpoint ({exc}).") from exc
    except NotImplementedError as exc:  # a compression method torch never writes
        raise ModelFormatError(f"{path} was not written by torch.save ({exc}).") from exc
    if damaged is not None:
        raise ModelFormatError(
            f"{path} is damaged: its entry {damaged} fails the checksum (CRC-32) the file "
            "keeps of it, so its weights are not the ones saved. Copy it again, or use the "
            "run's other checkpoint (model.pt or checkpoints/last.pt)."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelFormatError(
            f"{path} holds Python objects that ampcap refuses to unpickle (they could run code); "
            "it was not written by ampcap."
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelFormatError(f"{path} is not a readable checkpoint ({exc}).") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise ModelFormatError(f"{path} is not an ampcap checkpoint (no format {FORMAT!r}).")
    if checkpoint.get("version") != VERSION:
        raise ModelFormatError(
            f"{path} is checkpoint version {checkpoint.get('version')}; this ampcap reads "
            f"version {VERSION}."
        )
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise ModelFormatError(f"{path} lacks {', '.join(missing)}; the file is damaged.")
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any]) -> nn.Module:
    """Build the model a checkpoint describes and load its parameters (CPU, eval mode)."""
    config = ModelConfig.from_dict(checkpoint["model_config"])
    model = build_model(config)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        raise ModelFormatError(
            f"The checkpoint's parameters do not fit its model configuration ({exc})."
        ) from exc
    model.eval()
    return model


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model ampcap trained: ``(model in eval mode on the CPU, checkpoint dict)``."""
    checkpoint = load_checkpoint(path)
    return model_from_checkpoint(checkpoint), checkpoint
