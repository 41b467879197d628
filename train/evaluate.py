"""Evaluation: run a model over whole pieces and score it, per knob setting and pooled.

Every piece starts from silence (zero state) and its first ``warmup_samples`` are not scored,
as in training: the device had been playing before the block began, the model had not. Test
ESR is the plain ESR (DAFx-19 Section 6); held-out settings (never trained on) are reported
apart from the trained ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ampcap.schema.dataset import Piece
from ampcap.train.data import SplitData, piece_batch, setting_key
from ampcap.train.loss import PRE_EMPHASIS, esr, loudness_difference_db, mr_stft_distance

# Samples per forward call when running long pieces: bounds the memory of the recurrent
# layer's gate buffers (pieces x chunk x 4 hidden floats) without changing the result.
CHUNK_SAMPLES = 32768


def run_model(model: nn.Module, x: torch.Tensor, device: str | torch.device = "cpu") -> np.ndarray:
    """Run ``model`` over ``x`` (batch, time, input_size) from zero state; returns (batch, time).

    The signal goes through in chunks of :data:`CHUNK_SAMPLES` with the state carried, which
    gives the same output as one pass.
    """
    was_training = model.training
    model.eval()
    outputs = []
    state = None
    with torch.no_grad():
        for start in range(0, x.shape[1], CHUNK_SAMPLES):
            chunk = x[:, start : start + CHUNK_SAMPLES].to(device)
            y, state = model(chunk, state)
            outputs.append(y[..., 0].cpu())
    model.train(was_training)
    return torch.cat(outputs, dim=1).numpy()


@dataclass(frozen=True)
class PieceOutput:
    """One piece's scored samples: ``target`` and ``output`` (float32, same length)."""

    piece: Piece
    target: np.ndarray
    output: np.ndarray


def predict_split(
    model: nn.Module,
    split: SplitData,
    warmup_samples: int,
    device: str | torch.device = "cpu",
    include_heldout: bool = True,
) -> list[PieceOutput]:
    """The model's output on every piece of ``split``, warm-up samples cut off."""
    batch = piece_batch(split, include_heldout=include_heldout)
    output = run_model(model, batch.x, device)
    target = batch.y[..., 0].numpy()
    results = []
    for row, piece in enumerate(batch.pieces):
        skip = min(warmup_samples, piece.length // 2)
        results.append(
            PieceOutput(piece, target[row, skip : piece.length], output[row, skip : piece.length])
        )
    return results


def validation_scores(outputs: list[PieceOutput], balance: float = 0.0) -> tuple[float, float]:
    """``(loss, plain ESR)`` over pieces, weighted as in training.

    The loss is the training loss (pre-emphasised ESR + DC, :func:`ampcap.train.loss.esr_dc_loss`)
    with the error and target energies summed over the pieces and the DC term averaged over
    pieces; the pre-emphasis filter never spans two pieces. With ``balance`` above 0 both are
    computed per knob setting and averaged with the weights the training loss gives each
    setting (its samples times its energy to the power ``1 - balance``), so that a quiet
    setting weighs as much in choosing the best model as it did in training: with ``balance``
    1 the plain mean of the settings' scores.
    """
    if balance > 0:
        by_setting: dict[str, list[PieceOutput]] = {}
        for item in outputs:
            by_setting.setdefault(setting_key(item.piece.knobs), []).append(item)
        scores, weights = [], []
        for items in by_setting.values():
            scores.append(validation_scores(items))
            samples = sum(len(item.target) for item in items)
            energy = sum(float(np.dot(item.target, item.target)) for item in items) / samples
            weights.append(samples * (energy + 1e-20) ** (1.0 - balance))
        w = np.asarray(weights) / np.sum(weights)
        return float(np.dot(w, [s[0] for s in scores])), float(np.dot(w, [s[1] for s in scores]))
    err_pre = tgt_pre = err = tgt = 0.0
    dc_terms = []
    energy = []
    for item in outputs:
        t = item.target.astype(np.float64)
        o = item.output.astype(np.float64)
        tp = t[1:] - PRE_EMPHASIS * t[:-1]
        op = o[1:] - PRE_EMPHASIS * o[:-1]
        err_pre += float(np.sum((tp - op) ** 2))
        tgt_pre += float(np.sum(tp**2))
        err += float(np.sum((t - o) ** 2))
        tgt += float(np.sum(t**2))
        dc_terms.append(float(np.mean(t - o)) ** 2)
        energy.append(float(np.mean(t**2)))
    tiny = 1e-10
    loss = err_pre / (tgt_pre + tiny) + float(np.mean(dc_terms)) / (float(np.mean(energy)) + tiny)
    return loss, err / (tgt + tiny)


@dataclass(frozen=True)
class SettingScore:
    """Test scores at one knob setting.

    Attributes
    ----------
    setting : str
        Label such as ``"isf=2.5"``.
    knobs : dict
        The dial values.
    heldout : bool
        True when this setting was never trained on.
    esr : float
        Plain ESR, a fraction (0.01 is 1 %).
    mr_stft : float
        Multi-resolution STFT distance (auraloss defaults).
    loudness_diff_db : float or None
        Model minus device integrated loudness, dB (LU); None when undefined.
    seconds : float
        Scored audio.
    """

    setting: str
    knobs: dict[str, float]
    heldout: bool
    esr: float
    mr_stft: float
    loudness_diff_db: float | None
    seconds: float


@dataclass(frozen=True)
class TestScores:
    """Test results: one row per setting, and the pooled trained and held-out ESRs."""

    settings: tuple[SettingScore, ...]
    esr: float
    esr_mean: float
    esr_worst: float
    heldout_esr: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_settings(outputs: list[PieceOutput], sample_rate_hz: int) -> TestScores:
    """Group piece outputs by knob setting and score each group and the whole."""
    groups: dict[str, list[PieceOutput]] = {}
    for item in outputs:
        groups.setdefault(setting_key(item.piece.knobs), []).append(item)
    rows = []
    for label, items in groups.items():
        target = np.concatenate([i.target for i in items])
        output = np.concatenate([i.output for i in items])
        rows.append(
            SettingScore(
                setting=label,
                knobs=dict(items[0].piece.knobs),
                heldout=bool(items[0].piece.heldout),
                esr=esr(target, output),
                mr_stft=mr_stft_distance(target, output),
                loudness_diff_db=loudness_difference_db(target, output, sample_rate_hz),
                seconds=target.size / sample_rate_hz,
            )
        )
    rows.sort(key=lambda r: tuple(sorted(r.knobs.items())))

    def pooled(items: list[PieceOutput]) -> float | None:
        if not items:
            return None
        return esr(
            np.concatenate([i.target for i in items]), np.concatenate([i.output for i in items])
        )

    trained = [i for i in outputs if not i.piece.heldout]
    held = [i for i in outputs if i.piece.heldout]
    trained_rows = [r.esr for r in rows if not r.heldout] or [float("nan")]
    return TestScores(
        settings=tuple(rows),
        esr=pooled(trained) if trained else float("nan"),
        esr_mean=float(np.mean(trained_rows)),
        esr_worst=float(np.max(trained_rows)),
        heldout_esr=pooled(held),
    )


def evaluate_split(
    model: nn.Module,
    split: SplitData,
    sample_rate_hz: int,
    warmup_samples: int,
    device: str | torch.device = "cpu",
) -> TestScores:
    """Test scores of ``model`` on ``split`` (normally "test"), every setting including held-out."""
    return score_settings(predict_split(model, split, warmup_samples, device), sample_rate_hz)
