"""``ampcap report``: regenerate and show the report of a capture session or a training run."""

from __future__ import annotations

from pathlib import Path

import click

from ampcap.commands.options import json_option
from ampcap.errors import UsageError


@click.command()
@click.argument("folder", type=click.Path(path_type=Path))
@json_option
def report(folder: Path, as_json: bool) -> None:
    """Show the report of a capture session or a training run, and write its HTML page.

    FOLDER is a session folder (made by `ampcap record`, with session.json) or a run folder
    (made by `ampcap train`, with run.json). The terminal gets the tables; the HTML page with
    plots is written inside FOLDER and its path printed.

    \b
    Examples:
      ampcap report captures/demo
      ampcap report runs/demo
    """
    from ampcap.outputs import folder_lock

    if (folder / "session.json").exists() or (folder / "run.json").exists():
        # The report's files are written inside FOLDER.
        click.get_current_context().with_resource(folder_lock(folder, "report"))
    if (folder / "session.json").exists():
        from ampcap.report_session import show_session_report

        show_session_report(folder, as_json=as_json)
    elif (folder / "run.json").exists():
        from ampcap.report_run import show_run_report

        show_run_report(folder, as_json=as_json)
    else:
        raise UsageError(
            f"{folder} is neither a capture session (no session.json) nor a training run "
            "(no run.json). Give the folder `ampcap record --out` or `ampcap train --out` made."
        )
