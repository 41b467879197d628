"""``ampcap plan``: the knob settings worth recording next in a capture session."""

from __future__ import annotations

from pathlib import Path

import click

from ampcap.commands.options import count, json_option


@click.command()
@click.argument("session", type=click.Path(path_type=Path))
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
def plan(session: Path, add: int, out: Path | None, as_json: bool) -> None:
    """Suggest the knob settings worth recording next in SESSION (recorded and aligned).

    Every take of a session plays the same DI, so ampcap measures how much the device's output
    changes between neighbouring recorded settings (an ESR, pre-emphasised as in training). A
    model interpolates well where that change is small; the largest change is the gap to fill,
    and its middle the setting to record. Each suggestion comes with the reason in one line.

    \b
    Examples:
      ampcap plan captures/muff --add 2
      ampcap plan captures/muff --add 2 --out plan.json
      ampcap record --rig motu --out captures/muff --plan-file plan.json
    """
    from ampcap.console import err, print_json, progress
    from ampcap.dataset.plan import plan_session
    from ampcap.errors import UsageError
    from ampcap.files import atomic_write_json, read_json
    from ampcap.labels import knob_label
    from ampcap.outputs import probe_folder

    if out is not None:
        if out.exists() and "add" not in _json_or_empty(read_json, out):
            raise UsageError(
                f"--out {out} exists and is not a plan ampcap wrote; give a new file name. "
                "Nothing was changed."
            )
        probe_folder(out.parent, shown=out)
    with progress(transient=True) as bar:
        task = bar.add_task("reading takes", total=None)
        result = plan_session(
            session, add, on_take=lambda done, total: bar.update(task, completed=done, total=total)
        )
    document = result.to_dict()
    if out is not None:
        atomic_write_json(out, document)
    if as_json:
        print_json(document)
        return
    err.print(f"{len(result.recorded)} setting(s) recorded in {session}.")
    for step in sorted(result.steps, key=lambda s: -s.esr):
        low, high = step.low[step.knob], step.high[step.knob]
        err.print(f"  {step.knob} {low:g} -> {high:g}: the output changes {step.esr:.2%} (ESR)")
    err.print(f"Record next ({len(result.suggestions)}):")
    for suggestion in result.suggestions:
        err.print(f"  {knob_label(suggestion.knobs)}: {suggestion.reason}", soft_wrap=True)
    if out is not None:
        err.print(f"plan: {out} (record it with `ampcap record --out {session} --plan-file {out}`)")


def _json_or_empty(read_json, path: Path) -> dict:
    from ampcap.errors import AmpcapError

    try:
        document = read_json(path, "a plan")
    except (AmpcapError, OSError):  # an unreadable file is not a plan
        return {}
    return document if isinstance(document, dict) else {}
