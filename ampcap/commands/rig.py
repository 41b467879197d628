"""``ampcap rigs`` (list and show rigs) and ``ampcap rig check`` (test a rig's wiring)."""

from __future__ import annotations

import math
from typing import Any

import click

from ampcap.commands.options import json_option


def _rig_row(rig: Any) -> dict[str, Any]:
    return {
        "name": rig.name,
        "kind": rig.kind,
        "device": rig.device,
        "sample_rate_hz": rig.sample_rate_hz,
        "description": rig.description,
    }


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def rigs(ctx: click.Context, as_json: bool) -> None:
    """List the shipped rigs, or show one with `ampcap rigs show NAME`.

    A rig says how the device is wired to the audio interface: which device (a substring of
    its name), sample rate, block size, which output feeds the device, which output is
    patched back as the loopback, the inputs that record them, and the safety limits.

    \b
    Examples:
      ampcap rigs
      ampcap rigs show motu
      ampcap rigs show ./my-rig.toml --json
    """
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from ampcap.capture.rig import list_rigs, load_rig
    from ampcap.console import err, print_json

    rows = [_rig_row(load_rig(name)) for name in list_rigs()]
    if as_json:
        print_json({"rigs": rows})
        return
    table = Table(title="Shipped rigs", title_justify="left")
    for column in ("name", "kind", "device", "rate", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            row["kind"],
            row["device"],
            f"{row['sample_rate_hz']} Hz",
            row["description"],
        )
    err.print(table)
    err.print("Show one with `ampcap rigs show NAME`; use your own with `--rig path/to/rig.toml`.")


@rigs.command("show")
@click.argument("name", metavar="NAME|PATH")
@json_option
def show(name: str, as_json: bool) -> None:
    """Print a rig with every default filled in (what a session records as its rig).

    \b
    Examples:
      ampcap rigs show virtual
      ampcap rigs show ./my-rig.toml --json
    """
    from rich.table import Table

    from ampcap.capture.rig import load_rig
    from ampcap.console import err, print_json

    rig = load_rig(name)
    data = rig.to_dict()
    if as_json:
        print_json(data)
        return
    table = Table(title=f"Rig {rig.name} ({rig.source})", title_justify="left")
    table.add_column("key")
    table.add_column("value")
    for key in ("name", "description", "kind"):
        table.add_row(key, str(data[key]))
    for section in ("audio", "virtual", "safety"):
        if data.get(section):
            for key, value in data[section].items():
                table.add_row(
                    f"{section}.{key}", repr(value) if isinstance(value, str) else str(value)
                )
    for knob, settings in data["knobs"].items():
        shown = ", ".join(f"{k}={v!r}" for k, v in settings.items() if v is not None)
        table.add_row(f"knobs.{knob}", shown)
    err.print(table)


@click.group()
def rig() -> None:
    """Work with a rig: `ampcap rig check --rig NAME` tests its wiring and levels.

    \b
    Examples:
      ampcap rig check --rig motu
      ampcap rig check --rig jack --device system --json
    """


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "digital silence" if not math.isfinite(value) else f"{value:.2f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


@rig.command("check")
@click.option(
    "--rig",
    "rig_name",
    required=True,
    metavar="NAME|PATH",
    help="A shipped rig (see `ampcap rigs`) or the path of your own rig .toml.",
)
@click.option(
    "--device",
    default=None,
    metavar="SUBSTRING",
    help="Use the audio device whose name contains SUBSTRING instead of the rig's.",
)
@json_option
def check(rig_name: str, device: str | None, as_json: bool) -> None:
    """Play a short test through the loopback and the device and report what came back.

    Reports the round-trip latency, the noise floor, loopback and device levels, clipping, and
    whether the channels look swapped or unpatched, with advice. Exits with status 1 when
    something needs fixing before recording.

    \b
    Examples:
      ampcap rig check --rig motu
      ampcap rig check --rig usb2x2 --device Scarlett
    """
    from rich.table import Table
    from rich.text import Text

    from ampcap.capture.check import run_check
    from ampcap.capture.rig import load_rig
    from ampcap.console import err, print_json

    result = run_check(load_rig(rig_name), device)
    if as_json:
        print_json(result.to_dict())
    else:
        table = Table(title=f"Rig check: {result.rig} on {result.device}", title_justify="left")
        table.add_column("measurement")
        table.add_column("value", justify="right")
        for key, value in result.to_dict().items():
            if key in ("rig", "device", "advice", "ok"):
                continue
            table.add_row(key.replace("_", " "), _value(value))
        err.print(table)
        for line in result.advice:
            err.print(Text.assemble(("advice:", "yellow"), " ", line))
        if result.ok:
            err.print("Ready to record.", style="green")
        else:
            err.print("Fix the points above before recording.", style="red")
    if not result.ok:
        raise click.exceptions.Exit(1)
