"""``ampcap plan``: the knob settings worth recording next in a capture session."""

from __future__ import annotations

from pathlib import Path

import click

from ampcap.commands.options import count, json_option


@click.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--add",
    "add",
    type=count(),
    default=2,
    show_default=True,
    help="How many settings to suggest.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the plan to this JSON file, for `ampcap record --plan-file`.",
)
@json_option
def plan(folders: tuple[Path, ...], add: int, out: Path | None, as_json: bool) -> None:
    """Suggest the knob settings worth recording next, from a session or from trained models.

    FOLDERS is one capture session (recorded and aligned), or two or more training runs of
    the same dataset trained with different --seed.

    From a session: every take plays the same DI, so ampcap measures how much the device's
    output changes between neighbouring recorded settings (an ESR, pre-emphasised as in
    training). The largest change is the gap to fill, and its middle the setting to record.

    From runs: the models render the dataset's validation input at points inside each gap
    between the trained settings; where they disagree most, the recordings pin the device down
    least, and that is the setting to record.

    Each suggestion comes with the reason in one line. --out writes a plan file that
    `ampcap record --plan-file` records.

    \b
    Examples:
      ampcap plan captures/muff --add 2
      ampcap plan captures/muff --add 2 --out plan.json
      ampcap record --rig motu --out captures/muff --plan-file plan.json
      ampcap plan runs/muff-s0 runs/muff-s1 runs/muff-s2 --add 2 --out plan.json
    """
    from ampcap.console import err, print_json, progress
    from ampcap.errors import UsageError
    from ampcap.files import atomic_write_json
    from ampcap.outputs import probe_folder

    if out is not None:
        if out.exists() and not _is_plan_file(out):
            raise UsageError(
                f"--out {out} exists and is not a plan ampcap wrote; give a new file name. "
                "Nothing was changed."
            )
        probe_folder(out.parent, shown=out)
    from ampcap.api import plan as plan_next

    with progress(transient=True) as bar:
        task = bar.add_task("measuring", total=None)

        def step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = plan_next(folders, add, on_progress=step)
    runs = hasattr(result, "runs")
    document = result.to_dict()
    if out is not None:
        atomic_write_json(out, document)
    if as_json:
        print_json(document)
        return
    _show(result, document, runs)
    if out is not None:
        err.print(f"plan: {out} (record it with `ampcap record --out SESSION --plan-file {out}`)")


def _show(result, document: dict, runs: bool) -> None:
    from ampcap.console import err
    from ampcap.labels import knob_label

    if runs:
        err.print(
            f"{len(result.runs)} models trained on {len(result.trained)} setting(s) disagree "
            f"{result.trained_disagreement_esr:.2%} (ESR) at them; inside the gaps:"
        )
        for c in sorted(result.candidates, key=lambda c: -c.disagreement_esr):
            err.print(f"  {knob_label(c.knobs)}: {c.disagreement_esr:.2%}")
    else:
        err.print(f"{len(result.recorded)} setting(s) recorded in {result.session}.")
        for s in sorted(result.steps, key=lambda s: -s.esr):
            low, high = s.low[s.knob], s.high[s.knob]
            err.print(f"  {s.knob} {low:g} -> {high:g}: the output changes {s.esr:.2%} (ESR)")
    err.print(f"Record next ({len(document['add'])}):")
    for item in document["add"]:
        err.print(f"  {item['label']}: {item['reason']}", soft_wrap=True)


def _is_plan_file(path: Path) -> bool:
    """Whether ``path`` holds a plan ``ampcap plan --out`` wrote (a JSON object with "add")."""
    from ampcap.errors import AmpcapError
    from ampcap.files import read_json

    try:
        document = read_json(path, "a plan")
    except (AmpcapError, OSError):  # an unreadable file is not a plan
        return False
    return isinstance(document, dict) and "add" in document
