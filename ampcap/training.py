"""Train a model from Python as ``ampcap train`` does: run folder, model, exports and report.

:func:`train_model` is the whole of ``ampcap train`` without the terminal: it checks the output
folder, holds its writer lock, reads the dataset, settles the model and training settings (a
new run's defaults, or a resumed run's own settings with the given ones on top), trains
(:func:`ampcap.train.loop.train_run`), writes the model files for players
(:func:`ampcap.train.export.write_exports`) and the run's report
(:func:`ampcap.report_run.write_run_report`). What a person should see arrives through the
callbacks; nothing is printed here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ampcap.errors import AmpcapError, TrainingError
from ampcap.train.config import DEFAULT_ARCH, ModelConfig, TrainConfig, make_config

if TYPE_CHECKING:
    from ampcap.train.data import Dataset
    from ampcap.train.loop import ProgressEvent, TrainOutcome

#: With a time budget and no epochs given, a new run trains as many epochs as fit in it: a
#: count no budget reaches.
EPOCHS_WITHIN_BUDGET = 100_000


@dataclass(frozen=True)
class TrainingPlan:
    """What a run is about to do, once the dataset is read and the settings are settled.

    Attributes
    ----------
    data, out : pathlib.Path
        The dataset folder and the run folder, as given.
    model_config : ModelConfig
    config : TrainConfig
        The training settings, the device resolved ("cpu" or "cuda").
    resume : bool
        Whether the run continues from its last checkpoint.
    restarted : bool
        ``out`` held a run stopped before its first checkpoint, which starts over.
    train_audio_seconds : float
        Length of the training split, in seconds.
    sample_rate_hz : int
        The dataset's sample rate.
    """

    data: Path
    out: Path
    model_config: ModelConfig
    config: TrainConfig
    resume: bool
    restarted: bool
    train_audio_seconds: float
    sample_rate_hz: int


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_model` made.

    Attributes
    ----------
    outcome : TrainOutcome
        How training ended and the best model's test scores.
    exports : tuple of pathlib.Path
        The model files written for players (none for models no player loads).
    report : pathlib.Path
        The run's ``report.html``.
    warnings : tuple of str
        Everything worth a person's attention about the exports, in order.
    """

    outcome: TrainOutcome
    exports: tuple[Path, ...]
    report: Path
    warnings: tuple[str, ...] = ()


def train_model(
    data: str | Path,
    out: str | Path,
    *,
    arch: str | None = None,
    hidden: int | None = None,
    layers: int | None = None,
    skip: bool | None = None,
    epochs: int | None = None,
    minutes: float | None = None,
    patience: int | None = None,
    lr: float | None = None,
    schedule: str | None = None,
    batch_size: int | None = None,
    setting_balance: float | None = None,
    device: str = "auto",
    threads: int | None = None,
    resume: bool = False,
    seed: int | None = None,
    on_start: Callable[[TrainingPlan], None] | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    on_trained: Callable[[TrainOutcome], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a knob-conditioned model on a split dataset into a run folder, export it and
    write its report.

    A setting left at ``None`` takes, for a new run, the default of
    :class:`~ampcap.train.config.TrainConfig` or :func:`~ampcap.train.config.make_config`, and
    for a resumed run the run's own value (``minutes`` excepted: a budget is never inherited).

    Parameters
    ----------
    data : path-like
        A dataset folder made by ``ampcap split``.
    out : path-like
        The run folder: new or empty, or, with ``resume``, the run to continue.
    arch : {"lstm", "gru", "wavenet", "mlp"}, optional
        The model; default "lstm" (DAFx-19).
    hidden : int, optional
        Recurrent units, WaveNet channels or MLP width; default per architecture
        (:data:`~ampcap.train.config.ARCH_DEFAULTS`: 32, 16, 32).
    layers : int, optional
        Recurrent layers, WaveNet dilated layers or MLP hidden layers; default per architecture
        (1, 10, 2).
    skip : bool, optional
        Add the input to the output (the Proteus convention); default False.
    epochs : int, optional
        Epochs in all, counting those before a resume; default 200, or as many as fit in
        ``minutes`` when a budget is given.
    minutes : float, optional
        Training time budget of this call, in minutes; default none.
    patience : int, optional
        Stop when the validation loss has not improved for this many epochs; default 50.
    lr : float, optional
        Adam's peak learning rate (per update, unitless); default 1e-2.
    schedule : {"cosine", "constant"}, optional
        Learning-rate schedule; default "cosine" (decays to 5 % of ``lr`` over the run).
    batch_size : int, optional
        Training segments per update; default 40 (DAFx-19).
    setting_balance : float, optional
        0 to 1: how evenly knob settings of different loudness weigh in the loss and the
        validation (0 pools the error as in DAFx-19, 1 weighs every setting alike); default
        0.25.
    device : {"auto", "cpu", "cuda"}, default "auto"
        "auto" uses a CUDA GPU when torch sees one, else the CPU.
    threads : int, optional
        CPU threads for torch; default 1.
    resume : bool, default False
        Continue the run in ``out`` from its last checkpoint (same model and dataset).
    seed : int, optional
        Seeds the initial weights and every epoch's shuffle; default 0 (a resumed run: its own).
    on_start : callable, optional
        Called with the :class:`TrainingPlan` just before training begins.
    on_progress : callable, optional
        Called with a :class:`~ampcap.train.loop.ProgressEvent` after every mini-batch and
        validation.
    on_trained : callable, optional
        Called with the :class:`~ampcap.train.loop.TrainOutcome` when training and testing
        are done, before the exports and the report are written.
    warn : callable, optional
        Called with each warning as it arises (they are also in :attr:`TrainResult.warnings`).

    Returns
    -------
    TrainResult

    Raises
    ------
    ampcap.errors.AmpcapError
        An output folder that would destroy the dataset or holds something else, a folder
        another process is writing, an unreadable dataset, a refused resume, or a training
        loss that diverged (:class:`~ampcap.errors.TrainingError`).
    """
    from ampcap.outputs import check_output_folder, folder_lock
    from ampcap.report_run import write_run_report
    from ampcap.train.data import load_training_data
    from ampcap.train.loop import resolve_device, train_run

    data, out = Path(data), Path(out)
    check_output_folder(out, (data,), option="--out")
    saved_model, saved_train, restarted = _saved_settings(out, resume, minutes)
    # Held to the end; taken before the dataset loads, so an unwritable folder fails at once.
    with folder_lock(out, "train"):
        dataset = load_training_data(data)
        model_config = _model_config(dataset, saved_model, arch, hidden, layers, skip)
        config = TrainConfig.from_dict(
            {
                **saved_train.to_dict(),
                **_given(
                    epochs=epochs,
                    patience_epochs=patience,
                    learning_rate=lr,
                    schedule=schedule,
                    batch_size=batch_size,
                    setting_balance=setting_balance,
                    threads=threads,
                ),
                # The time budget is this call's; a resumed run does not inherit it.
                "minutes": minutes,
                "device": resolve_device(device),
                "seed": saved_train.seed if seed is None else seed,
            }
        )
        if on_start is not None:
            on_start(
                TrainingPlan(
                    data=data,
                    out=out,
                    model_config=model_config,
                    config=config,
                    resume=resume,
                    restarted=restarted,
                    train_audio_seconds=dataset.splits["train"].target.size
                    / dataset.sample_rate_hz,
                    sample_rate_hz=dataset.sample_rate_hz,
                )
            )
        outcome = train_run(
            dataset, out, model_config, config, resume=resume, on_progress=on_progress
        )
        if on_trained is not None:
            on_trained(outcome)
        warnings: list[str] = []
        exports = _write_exports(out, _collecting(warnings, warn))
        report = write_run_report(out)
    return TrainResult(outcome, tuple(exports), report, tuple(warnings))


def _saved_settings(
    out: Path, resume: bool, minutes: float | None
) -> tuple[ModelConfig | None, TrainConfig, bool]:
    """``(model, training, restarted)``: a resumed run's own settings; for a new run no model
    yet, the default training, and whether ``out`` holds a run that starts over."""
    from ampcap.schema.run import load_run

    if resume:
        run = load_run(out)
        return (
            ModelConfig.from_dict(run.model_config),
            TrainConfig.from_dict(run.train_config),
            False,
        )
    restarted = _refuse_existing(out)
    return (
        None,
        TrainConfig() if minutes is None else TrainConfig(epochs=EPOCHS_WITHIN_BUDGET),
        restarted,
    )


def _collecting(kept: list[str], warn: Callable[[str], None] | None) -> Callable[[str], None]:
    """A warning callback that keeps each warning in ``kept`` and passes it on to ``warn``."""

    def note(text: str) -> None:
        kept.append(text)
        if warn is not None:
            warn(text)

    return note


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _model_config(
    dataset: Dataset,
    saved: ModelConfig | None,
    arch: str | None,
    hidden: int | None,
    layers: int | None,
    skip: bool | None,
) -> ModelConfig:
    """A new run's model, or a resumed run's with the given settings on top (the loop refuses
    one that differs from the checkpoint's)."""
    if saved is None:
        config = make_config(arch or DEFAULT_ARCH, dataset.input_size, hidden, layers, bool(skip))
    else:
        changes = _given(arch=arch, hidden_size=hidden, num_layers=layers, skip=skip)
        config = replace(saved, **changes) if changes else saved
    if config.input_size != dataset.input_size:
        raise TrainingError(
            f"{dataset.folder} has {dataset.input_size - 1} knob(s) but the run's model takes "
            f"{config.input_size - 1}; resume with the run's own dataset."
        )
    return config


def _refuse_existing(out: Path) -> bool:
    """A new run never writes into a folder that holds another run or other files.

    A run stopped before its first validation has no checkpoint and nothing to lose: a plain
    start begins it again in the same folder (returns True).
    """
    from ampcap.outputs import holds_files
    from ampcap.schema.run import BEST_MODEL, LAST_CHECKPOINT, MANIFEST_NAME

    if (out / MANIFEST_NAME).exists():
        if not (out / LAST_CHECKPOINT).exists() and not (out / BEST_MODEL).exists():
            return True
        raise TrainingError(
            f"{out} already holds a training run. Continue it with --resume, or give another "
            "--out folder (or delete this one) to start afresh."
        )
    if out.exists() and (not out.is_dir() or holds_files(out)):
        raise TrainingError(
            f"{out} exists and is not an empty folder; ampcap will not write a run into it. "
            "Give a new --out folder."
        )
    return False


def _write_exports(out: Path, warn: Callable[[str], None]) -> list[Path]:
    """Model files for players, written by ``ampcap.train.export`` where this install has it."""
    try:
        export = importlib.import_module("ampcap.train.export")
    except ModuleNotFoundError as exc:
        if exc.name != "ampcap.train.export":
            raise
        warn("this ampcap has no model exporter; no exports were written.")
        return []
    try:
        return list(export.write_exports(out, warn=warn))
    except AmpcapError as exc:
        warn(f"exports were not written: {exc}")
        return []
