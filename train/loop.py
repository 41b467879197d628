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
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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
from ampcap.train.checkpoint import load_checkpoint, make_checkpoint, write_checkpoint
from ampcap.train.data import BatchMaker, Dataset, epoch_batches
from ampcap.train.evaluate import TestScores, evaluate_split, predict_split, validation_scores
from ampcap.train.loss import esr_dc_loss
from ampcap.train.model import ModelConfig, build_model, detach_state

SCHEDULES = ("constant", "cosine")
#: How evenly the loss weighs knob settings of different loudness: 0 pools the energy over the
#: batch (DAFx-19), 1 divides each segment's error by its own setting's energy.
DEFAULT_SETTING_BALANCE = 0.25


@dataclass(frozen=True)
class TrainConfig:
    """How to train; stored in ``run.json`` and every checkpoint.

    Attributes
    ----------
    epochs : int
        Epochs in all (a resumed run counts the epochs already done).
    minutes : float or None
        Wall-clock budget for this invocation's training (evaluation not included).
    patience_epochs : int
        Stop when the best validation loss is this many epochs old.
    seed : int
        Seeds the initial parameters and every epoch's shuffle.
    device : str
        "cpu" or "cuda" (resolved; see :func:`resolve_device`).
    threads : int
        Intra-op threads on the CPU (1: robust when other programs share the cores).
    segment_seconds : float
        Length of the training segments cut inside pieces (DAFx-19: 0.5 s).
    batch_size : int
        Segments per mini-batch (DAFx-19: 40).
    warmup_samples : int
        Samples run without updates at the start of each mini-batch (DAFx-19: 1000); also the
        unscored start of every validation and test piece.
    tbptt_samples : int
        Samples between updates, and the back-propagation length (DAFx-19: 2048).
    learning_rate : float
        Adam's (peak) learning rate. DAFx-19 used 5e-4, constant; ampcap starts twenty times
        higher and decays (``schedule``), which reaches a given test ESR in far fewer epochs.
    schedule : {"constant", "cosine"}
        ``cosine`` decays from ``learning_rate`` to ``learning_rate * final_lr_fraction``
        over the run's horizon.
    final_lr_fraction : float
    grad_clip : float
        Clip the gradient's global norm to this (0: no clipping).
    validate_every : int
        Epochs between validations (DAFx-19: 2).
    setting_balance : float in [0, 1]
        0 is DAFx-19's loss, the ESR pooled over each mini-batch, where a quiet knob setting
        hardly counts. Above 0 each segment's error is divided by an energy of its own setting
        (:func:`ampcap.train.data.balanced_energies`); 1 makes every setting weigh the same.
        The validation that picks the best model weighs the settings the same way.
    """

    epochs: int = 200
    minutes: float | None = None
    patience_epochs: int = 50
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    segment_seconds: float = 0.5
    batch_size: int = 40
    warmup_samples: int = 1000
    tbptt_samples: int = 2048
    learning_rate: float = 1e-2
    schedule: str = "cosine"
    final_lr_fraction: float = 0.05
    grad_clip: float = 1.0
    validate_every: int = 2
    setting_balance: float = DEFAULT_SETTING_BALANCE

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise TrainingError(f"--epochs must be at least 1, not {self.epochs}.")
        if self.minutes is not None and self.minutes <= 0:
            raise TrainingError(f"--minutes must be positive, not {self.minutes}.")
        if self.patience_epochs < 1:
            raise TrainingError(f"--patience must be at least 1 epoch, not {self.patience_epochs}.")
        if not 0 <= self.setting_balance <= 1:
            raise TrainingError(
                f"--setting-balance must be between 0 and 1, not {self.setting_balance}."
            )
        if self.schedule not in SCHEDULES:
            raise TrainingError(
                f"Unknown schedule {self.schedule!r}; use one of {', '.join(SCHEDULES)}."
            )
        if self.batch_size < 1 or self.tbptt_samples < 2 or self.warmup_samples < 0:
            raise TrainingError(
                f"Batch size {self.batch_size}, TBPTT length {self.tbptt_samples} and warm-up "
                f"{self.warmup_samples} must be at least 1, 2 and 0."
            )
        if not 0 < self.learning_rate < 1:
            raise TrainingError(f"The learning rate must be in (0, 1), not {self.learning_rate}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        # Runs written before the loss could weigh settings were trained with the pooled one.
        data = {"setting_balance": 0.0, **data}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class ProgressEvent:
    """What the loop tells its caller after each mini-batch and each validation.

    ``kind`` is "batch" or "validation"; ``epoch`` counts from 1; ``remaining_s`` is the
    estimated training time left (None until it can be estimated).
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
            "--device cuda was asked for but torch sees no CUDA GPU (this torch build or "
            "driver has none). Use --device cpu."
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


def _config_differences(saved: ModelConfig, wanted: ModelConfig) -> list[str]:
    return [
        f"{f.name} {getattr(saved, f.name)!r} (asked: {getattr(wanted, f.name)!r})"
        for f in fields(ModelConfig)
        if getattr(saved, f.name) != getattr(wanted, f.name)
    ]


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


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


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
    device = resolve_device(config.device)
    if device == "cpu":
        torch.set_num_threads(config.threads)
        tune_allocator()
    train_split, val_split = dataset.splits["train"], dataset.splits["val"]
    rate = dataset.sample_rate_hz
    segment = int(round(config.segment_seconds * rate))
    dataset_info = {"path": str(dataset.folder), "manifest_sha256": dataset.manifest_sha256}

    if resume:
        model, optimizer, state = _resume(run, dataset, model_config, device, config)
        manifest = load_run(run.folder).updated(
            train_config=config.to_dict(), status="running", message=None, updated_at=_now()
        )
    else:
        torch.manual_seed(config.seed)
        model = build_model(model_config).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        state = {
            "epoch": 0,
            "step": 0,
            "best_val_loss": math.inf,
            "best_val_esr": math.inf,
            "best_epoch": 0,
            "history": {"epochs": [], "validations": []},
            "elapsed_s": 0.0,
        }
        manifest = RunManifest(
            schema_version=1,
            ampcap_version=__version__,
            created_at=_now(),
            updated_at=_now(),
            model_config=model_config.to_dict(),
            train_config=config.to_dict(),
            dataset_path=str(dataset.folder),
            dataset_manifest_sha256=dataset.manifest_sha256,
            sample_rate_hz=rate,
            knobs=tuple(dataset.knob_list()),
        )
    run.folder.mkdir(parents=True, exist_ok=True)
    save_run(run.folder, manifest)
    # From here an interrupt marks the run stopped and says what it left.
    try:
        balance = config.setting_balance
        batches_of = BatchMaker(train_split, segment, balance=balance)
        history = state["history"]
        started = time.perf_counter()
        deadline = started + 60.0 * config.minutes if config.minutes else math.inf
        horizon = float(config.epochs)
        train_seconds = 0.0
        samples = 0
        epoch = state["epoch"]
        status, message = "finished", f"Trained {config.epochs} epochs."

        def checkpoint(best: bool) -> None:
            ckpt = make_checkpoint(
                model,
                model_config,
                knobs=dataset.knob_list(),
                sample_rate_hz=rate,
                epoch=epoch,
                step=state["step"],
                best_val_loss=state["best_val_loss"],
                optimizer_state=optimizer.state_dict(),
                train_config=config.to_dict(),
                dataset=dataset_info,
                progress={k: v for k, v in state.items() if k != "history"},
            )
            write_checkpoint(run.last, ckpt)
            if best:
                write_checkpoint(run.best, ckpt)

        def validate(train_loss: float) -> None:
            outputs = predict_split(
                model, val_split, config.warmup_samples, device, include_heldout=False
            )
            val_loss, val_esr = validation_scores(outputs, balance=balance)
            improved = val_loss < state["best_val_loss"]
            if improved:
                state.update(best_val_loss=val_loss, best_val_esr=val_esr, best_epoch=epoch)
            history["validations"].append(
                {
                    "epoch": epoch,
                    "step": state["step"],
                    "elapsed_s": state["elapsed_s"],
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "val_esr": val_esr,
                    "learning_rate": optimizer.param_groups[0]["lr"],
                }
            )
            checkpoint(best=improved)
            run.write_metrics(history, None)
            save_run(
                run.folder,
                manifest.updated(updated_at=_now(), summary=_summary(state, history, None)),
            )
            if on_progress is not None:
                on_progress(
                    ProgressEvent(
                        "validation",
                        epoch,
                        config.epochs,
                        0,
                        0,
                        train_loss,
                        val_esr,
                        state["best_val_esr"],
                        optimizer.param_groups[0]["lr"],
                        time.perf_counter() - started,
                        None,
                    )
                )

        model.train()
        last_train_loss = math.nan
        validated_at = epoch if history["validations"] else -1
        while epoch < config.epochs:
            batches = epoch_batches(train_split, segment, config.batch_size, config.seed, epoch)
            epoch_losses = []
            epoch_started = time.perf_counter()
            out_of_time = False
            for index, starts in enumerate(batches):
                lr = learning_rate_at(config, epoch + index / len(batches), horizon)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x, y, energy = batches_of(starts)
                t0 = time.perf_counter()
                loss, updates = train_segments(
                    model,
                    optimizer,
                    x.to(device),
                    y.to(device),
                    config,
                    None if energy is None else energy.to(device),
                )
                dt = time.perf_counter() - t0
                train_seconds += dt
                state["elapsed_s"] += dt
                samples += x.shape[0] * x.shape[1]
                state["step"] += updates
                epoch_losses.append(loss)
                now = time.perf_counter()
                if on_progress is not None:
                    per_epoch = (now - epoch_started) * len(batches) / (index + 1)
                    remaining = min(
                        deadline - now,
                        per_epoch * (config.epochs - epoch) - (now - epoch_started),
                    )
                    on_progress(
                        ProgressEvent(
                            "batch",
                            epoch + 1,
                            config.epochs,
                            index + 1,
                            len(batches),
                            loss,
                            _finite_or_none(history["validations"][-1]["val_esr"])
                            if history["validations"]
                            else None,
                            _finite_or_none(state["best_val_esr"]),
                            lr,
                            now - started,
                            max(0.0, remaining),
                        )
                    )
                if now >= deadline:
                    out_of_time = True
                    break
            epoch_seconds = time.perf_counter() - epoch_started
            if out_of_time and not epoch_losses:
                break
            last_train_loss = float(np.mean(epoch_losses))
            if not out_of_time:
                epoch += 1
                state["epoch"] = epoch
                history["epochs"].append(
                    {
                        "epoch": epoch,
                        "train_loss": last_train_loss,
                        "seconds": epoch_seconds,
                        "learning_rate": optimizer.param_groups[0]["lr"],
                    }
                )
                if config.minutes and config.schedule == "cosine":
                    # The horizon is the number of epochs that fit in the budget, re-estimated
                    # from the epochs timed so far; capped by --epochs.
                    left = deadline - time.perf_counter()
                    horizon = min(float(config.epochs), epoch + max(0.0, left) / epoch_seconds)
            if out_of_time:
                validate(last_train_loss)
                validated_at = epoch
                status = "stopped"
                message = (
                    f"Stopped at the time budget ({config.minutes:g} min) in epoch {epoch + 1}."
                )
                break
            if epoch % config.validate_every == 0 or epoch == config.epochs:
                validate(last_train_loss)
                validated_at = epoch
                if epoch - state["best_epoch"] >= config.patience_epochs:
                    status = "stopped"
                    message = (
                        f"Stopped early at epoch {epoch}: the validation loss has not improved "
                        f"for {config.patience_epochs} epochs (best at epoch {state['best_epoch']})."
                    )
                    break
        if validated_at != epoch and history["epochs"]:
            validate(last_train_loss)
    except _Diverged as exc:
        where = (
            f"The last good checkpoint, from epoch {load_checkpoint(run.last)['epoch']}, is "
            f"{run.last}; resume with `--resume` and a lower learning rate."
            if run.last.exists()
            else "No checkpoint had been written yet; start again with a lower learning rate."
        )
        text = (
            f"The training loss became {exc.value} in epoch {epoch + 1} (update {state['step']}): "
            f"training diverged and was stopped. {where}"
        )
        save_run(run.folder, manifest.updated(status="failed", message=text, updated_at=_now()))
        raise TrainingError(text) from None
    except KeyboardInterrupt:
        # Say only what is on disk: before the first validation there is no checkpoint.
        if run.last.exists():
            text = f"Interrupted; `--resume` continues from {run.last}."
        else:
            text = (
                "Interrupted before the first validation: no checkpoint was written. Run the "
                "same command again without --resume to start over."
            )
        _save_stopped(run, manifest, state, text)
        raise

    if not run.best.exists():
        raise TrainingError(
            f"No validation was run (the time budget of {config.minutes} min ended before the "
            "first mini-batch finished). Give more --minutes."
        )
    try:
        best_model, _ = _load_best(run, device)
        test = evaluate_split(
            best_model, dataset.splits["test"], rate, config.warmup_samples, device
        )
    except KeyboardInterrupt:
        text = f"Interrupted while testing the best model; `--resume` continues from {run.last}."
        _save_stopped(run, manifest, state, text)
        raise
    run.write_metrics(history, test)
    save_run(
        run.folder,
        manifest.updated(
            status=status,
            message=message,
            updated_at=_now(),
            summary=_summary(state, history, test, train_seconds, samples),
        ),
    )
    return TrainOutcome(
        status=status,
        message=message,
        epochs=epoch,
        steps=state["step"],
        best_epoch=state["best_epoch"],
        best_val_loss=state["best_val_loss"],
        best_val_esr=state["best_val_esr"],
        train_seconds=train_seconds,
        samples_per_second=samples / train_seconds if train_seconds else 0.0,
        test=test,
        history=history,
    )


def _summary(
    state: dict[str, Any],
    history: dict[str, Any],
    test: TestScores | None,
    train_seconds: float | None = None,
    samples: int | None = None,
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "epochs": state["epoch"],
        "steps": state["step"],
        "best_epoch": state["best_epoch"],
        "best_val_loss": _finite_or_none(state["best_val_loss"]),
        "best_val_esr": _finite_or_none(state["best_val_esr"]),
        "train_seconds_total": state["elapsed_s"],
        "validations": len(history["validations"]),
    }
    if train_seconds:
        summary["samples_per_second"] = (samples or 0) / train_seconds
    if test is not None:
        summary.update(
            test_esr=_finite_or_none(test.esr),
            test_esr_mean=_finite_or_none(test.esr_mean),
            test_esr_worst=_finite_or_none(test.esr_worst),
            heldout_esr=_finite_or_none(test.heldout_esr),
        )
    return summary


def _save_stopped(run: _Run, manifest: RunManifest, state: dict[str, Any], text: str) -> None:
    """Mark the run stopped, saying why, with the summary of its last validation kept (the
    ``manifest`` object in hand predates the summaries that validations saved)."""
    summary = _summary(state, state["history"], None)
    save_run(
        run.folder,
        manifest.updated(status="stopped", message=text, updated_at=_now(), summary=summary),
    )


def _load_best(run: _Run, device: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    from ampcap.train.checkpoint import model_from_checkpoint

    checkpoint = load_checkpoint(run.best)
    return model_from_checkpoint(checkpoint).to(device), checkpoint


def _resume(
    run: _Run, dataset: Dataset, wanted: ModelConfig, device: str, config: TrainConfig
) -> tuple[torch.nn.Module, torch.optim.Optimizer, dict[str, Any]]:
    if not run.last.exists():
        raise TrainingError(
            f"Nothing to resume in {run.folder}: {run.last} does not exist (the run stopped "
            f"before its first validation). Start it over with `ampcap train {dataset.folder} "
            f"--out {run.folder}` (without --resume)."
        )
    checkpoint = load_checkpoint(run.last)
    saved = ModelConfig.from_dict(checkpoint["model_config"])
    differences = _config_differences(saved, wanted)
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
    from ampcap.train.checkpoint import model_from_checkpoint

    model = model_from_checkpoint(checkpoint).to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    if checkpoint.get("optimizer_state"):
        optimizer.load_state_dict(checkpoint["optimizer_state"])
    metrics = load_metrics(run.folder) if run.metrics.exists() else {}
    history = metrics.get("history") or {"epochs": [], "validations": []}
    # Only the history up to the checkpoint: epochs trained after it are trained again.
    epoch = int(checkpoint["epoch"])
    history = {
        "epochs": [e for e in history["epochs"] if e["epoch"] <= epoch],
        "validations": [v for v in history["validations"] if v["epoch"] <= epoch],
    }
    progress = dict(checkpoint.get("progress") or {})
    state = {
        "epoch": epoch,
        "step": int(checkpoint["step"]),
        "best_val_loss": float(checkpoint["best_val_loss"]),
        "best_val_esr": float(progress.get("best_val_esr", math.inf)),
        "best_epoch": int(progress.get("best_epoch", epoch)),
        "history": history,
        "elapsed_s": float(progress.get("elapsed_s", 0.0)),
    }
    return model, optimizer, state
