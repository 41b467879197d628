"""``ampcap export``: write a trained model in a format a player loads (.nam, Proteus, AIDA-X)."""

from __future__ import annotations

import math
from pathlib import Path

import click

from ampcap.commands.options import json_option
from ampcap.errors import UsageError

# Spelled out here (not imported from the stage) so `ampcap export --help` never loads torch.
EXPORT_FORMATS = ("nam", "proteus", "aidax")
NAM_GEAR_TYPES = ("amp", "pedal", "pedal_amp", "amp_cab", "amp_pedal_cab", "preamp", "studio")
NAM_TONE_TYPES = ("clean", "overdrive", "crunch", "hi_gain", "fuzz")

knob_value_option = click.option(
    "--knob",
    "knob_values",
    multiple=True,
    metavar="NAME=VALUE",
    help="A knob setting in the knob's own range (e.g. isf=3.3); repeat for several knobs.",
)


def parse_knob_values(items: tuple[str, ...]) -> dict[str, float]:
    """``("isf=3.3", "gain=5")`` -> ``{"isf": 3.3, "gain": 5.0}``.

    Raises
    ------
    UsageError
        An item without ``=``, an empty name, a value that is not a finite number, or a knob
        given twice.
    """
    values: dict[str, float] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--knob {item!r} is not NAME=VALUE; write it like --knob isf=3.3.")
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"--knob {item!r}: {text!r} is not a number.") from None
        if not math.isfinite(value):
            raise UsageError(f"--knob {item!r}: the value must be a finite number.")
        if name in values:
            raise UsageError(f"--knob {name} is given twice; give each knob once.")
        values[name] = value
    return values


@click.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(EXPORT_FORMATS),
    required=True,
    help="nam: Neural Amp Modeler (LSTM, knobs folded in); proteus: CoreAudioML/GuitarML "
    "Proteus JSON; aidax: AIDA-X / RTNeural JSON.",
)
@knob_value_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="File to write. Default: RUN/exports/<run>[-<knobs>].nam or ...-<format>.json.",
)
@click.option("--name", help=".nam metadata: the model's name (default: the run's name).")
@click.option("--modeled-by", help=".nam metadata: who captured it.")
@click.option("--gear-make", help=".nam metadata: the device's maker.")
@click.option("--gear-model", help=".nam metadata: the device's model.")
@click.option("--gear-type", type=click.Choice(NAM_GEAR_TYPES), help=".nam metadata.")
@click.option("--tone-type", type=click.Choice(NAM_TONE_TYPES), help=".nam metadata.")
@json_option
def export(
    run: Path,
    fmt: str,
    knob_values: tuple[str, ...],
    out: Path | None,
    name: str | None,
    modeled_by: str | None,
    gear_make: str | None,
    gear_model: str | None,
    gear_type: str | None,
    tone_type: str | None,
    as_json: bool,
) -> None:
    """Write the model of a training run in a format a player loads.

    RUN is a run folder made by `ampcap train` (its model.pt, the best validation model, is
    exported) or a checkpoint file.

    \b
    .nam (Neural Amp Modeler) holds an LSTM fed audio only: every knob must be given and is
    folded into the model's bias at that setting (one file per setting). Proteus and AIDA-X
    files keep the knobs as the player's own knob inputs unless --knob folds them in.

    \b
    Examples:
      ampcap export runs/demo --format nam --knob isf=3.3
      ampcap export runs/demo --format nam --knob isf=10 --gear-type amp --tone-type hi_gain
      ampcap export runs/demo --format aidax --out ~/aidax/ht1.json
      ampcap export runs/demo --format proteus --json
    """
    from ampcap.api import export as export_run
    from ampcap.console import info, print_json, warn
    from ampcap.labels import describe

    values = parse_knob_values(knob_values)
    result = export_run(
        run, fmt, knobs=values, out=out, name=name, modeled_by=modeled_by, gear_make=gear_make,
        gear_model=gear_model, gear_type=gear_type, tone_type=tone_type,
    )  # fmt: skip
    for note in result.warnings:
        warn(note)
    if as_json:
        print_json(
            {
                "path": str(result.path),
                "format": result.format,
                "knobs": result.folded_knobs,
                "warnings": list(result.warnings),
            }
        )
    else:
        setting = describe(values)
        info(f"Wrote {result.path} ({fmt}{', ' + setting if setting else ''}).")
