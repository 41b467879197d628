"""``ampcap split``: cut aligned sessions into a leak-free train/val/test dataset."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ampcap.commands.options import Number, json_option, positive, seed_option

if TYPE_CHECKING:
    from ampcap.dataset.split_write import SplitResult


@click.command()
@click.argument("sessions", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(path_type=Path),
    help="Dataset folder to create, e.g. data/demo.",
)
@click.option(
    "--val",
    type=Number(0, 1, below=True),
    default=0.15,
    show_default=True,
    help="Fraction of the DI material for validation.",
)
@click.option(
    "--test",
    type=Number(0, 1, below=True),
    default=0.15,
    show_default=True,
    help="Fraction of the DI material for testing (unheard at every knob setting).",
)
@click.option(
    "--block-seconds",
    type=positive(),
    default=2.0,
    show_default=True,
    help="Length of the time blocks the DI material is cut into.",
)
@click.option(
    "--guard-ms",
    type=Number(0),
    default=50.0,
    show_default=True,
    help="Minimum gap between blocks of different splits, trimmed from both sides.",
)
@click.option(
    "--holdout",
    multiple=True,
    metavar="KNOB=VALUE",
    help="Keep every take at this knob value out of train and val; its test blocks "
    "go to test, flagged held out. Repeatable.",
)
@seed_option
@click.option(
    "--allow-warnings",
    is_flag=True,
    help="Go on although some takes' alignment failed: use those with aligned audio (each "
    "named in a warning), leave out those without.",
)
@click.option(
    "--export",
    "exports",
    multiple=True,
    type=click.Choice(["coreaudioml", "nam"]),
    help="Also write the dataset in another trainer's layout. Repeatable.",
)
@json_option
def split(
    sessions: tuple[Path, ...],
    out: Path,
    val: float,
    test: float,
    block_seconds: float,
    guard_ms: float,
    holdout: tuple[str, ...],
    seed: int,
    allow_warnings: bool,
    exports: tuple[str, ...],
    as_json: bool,
) -> None:
    """Cut aligned SESSIONS into a train/val/test dataset without leakage.

    The DI material is cut into time blocks inside each DI source; each block goes to one
    split at every knob setting, so test audio is unheard at every setting. Blocks of different
    splits are kept --guard-ms apart, and each split keeps the guitar/bass mix. Several sessions
    of one device (same sample rate and knobs) merge into one dataset; the same DI file recorded
    in two sessions keeps its splits in both.

    The dataset folder gets {train,val,test}/input.wav (float32, channels [audio, knobs...],
    knobs normalised to 0..1) and target.wav (mono), and manifest.json. The same sessions,
    options and seed give byte-identical files.

    \b
    Examples:
      ampcap split captures/demo --out data/demo
      ampcap split captures/day1 captures/day2 --out data/ht1 --holdout isf=5
      ampcap split captures/demo --out data/demo --block-seconds 1 --export coreaudioml
      ampcap split captures/demo --out data/demo --export nam --json
    """
    from ampcap.api import split as split_sessions
    from ampcap.console import err, print_json, progress, warn

    with progress(transient=True) as bar:
        task = bar.add_task("Writing splits", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = split_sessions(
            sessions, out, val=val, test=test, block_seconds=block_seconds, guard_ms=guard_ms,
            holdout=holdout, seed=seed, allow_warnings=allow_warnings, exports=exports,
            on_progress=advance,
        )  # fmt: skip
    for note in result.notes:
        warn(note)
    if as_json:
        print_json(_summary(result))
        return
    _print_table(result)
    err.print(
        f"Dataset written to {result.folder}"
        + (" (it already held this dataset; rebuilt identically)" if result.replaced_same else ""),
        soft_wrap=True,  # paths stay on one line, so they can be copied
    )
    for fmt, folder in result.manifest.exports.items():
        err.print(f"  {fmt} export: {result.folder / folder}", soft_wrap=True)


def _summary(result: SplitResult) -> dict[str, Any]:
    from ampcap.labels import knob_label
    from ampcap.schema.dataset import SPLITS

    manifest = result.manifest
    blocks = dict.fromkeys(SPLITS, 0)
    for block in manifest.blocks:
        blocks[block.split] += 1
    return {
        "dataset": str(result.folder),
        "manifest": str(result.folder / "manifest.json"),
        "sample_rate_hz": manifest.sample_rate_hz,
        "settings": [knob_label(s) for s in manifest.settings],
        "heldout": [knob_label(s) for s in manifest.heldout],
        "blocks": blocks,
        "frames": {split: files.frames for split, files in manifest.splits.items()},
        "minutes": manifest.minutes,
        "exports": {fmt: str(result.folder / f) for fmt, f in manifest.exports.items()},
        "notes": list(result.notes),
        "fingerprint": manifest.fingerprint,
    }


def _print_table(result: SplitResult) -> None:
    from rich.table import Table

    from ampcap.console import err
    from ampcap.labels import knob_label
    from ampcap.schema.dataset import SPLITS

    manifest = result.manifest
    heldout = {knob_label(s) for s in manifest.heldout}
    table = Table(title=f"Dataset {manifest.name}: minutes of audio")
    table.add_column("setting")
    for split in SPLITS:
        table.add_column(split, justify="right")
    table.add_column("note")
    totals = dict.fromkeys(SPLITS, 0.0)
    for knobs in manifest.settings:
        label = knob_label(knobs)
        cells = []
        for split in SPLITS:
            minutes = manifest.minutes.get(split, {}).get(label)
            totals[split] += minutes or 0.0
            cells.append("-" if minutes is None else f"{minutes:.2f}")
        table.add_row(label, *cells, "held out: test only" if label in heldout else "")
    table.add_row("total", *(f"{totals[s]:.2f}" for s in SPLITS), "", style="bold")
    err.print(table)
    counts = {s: 0 for s in SPLITS}
    kinds: dict[str, dict[str, int]] = {}
    trimmed = 0
    for block in manifest.blocks:
        counts[block.split] += 1
        kinds.setdefault(block.kind, dict.fromkeys(SPLITS, 0))[block.split] += 1
        trimmed += block.trim_start + block.trim_stop
    mix = "; ".join(
        f"{kind} " + " / ".join(f"{per[s]}" for s in SPLITS) for kind, per in sorted(kinds.items())
    )
    err.print(
        f"{len(manifest.blocks)} blocks of {manifest.block_seconds:g} s "
        f"(train / val / test: {counts['train']} / {counts['val']} / {counts['test']}; {mix}), "
        f"{manifest.guard_ms:g} ms guards trimmed {trimmed / manifest.sample_rate_hz:.2f} s, "
        f"seed {manifest.seed}."
    )
