"""Options shared by several commands, defined once."""

from __future__ import annotations

import click

json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document with the results on stdout (progress stays on stderr).",
)
seed_option = click.option(
    "--seed", type=int, default=0, show_default=True, help="Random seed; same seed, same result."
)
