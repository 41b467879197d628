"""``ampcap train``: train a knob-conditioned model on a split dataset into a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ampcap.commands.options import Number, count, json_option, positive, seed_option
from ampcap.train.config import ARCH_DEFAULTS, ARCHITECTURES, WAVENET_PRESETS, TrainConfig

_HIDDEN = {arch: hidden for arch, (hidden, _) in ARCH_DEFAULTS.items()}
_LAYERS = {arch: layers for arch, (_, layers) in ARCH_DEFAULTS.items()}
_WAVENET_LAYERS = " or ".join(str(n) for n in sorted({layers for _, layers in WAVENET_PRESETS}))
_DEFAULTS = TrainConfig()

_HELP = f"""Train a knob-conditioned model of the device on DATA (a folder `ampcap split` made).

    The default is the DAFx-19 recipe (Wright, Damskägg & Välimäki): one LSTM layer of
    {_HIDDEN["lstm"]} units and a linear output, knobs as extra inputs, half-second segments in
    batches of {_DEFAULTS.batch_size}, {_DEFAULTS.warmup_samples} samples of warm-up, an update
    every {_DEFAULTS.tbptt_samples} samples, ESR with pre-emphasis + DC, Adam. One change makes
    it converge in minutes: the learning rate starts at {_DEFAULTS.learning_rate:g} and decays on
    a cosine over the run (--lr 5e-4 --schedule constant is the paper's). The validation set
    picks the best model (model.pt); checkpoints/last.pt is written at every validation, so
    Ctrl-C loses at most two epochs and --resume continues. At the end the best model is
    tested per knob setting, exported for players (exports/) and a report written.

    \b
    Examples:
      ampcap train data/demo --out runs/demo --minutes 8
      ampcap train data/demo --out runs/gru --arch gru --hidden 32 --epochs 100
      ampcap train data/demo --out runs/demo --resume --epochs 300
    """


@click.command(help=_HELP)
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
    type=click.Choice(ARCHITECTURES),
    default=None,
    help="Model: lstm (default), gru, wavenet (Damskägg et al.) or mlp (baseline).",
)
@click.option(
    "--hidden",
    type=count(),
    default=None,
    help=f"Hidden size: recurrent units (default {_HIDDEN['lstm']}), WaveNet channels "
    f"({_HIDDEN['wavenet']}), MLP width ({_HIDDEN['mlp']}).",
)
@click.option(
    "--layers",
    type=count(),
    default=None,
    help=f"Recurrent layers (default {_LAYERS['lstm']}), WaveNet layers ({_WAVENET_LAYERS}), MLP "
    f"hidden layers ({_LAYERS['mlp']}).",
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
    help=f"Epochs in all (default {_DEFAULTS.epochs}, or as many as fit in --minutes).",
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
    help="Stop when the validation loss has not improved for this many epochs "
    f"({_DEFAULTS.patience_epochs}).",
)
@click.option(
    "--lr",
    type=positive(),
    default=None,
    help=f"Adam's peak learning rate (default {_DEFAULTS.learning_rate:g}; the paper: 5e-4 with "
    "--schedule constant).",
)
@click.option(
    "--schedule",
    type=click.Choice(("cosine", "constant")),
    default=None,
    help="Learning-rate schedule: cosine decay over the run (default) or constant.",
)
@click.option(
    "--batch-size",
    type=count(1, 4096),
    default=None,
    help=f"Segments of {_DEFAULTS.segment_seconds:g} s per update (default "
    f"{_DEFAULTS.batch_size}, DAFx-19). Smaller batches make more updates per minute: on a "
    "clean preamp that was hard to learn, 10 did better in 15 minutes.",
)
@click.option(
    "--setting-balance",
    type=Number(0.0, 1.0),
    default=None,
    metavar="0-1",
    help="How evenly knob settings of different loudness weigh in the loss and the "
    "validation: 0 pools the error over each batch as in DAFx-19, where a quiet setting hardly "
    f"counts; 1 weighs every setting alike; default {_DEFAULTS.setting_balance:g}.",
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
    help=f"CPU threads (default {_DEFAULTS.threads}). A second thread gains up to a third on an "
    "idle machine but "
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
    batch_size: int | None,
    setting_balance: float | None,
    device: str,
    threads: int | None,
    resume: bool,
    seed: int,
    as_json: bool,
) -> None:
    """``ampcap train``: the options, :func:`ampcap.training.train_model`, and what it made."""
    from ampcap.console import err, print_json, warn
    from ampcap.report_run import run_report_document, show_test_table
    from ampcap.training import train_model

    seed_given = ctx.get_parameter_source("seed") is not click.core.ParameterSource.DEFAULT
    with _ProgressView() as view:
        result = train_model(
            data,
            out,
            arch=arch,
            hidden=hidden,
            layers=layers,
            skip=skip,
            epochs=epochs,
            minutes=minutes,
            patience=patience,
            lr=lr,
            schedule=schedule,
            batch_size=batch_size,
            setting_balance=setting_balance,
            device=device,
            threads=threads,
            resume=resume,
            seed=seed if seed_given else None,
            on_start=view.start,
            on_progress=view.update,
            on_trained=view.finish,
            warn=warn,
        )
    if as_json:
        document = run_report_document(out)
        document["exports"] = [str(p) for p in result.exports]
        document["report"] = str(result.report)
        print_json(document)
    else:
        show_test_table(out)
        for path in result.exports:
            err.print(f"export: {path}")
        err.print(f"report: {result.report}")


def _describe(config: Any) -> str:
    name = {"lstm": "LSTM", "gru": "GRU", "wavenet": "WaveNet", "mlp": "MLP"}[config.arch]
    detail = f"{name}{config.hidden_size}"
    if config.num_layers != 1 or config.arch in ("wavenet", "mlp"):
        detail += f" x{config.num_layers}"
    return detail + (" + skip" if config.skip else "")


class _ProgressView:
    """A rich progress line on stderr: epoch, loss, validation ESR, learning rate, time left.

    It says what is about to train when training starts, and closes its line and says how
    training ended before the exports are written; leaving the ``with`` block closes it too.
    """

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        from ampcap.console import err

        self.config: Any = None
        self.progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[stats]}"),
            console=err,
            transient=False,
        )
        self.task = None
        self.live = False

    def __enter__(self) -> _ProgressView:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.live = False
            self.progress.__exit__(*exc)

    def start(self, plan: Any) -> None:
        from ampcap.console import err, info

        if plan.restarted:
            info(f"{plan.out} holds a run stopped before its first checkpoint: starting it over.")
        err.print(
            f"Training {_describe(plan.model_config)} on {plan.data} "
            f"({plan.train_audio_seconds:.0f} s of training audio at {plan.sample_rate_hz} Hz) "
            f"on {plan.config.device}{' (resumed)' if plan.resume else ''} into {plan.out}",
            soft_wrap=True,
        )
        self.config = plan.config
        self.progress.__enter__()
        self.live = True
        self.task = self.progress.add_task("starting", total=1.0, stats="")

    def finish(self, outcome: Any) -> None:
        self.__exit__(None, None, None)
        self.progress.console.print(outcome.message)

    def update(self, event: Any) -> None:
        if event.kind == "recovery":
            from ampcap.console import warn

            warn(event.note)
            return
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
