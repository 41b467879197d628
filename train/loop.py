"""The training loop: the DAFx-19 recipe (Wright, Damskägg & Välimäki, Section 4), made fast.

Per mini-batch of half-second segments: the state starts at zero, the first ``warmup_samples``
run without gradients (the state settles), then every ``tbptt_samples`` the loss is
back-propagated over those samples and Adam updates the parameters; the state is carried
(detached) to the next chunk of the same segments. Validation every other epoch picks the best
model (``model.pt``); every validation also writes ``checkpoints/last.pt`` for ``--resume``.

Where the speed comes from (see ``benchmarks/train.py``):

- glibc's allocator is told to keep freed memory (:func:`tune_allocator`). A training step
  frees and reallocates tens of megabytes of gate buffers; by default glibc returns them to the
  kernel each time and the next step page-faults them back in, which is half the CPU time.
- One intra-op thread by default. A second one gains 15-30 % on an idle two-core machine,
  but the recurrent layer's per-sample products are so small that when other programs share
  the cores its spin-waiting makes training several times slower (``--threads 2`` when the
  machine is yours alone).
- The warm-up runs under ``no_grad``: no graph, no saved activations for samples that are
  never back-propagated.
- Batches are one indexed gather from a tensor of the whole split, no per-segment copies.
- The learning rate starts at 1e-2 (twenty times the recipe's constant 5e-4), with the
  gradient norm clipped to 1, and follows a cosine down to 5 % of that over the run's horizon
  (its epochs, or the epochs that fit in ``--minutes``). The high early rate moves fast but
  makes the validation error jump; the decay settles it, and the validation picks the best.
  On the Guitarix Big Muff this reached 0.82 % pooled test ESR in 25 epochs, where the
  recipe's constant rate needs hundreds.
"""

from __future__ import annotations

import ctypes
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ampcap import __version__
from ampcap.errors import TrainingError
from ampcap.files import atomic_write_json
from ampcap.schema.run import (
    BEST_MODEL,
    LAST_CHECKPOINT,
    METRICS_NAME,
    RunManifest,
    load_metrics,
    load_run,
    save_run,
)
from ampcap.train.checkpoint import (
    load_checkpoint,
    make_checkpoint,
    model_from_checkpoint,
    write_checkpoint,
)
from ampcap.train.config import ModelConfig, TrainConfig
from ampcap.train.data import BatchMaker, Dataset, epoch_batches
from ampcap.train.evaluate import TestScores, evaluate_split, predict_split, validation_scores
from ampcap.train.loss import esr_dc_loss
from ampcap.train.model import build_model, detach_state

__all__ = [
    "ProgressEvent",
    "TrainConfig",
    "TrainOutcome",
    "TrainingState",
    "learning_rate_at",
    "resolve_device",
    "train_run",
    "train_segments",
    "tune_allocator",
]


@dataclass(frozen=True)
class ProgressEvent:
    """What the loop tells its caller after each mini-batch and each validation.

    ``kind`` is "batch", "validation" or "recovery" (the loss became NaN or infinite and the
    run went back to its last checkpoint; ``note`` says what happened); ``epoch`` counts from
    1; ``remaining_s`` is the estimated training time left (None until it can be estimated).
    """

    kind: str
    epoch: int
    epochs: int
    batch: int
    batches: int
    train_loss: float
    val_esr: float | None
    best_val_esr: float | None
    learning_rate: float
    elapsed_s: float
    remaining_s: float | None
    note: str | None = None


@dataclass(frozen=True)
class TrainOutcome:
    """How training ended and what it measured.

    Attributes
    ----------
    status : str
        "finished" (ran all epochs) or "stopped" (time budget or patience).
    message : str
    epochs, steps : int
        Epochs completed (including any before a resume) and optimizer updates.
    best_epoch : int
    best_val_loss, best_val_esr : float
    train_seconds : float
        Time spent in training batches in this invocation.
    samples_per_second : float
        Training samples (warm-up included) per second of ``train_seconds``.
    test : TestScores
        Scores of the best model on the test split.
    """

    status: str
    message: str
    epochs: int
    steps: int
    best_epoch: int
    best_val_loss: float
    best_val_esr: float
    train_seconds: float
    samples_per_second: float
    test: TestScores
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def tune_allocator() -> bool:
    """Stop glibc's malloc from returning freed memory to the kernel after every step.

    Equivalent to ``MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824
    MALLOC_TOP_PAD_=268435456`` in the environment, applied from inside the process with
    ``mallopt(3)``. Buffers below 1 GiB then come from the heap and stay mapped, so a training
    step does not page-fault its gate buffers in again; it doubles throughput on Linux.
    Returns False where there is no glibc (the call is skipped).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1
    ok &= libc.mallopt(m_trim_threshold, 1 << 30) == 1
    ok &= libc.mallopt(m_top_pad, 256 << 20) == 1
    return bool(ok)


def resolve_device(name: str) -> str:
    """``"auto"``: CUDA when present, else CPU; ``"cuda"`` without a GPU is refused."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError(
            "The device 'cuda' was asked for, but torch sees no CUDA GPU (this torch build or "
            "driver has none). Train on the CPU (device 'cpu')."
        )
    if name not in ("cpu", "cuda"):
        raise TrainingError(f"Unknown device {name!r}; use cpu, cuda or auto.")
    return name


def learning_rate_at(config: TrainConfig, progress_epochs: float, horizon_epochs: float) -> float:
    """The learning rate after ``progress_epochs`` (fractional) of a run of ``horizon_epochs``."""
    if config.schedule == "constant" or horizon_epochs <= 0:
        return config.learning_rate
    fraction = min(1.0, progress_epochs / horizon_epochs)
    floor = config.learning_rate * config.final_lr_fraction
    return floor + 0.5 * (config.learning_rate - floor) * (1.0 + math.cos(math.pi * fraction))


def train_segments(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    energy: torch.Tensor | None = None,
) -> tuple[float, int]:
    """One mini-batch of the recipe: warm-up, then an update every ``tbptt_samples``.

    Parameters
    ----------
    x : torch.Tensor, (batch, time, input_size)
    y : torch.Tensor, (batch, time, 1)
    energy : torch.Tensor, (batch, 2), optional
        Each segment's setting energies, for a setting-weighted loss (see
        :func:`ampcap.train.loss.esr_dc_loss`).

    Returns
    -------
    mean_loss : float
        Mean training loss over the updates.
    updates : int

    Raises
    ------
    TrainingError
        The loss became NaN or infinite; raised before the optimizer step, so the parameters
        are still the last finite ones.
    """
    warmup = min(config.warmup_samples, x.shape[1] - 2)
    state = None
    if warmup > 0:
        with torch.no_grad():
            _, state = model(x[:, :warmup], None)
    losses = []
    for start in range(warmup, x.shape[1], config.tbptt_samples):
        stop = min(start + config.tbptt_samples, x.shape[1])
        if stop - start < 2:
            break
        output, state = model(x[:, start:stop], state)
        loss = esr_dc_loss(output, y[:, start:stop], energy=energy)
        if not torch.isfinite(loss):
            raise _Diverged(float(loss.detach()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        state = detach_state(state)
        losses.append(loss.detach())
    return float(torch.stack(losses).mean()), len(losses)


class _Diverged(Exception):
    def __init__(self, value: float) -> None:
        super().__init__(value)
        self.value = value


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


class _Run:
    """The run folder's files: manifest, checkpoints and metrics."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.last = folder / LAST_CHECKPOINT
        self.best = folder / BEST_MODEL
        self.metrics = folder / METRICS_NAME

    def write_metrics(self, history: dict[str, Any], test: TestScores | None) -> None:
        atomic_write_json(
            self.metrics,
            {"history": history, "test": test.to_dict() if test is not None else None},
        )


def _new_history() -> dict[str, list[dict[str, Any]]]:
    return {"epochs": [], "validations": [], "recoveries": []}


@dataclass
class TrainingState:
    """Where a run stands: the model, its optimizer and everything the loop counts.

    The fields from ``epoch`` to ``elapsed_s`` are what a checkpoint keeps besides the weights
    (its ``progress``), so a resumed run carries on from its last validation.

    Attributes
    ----------
    model : torch.nn.Module
    optimizer : torch.optim.Optimizer
    epoch, step : int
        Completed epochs and optimizer updates (including any before a resume).
    best_val_loss, best_val_esr : float
        Of the best validation so far (``inf`` before the first).
    best_epoch : int
        The epoch of that validation.
    elapsed_s : float
        Seconds spent in training batches, over every invocation of the run.
    history : dict
        ``{"epochs": [...], "validations": [...], "recoveries": [...]}``, as ``metrics.json``
        keeps it.
    recoveries : int
        Recoveries from a NaN or infinite loss so far, over every invocation of the run; each
        halved the learning rate (:attr:`lr_scale`).
    train_seconds : float
        Seconds spent in training batches in this invocation.
    samples : int
        Training samples (warm-up included) seen in this invocation.
    started, deadline : float
        ``time.perf_counter()`` when this invocation's epochs began, and when its time budget
        ends (``inf`` without one).
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    epoch: int = 0
    step: int = 0
    best_val_loss: float = math.inf
    best_val_esr: float = math.inf
    best_epoch: int = 0
    elapsed_s: float = 0.0
    history: dict[str, list[dict[str, Any]]] = field(default_factory=_new_history)
    recoveries: int = 0
    train_seconds: float = 0.0
    samples: int = 0
    started: float = 0.0
    deadline: float = math.inf

    def start_clock(self, minutes: float | None) -> None:
        self.started = time.perf_counter()
        self.deadline = self.started + 60.0 * minutes if minutes else math.inf

    @property
    def lr_scale(self) -> float:
        """What the schedule's learning rate is multiplied by: halved at every recovery."""
        return 0.5**self.recoveries

    @property
    def learning_rate(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def progress(self) -> dict[str, Any]:
        """The checkpoint's ``progress``: what resuming needs besides weights and optimizer."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "best_val_loss": self.best_val_loss,
            "best_val_esr": self.best_val_esr,
            "best_epoch": self.best_epoch,
            "elapsed_s": self.elapsed_s,
            "recoveries": self.recoveries,
        }

    def summary(self, test: TestScores | None = None) -> dict[str, Any]:
        """The ``summary`` of ``run.json``; with ``test``, the run's final one."""
        summary: dict[str, Any] = {
            "epochs": self.epoch,
            "steps": self.step,
            "best_epoch": self.best_epoch,
            "best_val_loss": _finite_or_none(self.best_val_loss),
            "best_val_esr": _finite_or_none(self.best_val_esr),
            "train_seconds_total": self.elapsed_s,
            "validations": len(self.history["validations"]),
            "recoveries": self.recoveries,
        }
        if test is None:
            return summary
        if self.train_seconds:
            summary["samples_per_second"] = self.samples / self.train_seconds
        summary.update(
            test_esr=_finite_or_none(test.esr),
            test_esr_mean=_finite_or_none(test.esr_mean),
            test_esr_worst=_finite_or_none(test.esr_worst),
            heldout_esr=_finite_or_none(test.heldout_esr),
        )
        return summary


@dataclass(frozen=True)
class _Setup:
    """What stays fixed while a run trains: where, on what, how, and whom to tell."""

    run: _Run
    dataset: Dataset
    model_config: ModelConfig
    config: TrainConfig
    device: str
    manifest: RunManifest
    on_progress: Callable[[ProgressEvent], None] | None

    @property
    def segment_samples(self) -> int:
        return int(round(self.config.segment_seconds * self.dataset.sample_rate_hz))


class _Epoch(NamedTuple):
    losses: list[float]
    seconds: float
    out_of_time: bool


def train_run(
    dataset: Dataset,
    run_dir: str | Path,
    model_config: ModelConfig,
    config: TrainConfig,
    *,
    resume: bool = False,
    on_progress: Callable[[ProgressEvent], None] | None = None,
) -> TrainOutcome:
    """Train ``model_config`` on ``dataset`` into ``run_dir``, then score the best model on test.

    This writes the run's model, checkpoints, metrics and ``run.json``; exports and the report
    are :func:`ampcap.training.train_model`'s.

    Parameters
    ----------
    dataset : Dataset
        From :func:`ampcap.train.data.load_training_data`.
    run_dir : path-like
        The run folder; created when new.
    model_config, config : ModelConfig, TrainConfig
        With ``resume``, they must match the run's architecture (model) and the dataset must be
        the one the run was trained on; the training settings given here replace the saved
        ones (a longer ``epochs``, a new ``minutes`` budget...).
    resume : bool
        Continue from ``checkpoints/last.pt``.
    on_progress : callable, optional
        Called with a :class:`ProgressEvent` after every mini-batch and validation.

    Raises
    ------
    TrainingError
        Refused resume (other architecture or dataset, nothing to resume), or a loss that
        became NaN/Inf (the run is marked failed; the last good checkpoint stays).
    """
    run = _Run(Path(run_dir))
    device = _use_device(config)
    if resume:
        state = _resume(run, dataset, model_config, device, config)
        manifest = load_run(run.folder).updated(
            train_config=config.to_dict(), status="running", message=None, updated_at=_now()
        )
    else:
        state = _fresh_state(model_config, config, device)
        manifest = _new_manifest(dataset, model_config, config)
    run.folder.mkdir(parents=True, exist_ok=True)
    save_run(run.folder, manifest)
    setup = _Setup(run, dataset, model_config, config, device, manifest, on_progress)
    # From here an interrupt marks the run stopped and says what it left.
    try:
        status, message = _train_epochs(setup, state)
    except _Diverged as exc:
        raise _diverged(setup, state, exc.value) from None
    except KeyboardInterrupt:
        _save_stopped(setup, state, _interrupted(run))
        raise
    test = _test_best(setup, state)
    run.write_metrics(state.history, test)
    save_run(
        run.folder,
        manifest.updated(
            status=status, message=message, updated_at=_now(), summary=state.summary(test)
        ),
    )
    return TrainOutcome(
        status=status,
        message=message,
        epochs=state.epoch,
        steps=state.step,
        best_epoch=state.best_epoch,
        best_val_loss=state.best_val_loss,
        best_val_esr=state.best_val_esr,
        train_seconds=state.train_seconds,
        samples_per_second=state.samples / state.train_seconds if state.train_seconds else 0.0,
        test=test,
        history=state.history,
    )


def _train_epochs(setup: _Setup, state: TrainingState) -> tuple[str, str]:
    """Epochs until the last one, the time budget or the patience; ``(status, message)``."""
    config = setup.config
    batches_of = BatchMaker(
        setup.dataset.splits["train"], setup.segment_samples, balance=config.setting_balance
    )
    state.start_clock(config.minutes)
    horizon = float(config.epochs)
    train_loss = math.nan
    validated_at = state.epoch if state.history["validations"] else -1
    state.model.train()
    while state.epoch < config.epochs:
        try:
            epoch = _train_epoch(setup, state, batches_of, horizon)
        except _Diverged as exc:
            _recover(setup, state, exc.value)
            continue
        train_loss = float(np.mean(epoch.losses))
        if epoch.out_of_time:
            _validate(setup, state, train_loss)
            return "stopped", (
                f"Stopped at the time budget ({config.minutes:g} min) in epoch {state.epoch + 1}."
            )
        state.epoch += 1
        state.history["epochs"].append(
            {
                "epoch": state.epoch,
                "train_loss": train_loss,
                "seconds": epoch.seconds,
                "learning_rate": state.learning_rate,
            }
        )
        if config.minutes and config.schedule == "cosine":
            # The horizon is the number of epochs that fit in the budget, re-estimated from the
            # epochs timed so far; capped by the epochs asked for.
            left = state.deadline - time.perf_counter()
            horizon = min(float(config.epochs), state.epoch + max(0.0, left) / epoch.seconds)
        if state.epoch % config.validate_every == 0 or state.epoch == config.epochs:
            _validate(setup, state, train_loss)
            validated_at = state.epoch
            if state.epoch - state.best_epoch >= config.patience_epochs:
                return "stopped", (
                    f"Stopped early at epoch {state.epoch}: the validation loss has not improved "
                    f"for {config.patience_epochs} epochs (best at epoch {state.best_epoch})."
                )
    if validated_at != state.epoch and state.history["epochs"]:
        _validate(setup, state, train_loss)
    return "finished", f"Trained {config.epochs} epochs."


def _train_epoch(
    setup: _Setup, state: TrainingState, batches_of: BatchMaker, horizon: float
) -> _Epoch:
    """One pass over the training split in shuffled mini-batches, or as much of one as the
    time budget leaves; the learning rate follows the schedule over ``horizon`` epochs."""
    config, device = setup.config, setup.device
    batches = epoch_batches(
        setup.dataset.splits["train"],
        setup.segment_samples,
        config.batch_size,
        config.seed,
        state.epoch,
    )
    losses: list[float] = []
    started = time.perf_counter()
    for index, starts in enumerate(batches):
        learning_rate = state.lr_scale * learning_rate_at(
            config, state.epoch + index / len(batches), horizon
        )
        for group in state.optimizer.param_groups:
            group["lr"] = learning_rate
        x, y, energy = batches_of(starts)
        t0 = time.perf_counter()
        loss, updates = train_segments(
            state.model,
            state.optimizer,
            x.to(device),
            y.to(device),
            config,
            None if energy is None else energy.to(device),
        )
        dt = time.perf_counter() - t0
        state.train_seconds += dt
        state.elapsed_s += dt
        state.samples += x.shape[0] * x.shape[1]
        state.step += updates
        losses.append(loss)
        now = time.perf_counter()
        per_epoch = (now - started) * len(batches) / (index + 1)
        remaining = min(
            state.deadline - now, per_epoch * (config.epochs - state.epoch) - (now - started)
        )
        validations = state.history["validations"]
        _tell(
            setup,
            state,
            "batch",
            epoch=state.epoch + 1,
            batch=index + 1,
            batches=len(batches),
            train_loss=loss,
            val_esr=_finite_or_none(validations[-1]["val_esr"]) if validations else None,
            best_val_esr=_finite_or_none(state.best_val_esr),
            learning_rate=learning_rate,
            now=now,
            remaining_s=max(0.0, remaining),
        )
        if now >= state.deadline:
            return _Epoch(losses, time.perf_counter() - started, out_of_time=True)
    return _Epoch(losses, time.perf_counter() - started, out_of_time=False)


def _validate(setup: _Setup, state: TrainingState, train_loss: float) -> None:
    """Score the model on the validation split, keep it when it is the best so far, and save
    where the run stands (checkpoints, metrics, ``run.json``)."""
    outputs = predict_split(
        state.model,
        setup.dataset.splits["val"],
        setup.config.warmup_samples,
        setup.device,
        include_heldout=False,
    )
    val_loss, val_esr = validation_scores(outputs, balance=setup.config.setting_balance)
    improved = val_loss < state.best_val_loss
    if improved:
        state.best_val_loss, state.best_val_esr, state.best_epoch = val_loss, val_esr, state.epoch
    state.history["validations"].append(
        {
            "epoch": state.epoch,
            "step": state.step,
            "elapsed_s": state.elapsed_s,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_esr": val_esr,
            "learning_rate": state.learning_rate,
        }
    )
    _save_checkpoints(setup, state, best=improved)
    setup.run.write_metrics(state.history, None)
    save_run(setup.run.folder, setup.manifest.updated(updated_at=_now(), summary=state.summary()))
    _tell(
        setup,
        state,
        "validation",
        epoch=state.epoch,
        train_loss=train_loss,
        val_esr=val_esr,
        best_val_esr=state.best_val_esr,
        learning_rate=state.learning_rate,
    )


def _tell(
    setup: _Setup,
    state: TrainingState,
    kind: str,
    *,
    epoch: int,
    train_loss: float,
    val_esr: float | None,
    best_val_esr: float | None,
    learning_rate: float,
    batch: int = 0,
    batches: int = 0,
    now: float | None = None,
    remaining_s: float | None = None,
    note: str | None = None,
) -> None:
    """Hand the caller a :class:`ProgressEvent`, when it asked for them."""
    if setup.on_progress is None:
        return
    now = time.perf_counter() if now is None else now
    event = ProgressEvent(
        kind=kind,
        epoch=epoch,
        epochs=setup.config.epochs,
        batch=batch,
        batches=batches,
        train_loss=train_loss,
        val_esr=val_esr,
        best_val_esr=best_val_esr,
        learning_rate=learning_rate,
        elapsed_s=now - state.started,
        remaining_s=remaining_s,
        note=note,
    )
    setup.on_progress(event)


def _use_device(config: TrainConfig) -> str:
    """The device to train on, with the CPU set up for speed (see the module's notes)."""
    device = resolve_device(config.device)
    if device == "cpu":
        torch.set_num_threads(config.threads)
        tune_allocator()
    return device


def _fresh_state(model_config: ModelConfig, config: TrainConfig, device: str) -> TrainingState:
    torch.manual_seed(config.seed)
    model = build_model(model_config).to(device)
    return TrainingState(model, torch.optim.Adam(model.parameters(), lr=config.learning_rate))


def _new_manifest(dataset: Dataset, model_config: ModelConfig, config: TrainConfig) -> RunManifest:
    return RunManifest(
        schema_version=1,
        ampcap_version=__version__,
        created_at=_now(),
        updated_at=_now(),
        model_config=model_config.to_dict(),
        train_config=config.to_dict(),
        dataset_path=str(dataset.folder),
        dataset_manifest_sha256=dataset.manifest_sha256,
        sample_rate_hz=dataset.sample_rate_hz,
        knobs=tuple(dataset.knob_list()),
    )


def _save_checkpoints(setup: _Setup, state: TrainingState, best: bool) -> None:
    """``checkpoints/last.pt`` at every validation; ``model.pt`` too when it is the best."""
    checkpoint = make_checkpoint(
        state.model,
        setup.model_config,
        knobs=setup.dataset.knob_list(),
        sample_rate_hz=setup.dataset.sample_rate_hz,
        epoch=state.epoch,
        step=state.step,
        best_val_loss=state.best_val_loss,
        optimizer_state=state.optimizer.state_dict(),
        train_config=setup.config.to_dict(),
        dataset={
            "path": str(setup.dataset.folder),
            "manifest_sha256": setup.dataset.manifest_sha256,
        },
        progress=state.progress(),
    )
    write_checkpoint(setup.run.last, checkpoint)
    if best:
        write_checkpoint(setup.run.best, checkpoint)


def _resume(
    run: _Run, dataset: Dataset, wanted: ModelConfig, device: str, config: TrainConfig
) -> TrainingState:
    """The state saved in ``checkpoints/last.pt``, once it is known to be this run's."""
    checkpoint = _resumable_checkpoint(run, dataset, wanted)
    model = model_from_checkpoint(checkpoint).to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    if checkpoint.get("optimizer_state"):
        optimizer.load_state_dict(checkpoint["optimizer_state"])
    metrics = load_metrics(run.folder) if run.metrics.exists() else {}
    history = metrics.get("history") or _new_history()
    epoch = int(checkpoint["epoch"])
    history = _history_until(history, epoch)
    progress = dict(checkpoint.get("progress") or {})
    return TrainingState(
        model,
        optimizer,
        epoch=epoch,
        step=int(checkpoint["step"]),
        best_val_loss=float(checkpoint["best_val_loss"]),
        best_val_esr=float(progress.get("best_val_esr", math.inf)),
        best_epoch=int(progress.get("best_epoch", epoch)),
        elapsed_s=float(progress.get("elapsed_s", 0.0)),
        history=history,
        recoveries=int(progress.get("recoveries", 0)),
    )


def _history_until(history: dict[str, list[dict[str, Any]]], epoch: int) -> dict[str, Any]:
    """The history up to a checkpoint's ``epoch``: epochs trained after it are trained again.
    Recoveries are all kept: they say what happened, and each halved the learning rate."""
    return {
        "epochs": [e for e in history["epochs"] if e["epoch"] <= epoch],
        "validations": [v for v in history["validations"] if v["epoch"] <= epoch],
        "recoveries": list(history.get("recoveries", [])),
    }


def _resumable_checkpoint(run: _Run, dataset: Dataset, wanted: ModelConfig) -> dict[str, Any]:
    """The run's last checkpoint; refused when missing, of another model or another dataset."""
    if not run.last.exists():
        raise TrainingError(
            f"Nothing to resume in {run.folder}: {run.last} does not exist (the run stopped "
            f"before its first validation). Start it over with `ampcap train {dataset.folder} "
            f"--out {run.folder}` (without --resume)."
        )
    checkpoint = load_checkpoint(run.last)
    saved = ModelConfig.from_dict(checkpoint["model_config"])
    differences = [
        f"{f.name} {getattr(saved, f.name)!r} (asked: {getattr(wanted, f.name)!r})"
        for f in fields(ModelConfig)
        if getattr(saved, f.name) != getattr(wanted, f.name)
    ]
    if differences:
        raise TrainingError(
            f"{run.folder} holds a run of another architecture: {'; '.join(differences)}. "
            "Resume with the run's own settings (leave them out to reuse them), or train into "
            "another --out folder."
        )
    saved_hash = checkpoint.get("dataset", {}).get("manifest_sha256")
    if saved_hash != dataset.manifest_sha256:
        raise TrainingError(
            f"{run.folder} was trained on another dataset ({checkpoint['dataset'].get('path')}, "
            f"manifest {str(saved_hash)[:12]}) than {dataset.folder} (manifest "
            f"{dataset.manifest_sha256[:12]}). Resume with the same dataset, or train into "
            "another --out folder."
        )
    return checkpoint


def _test_best(setup: _Setup, state: TrainingState) -> TestScores:
    """Scores of the best model (``model.pt``) on the test split."""
    run, config = setup.run, setup.config
    if not run.best.exists():
        raise TrainingError(
            f"No validation was run (the time budget of {config.minutes} min ended before the "
            "first mini-batch finished). Give it more minutes."
        )
    try:
        best_model = model_from_checkpoint(load_checkpoint(run.best)).to(setup.device)
        return evaluate_split(
            best_model,
            setup.dataset.splits["test"],
            setup.dataset.sample_rate_hz,
            config.warmup_samples,
            setup.device,
        )
    except KeyboardInterrupt:
        text = f"Interrupted while testing the best model; `--resume` continues from {run.last}."
        _save_stopped(setup, state, text)
        raise


def _recover(setup: _Setup, state: TrainingState, value: float) -> None:
    """Go back to the last checkpoint after a NaN or infinite loss, at half the learning rate.

    A recurrent model at a high learning rate can take one step too far: the loss jumps a
    hundredfold, and the next update makes it NaN (the Guitarix studio preamp at 1e-2 did, in
    epoch 52 of a 60-minute run). The weights are damaged before the loss is NaN, so the run
    returns to its last validation's checkpoint, weights and optimizer (before the first one,
    to its initial weights), and goes on with every later learning rate halved. After
    ``max_recoveries`` of these, the next stops the run (:func:`_diverged`).
    """
    run, config = setup.run, setup.config
    if state.recoveries >= config.max_recoveries:
        raise _Diverged(value)
    failed_epoch = state.epoch + 1
    if run.last.exists():
        checkpoint = load_checkpoint(run.last)
        state.model.load_state_dict(checkpoint["state_dict"])
        if checkpoint.get("optimizer_state"):
            state.optimizer.load_state_dict(checkpoint["optimizer_state"])
        state.epoch, state.step = int(checkpoint["epoch"]), int(checkpoint["step"])
    else:
        # Before the first validation there is no checkpoint: start from the same initial
        # weights (the seed's) with a fresh optimizer.
        fresh = _fresh_state(setup.model_config, config, setup.device)
        state.model.load_state_dict(fresh.model.state_dict())
        state.optimizer.load_state_dict(fresh.optimizer.state_dict())
        state.epoch, state.step = 0, 0
    state.history = _history_until(state.history, state.epoch)
    state.recoveries += 1
    note = (
        f"The training loss became {value} in epoch {failed_epoch}: went back to "
        + (f"the checkpoint of epoch {state.epoch}" if state.epoch else "the initial weights")
        + f" and halved the learning rate (recovery {state.recoveries} of at most "
        f"{config.max_recoveries})."
    )
    state.history["recoveries"].append(
        {
            "epoch": failed_epoch,
            "resumed_from_epoch": state.epoch,
            "loss": str(value),
            "lr_scale": state.lr_scale,
            "elapsed_s": state.elapsed_s,
        }
    )
    state.model.train()
    _tell(
        setup,
        state,
        "recovery",
        epoch=failed_epoch,
        train_loss=math.nan,
        val_esr=None,
        best_val_esr=_finite_or_none(state.best_val_esr),
        learning_rate=state.learning_rate * 0.5,
        note=note,
    )


def _diverged(setup: _Setup, state: TrainingState, value: float) -> TrainingError:
    """Mark the run failed and say where its last good checkpoint is."""
    run = setup.run
    where = (
        f"The last good checkpoint, from epoch {load_checkpoint(run.last)['epoch']}, is "
        f"{run.last}; resume with `--resume` and a lower learning rate."
        if run.last.exists()
        else "No checkpoint had been written yet; start again with a lower learning rate."
    )
    after = (
        f" after {state.recoveries} recoveries, each from the last checkpoint at half the "
        "learning rate"
        if state.recoveries
        else ""
    )
    text = (
        f"The training loss became {value} in epoch {state.epoch + 1} (update {state.step}): "
        f"training diverged{after} and was stopped. {where}"
    )
    save_run(run.folder, setup.manifest.updated(status="failed", message=text, updated_at=_now()))
    return TrainingError(text)


def _interrupted(run: _Run) -> str:
    # Say only what is on disk: before the first validation there is no checkpoint.
    if run.last.exists():
        return f"Interrupted; `--resume` continues from {run.last}."
    return (
        "Interrupted before the first validation: no checkpoint was written. Run the "
        "same command again without --resume to start over."
    )


def _save_stopped(setup: _Setup, state: TrainingState, text: str) -> None:
    """Mark the run stopped, saying why, with the summary of its last validation kept (the
    manifest in ``setup`` predates the summaries that validations saved)."""
    save_run(
        setup.run.folder,
        setup.manifest.updated(
            status="stopped", message=text, updated_at=_now(), summary=state.summary()
        ),
    )
