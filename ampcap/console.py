"""The one console: diagnostics, tables and progress go to stderr; stdout is for results only.

Messages are plain text: the console never reads ``[...]`` in them as rich markup, so a file
name or an option in brackets is printed as it is. Colour comes from ``style=`` or
:class:`rich.text.Text`, never from markup inside a message.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

err = Console(stderr=True, highlight=False, markup=False)


def progress(*extra_columns: Any, transient: bool = False) -> Progress:
    """A rich progress bar on stderr with elapsed and remaining time.

    Parameters
    ----------
    *extra_columns
        More rich columns shown after the standard ones (for example a loss readout).
    transient : bool, default False
        Remove the bar when it finishes.
    """
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        *extra_columns,
        console=err,
        transient=transient,
    )


def print_json(document: Any) -> None:
    """Print one JSON document on stdout: the only thing a ``--json`` command writes there."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, allow_nan=False) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    """Print a plain-text message on stderr."""
    err.print(message)


def warn(message: str) -> None:
    """Print a plain-text warning on stderr."""
    err.print(Text.assemble(("warning:", "yellow"), " ", message))
