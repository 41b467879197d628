"""``ampcap train``: train a knob-conditioned model on a split dataset into a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ampcap.commands.options import Number, count, json_option, positive, seed_option
from ampcap.errors import TrainingError

ARCHS = ("lstm", "gru", "wavenet", "mlp")


@click.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "-o",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Run folder to create (model, checkpoints, metrics, report, exports).",
)
@click.option(
    "--arch",
    type=click.Choice(ARCHS),
    default=None,
    help="Model: lstm (default), gru, wavenet (Damskägg et al.) or mlp (baseline).",
)
@click.option(
    "--hidden",
    type=count(),
    default=None,
    help="Hidden size: recurrent units (default 32), WaveNet channels (16), MLP width (32).",
)
@click.option(
    "--layers",
    type=count(),
    default=None,
    help="Recurrent layers (default 1), WaveNet layers (10 or 18), MLP hidden layers (2).",
)
@click.option(
    "--skip/--no-skip",
    default=None,
    help="Add the input to the output (needed by the Proteus player). Default: no skip.",
)
@click.option(
    "--epochs",
    type=count(),
    default=None,
    help="Epochs in all (default 200, or as many as fit in --minutes).",
)
@click.option(
    "--minutes",
    type=positive(),
    default=None,
    help="Training time budget in minutes; the run stops, validates and tests at it.",
)
@click.option(
    "--patience",
    type=count(),
    default=None,
    help="Stop when the validation loss has not improved for this many epochs (50).",
)
@click.option(
    "--lr",
    type=positive(),
    default=None,
    help="Adam's peak learning rate (default 1e-2; the paper: 5e-4 with --schedule constant).",
)
@click.option(
    "--schedule",
    type=click.Choice(("cosine", "constant")),
    default=None,
    help="Learning-rate schedule: cosine decay over the run (default) or constant.",
)
@click.option(
    "--setting-balance",
    type=Number(0.0, 1.0),
    default=None,
    metavar="0-1",
    help="How evenly knob settings of different loudness weigh in the loss and the "
    "validation: 0 pools the error over each batch as in DAFx-19, where a quiet setting hardly "
    "counts; 1 weighs every setting alike; default 0.25.",
)
@click.option(
    "--device",
    type=click.Choice(("auto", "cpu", "cuda")),
    default="auto",
    show_default=True,
    help="auto uses a CUDA GPU when torch sees one, else the CPU.",
)
@click.option(
    "--threads",
    type=count(1, 64),
    default=None,
    help="CPU threads (default 1). A second thread gains up to a third on an idle machine but "
    "slows training many times over when other programs share the cores.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from its last checkpoint (same model and dataset).",
)
@seed_option
@json_option
@click.pass_context
def train(
    ctx: click.Context,
    data: Path,
    out: Path,
    arch: str | None,
    hidden: int | None,
    layers: int | None,
    skip: bool | None,
    epochs: int | None,
    minutes: float | None,
    patience: int | None,
    lr: float | None,
    schedule: str | None,
    setting_balance: float | None,
    device: str,
    threads: int | None,
    resume: bool,
    seed: int,
    as_json: bool,
) -> None:
    """Train a knob-conditioned model of the device on DATA (a folder `ampcap split` made).

    The default is the DAFx-19 recipe (Wright, Damskägg & Välimäki): one LSTM layer of 32
    units and a linear output, knobs as extra inputs, half-second segments in batches of 40,
    1000 samples of warm-up, an update every 2048 samples, ESR with pre-emphasis + DC, Adam.
    One change makes it converge in minutes: the learning rate starts at 1e-2 and decays on a
    cosine over the run (--lr 5e-4 --schedule constant is the paper's). The validation set
    picks the best model (model.pt); checkpoints/last.pt is written at every validation, so
    Ctrl-C loses at most two epochs and --resume continues. At the end the best model is
    tested per knob setting, exported for players (exports/) and a report written.

    \b
    Examples:
      ampcap train data/demo --out runs/demo --minutes 8
      ampcap train data/demo --out runs/gru --arch gru --hidden 32 --epochs 100
      ampcap train data/demo --out runs/demo --resume --epochs 300
    """
    from ampcap.console import err, print_json
    from ampcap.outputs import check_output_folder, folder_lock
    from ampcap.schema.run import MANIFEST_NAME, load_run
    from ampcap.train.data import load_training_data
    from ampcap.train.loop import TrainConfig, resolve_device, train_run
    from ampcap.train.model import ModelConfig, make_config

    seed_given = ctx.get_parameter_source("seed") is not click.core.ParameterSource.DEFAULT
    check_output_folder(out, (data,), option="--out")
    if resume:
        run = load_run(out)
        saved_model = ModelConfig.from_dict(run.model_config)
        saved_train = TrainConfig.from_dict(run.train_config)
    else:
        _refuse_existing(out, MANIFEST_NAME)
        saved_model = None
        # With a time budget the epochs are whatever fits in it.
        saved_train = TrainConfig(epochs=200 if minutes is None else 100_000)
    # Held to the end; taken before the dataset loads, so an unwritable --out fails at once.
    ctx.with_resource(folder_lock(out, "train"))
    dataset = load_training_data(data)
    if saved_model is not None:
        model_config = _override_model(saved_model, arch, hidden, layers, skip)
    else:
        model_config = make_config(arch or "lstm", dataset.input_size, hidden, layers, bool(skip))
    if model_config.input_size != dataset.input_size:
        raise TrainingError(
            f"{data} has {dataset.input_size - 1} knob(s) but the run's model takes "
            f"{model_config.input_size - 1}; resume with the run's own dataset."
        )
    config = TrainConfig.from_dict(
        {
            **saved_train.to_dict(),
            **_given(
                epochs=epochs,
                patience_epochs=patience,
                learning_rate=lr,
                schedule=schedule,
                setting_balance=setting_balance,
                threads=threads,
            ),
            # The time budget is this invocation's; a resumed run does not inherit it.
            "minutes": minutes,
            "device": resolve_device(device),
            "seed": seed if (seed_given or not resume) else saved_train.seed,
        }
    )
    train_seconds = dataset.splits["train"].target.size / dataset.sample_rate_hz
    err.print(
        f"Training {_describe(model_config)} on {data} ({train_seconds:.0f} s of training "
        f"audio at {dataset.sample_rate_hz} Hz) on {config.device}"
        f"{' (resumed)' if resume else ''} into {out}",
        soft_wrap=True,
    )
    with _ProgressView(config) as view:
        outcome = train_run(
            dataset, out, model_config, config, resume=resume, on_progress=view.update
        )
    err.print(outcome.message)

    exports = _write_exports(out)
    from ampcap.report_run import run_report_document, show_test_table, write_run_report

    report = write_run_report(out)
    if as_json:
        document = run_report_document(out)
        document["exports"] = [str(p) for p in exports]
        document["report"] = str(report)
        print_json(document)
    else:
        show_test_table(out)
        for path in exports:
            err.print(f"export: {path}")
        err.print(f"report: {report}")


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _override_model(
    saved: Any, arch: str | None, hidden: int | None, layers: int | None, skip: bool | None
) -> Any:
    """The run's model config with the options the user gave on top (checked by the loop)."""
    from dataclasses import replace

    changes = _given(arch=arch, hidden_size=hidden, num_layers=layers, skip=skip)
    return replace(saved, **changes) if changes else saved


def _describe(config: Any) -> str:
    name = {"lstm": "LSTM", "gru": "GRU", "wavenet": "WaveNet", "mlp": "MLP"}[config.arch]
    detail = f"{name}{config.hidden_size}"
    if config.num_layers != 1 or config.arch in ("wavenet", "mlp"):
        detail += f" x{config.num_layers}"
    return detail + (" + skip" if config.skip else "")


def _refuse_existing(out: Path, manifest_name: str) -> None:
    """A new run never writes into a folder that holds another run or other files.

    A run stopped before its first validation has no checkpoint and nothing to lose: a plain
    start begins it again in the same folder.
    """
    from ampcap.outputs import holds_files
    from ampcap.schema.run import BEST_MODEL, LAST_CHECKPOINT

    if (out / manifest_name).exists():
        if not (out / LAST_CHECKPOINT).exists() and not (out / BEST_MODEL).exists():
            from ampcap.console import info

            info(f"{out} holds a run stopped before its first checkpoint: starting it over.")
            return
        raise TrainingError(
            f"{out} already holds a training run. Continue it with --resume, or give another "
            "--out folder (or delete this one) to start afresh."
        )
    if out.exists() and (not out.is_dir() or holds_files(out)):
        raise TrainingError(
            f"{out} exists and is not an empty folder; ampcap will not write a run into it. "
            "Give a new --out folder."
        )


def _write_exports(out: Path) -> list[Path]:
    """Model files for players, written by ``ampcap.train.export`` where this install has it."""
    import importlib

    from ampcap.console import warn
    from ampcap.errors import AmpcapError

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


class _ProgressView:
    """A rich progress line on stderr: epoch, loss, validation ESR, learning rate, time left."""

    def __init__(self, config: Any) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        from ampcap.console import err

        self.config = config
        self.progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[stats]}"),
            console=err,
            transient=False,
        )
        self.task = None

    def __enter__(self) -> _ProgressView:
        self.progress.__enter__()
        self.task = self.progress.add_task("starting", total=1.0, stats="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def update(self, event: Any) -> None:
        parts = [f"loss {event.train_loss:.4f}"]
        if event.val_esr is not None:
            parts.append(f"val ESR {100 * event.val_esr:.2f} %")
        if event.best_val_esr is not None:
            # model.pt is the model of lowest validation *loss* (pre-emphasised ESR + DC), so
            # its plain ESR may be above the latest one: say which model the number is of.
            parts.append(f"kept (lowest val loss) {100 * event.best_val_esr:.2f} %")
        parts.append(f"lr {event.learning_rate:.1e}")
        if event.remaining_s is not None:
            minutes, seconds = divmod(int(event.remaining_s), 60)
            parts.append(f"{minutes}:{seconds:02d} left")
        if event.kind == "batch":
            if self.config.minutes:
                done = min(1.0, event.elapsed_s / (60.0 * self.config.minutes))
            else:
                done = (event.epoch - 1 + event.batch / event.batches) / event.epochs
            self.progress.update(
                self.task,
                completed=done,
                description=f"epoch {event.epoch}",
                stats=" · ".join(parts),
            )
        else:
            self.progress.update(self.task, stats=" · ".join(parts))
            if not self.progress.console.is_terminal:
                # No live bar in a log file or CI: one line per validation instead.
                self.progress.console.print(f"epoch {event.epoch}: " + " · ".join(parts))
