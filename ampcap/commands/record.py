"""``ampcap record``: play the program through the rig at each knob setting and keep every take."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ampcap.commands.options import count, json_option, positive, seed_option
from ampcap.errors import UsageError
from ampcap.levels import FLOOR_DB, dbfs

if TYPE_CHECKING:
    import numpy as np

    from ampcap.capture.session import SessionResult
    from ampcap.schema.session import Take


class LiveMeter:
    """The live meter on stderr: progress bar, time left, peak per channel and a clip light.

    Implements :class:`ampcap.capture.session.Monitor`. The bar lives only while a take
    records, so knob prompts between takes are plain lines.
    """

    CLIP_DBFS = -0.1

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        from ampcap.console import err

        self._console = err
        self._progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[meter]}"),
            console=err,
            transient=True,
        )
        self._task: Any = None
        self._held = [FLOOR_DB, FLOOR_DB]
        self._rate = 1

    def take_started(self, take: Take, step: int, total: int, frames: int) -> None:
        self._held = [FLOOR_DB, FLOOR_DB]
        self._progress.start()
        name = take.file.split("/")[-1][: -len(".wav")]
        self._task = self._progress.add_task(f"{step}/{total} {name}", total=frames, meter="")

    def take_progress(self, frames_done: int, block: np.ndarray) -> None:
        import numpy as np

        if self._task is None or len(block) == 0:
            return
        now = []
        for channel in range(min(block.shape[1], 2)):
            peak = float(np.max(np.abs(block[:, channel])))
            level = dbfs(peak, FLOOR_DB)
            self._held[channel] = max(self._held[channel], level)
            now.append(level)
        parts = []
        for label, level, held in zip(("loop", "dev"), now, self._held, strict=False):
            colour = "red" if held >= self.CLIP_DBFS else "yellow" if held >= -6 else "green"
            parts.append(f"{label} [{colour}]{max(level, -99):5.1f}[/] (max {max(held, -99):5.1f})")
        clip = " [bold red]CLIP[/]" if max(self._held) >= self.CLIP_DBFS else ""
        self._progress.update(self._task, completed=frames_done, meter="  ".join(parts) + clip)

    def take_finished(self, take: Take) -> None:
        from rich.text import Text

        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        self._progress.stop()
        peaks = ", ".join(f"{k} {v:.1f} dBFS" for k, v in take.peaks_dbfs.items())
        colour = {"complete": "green", "partial": "yellow"}.get(take.status, "red")
        self._console.print(
            Text.assemble(
                "  ",
                (take.status, colour),
                f" {take.file}  {take.frames} frames"
                + (f"  peaks: {peaks}" if peaks else "")
                + (f"  ({take.message})" if take.message else ""),
            )
        )


def _summary(result: SessionResult) -> dict[str, Any]:
    manifest = result.manifest
    return {
        "session": str(result.folder),
        "rig": manifest.rig["name"],
        "sample_rate_hz": manifest.sample_rate_hz,
        "program": {
            "file": manifest.program.file,
            "frames": manifest.program.length,
            "sha256": manifest.program.sha256,
            "peak_dbfs": manifest.program.peak_dbfs,
        },
        "complete": all(t.status == "complete" for t in manifest.takes),
        "resumed": result.resumed,
        "stopped": result.stopped,
        "recorded": list(result.recorded),
        "skipped": list(result.skipped),
        "takes": [
            {
                "knobs": t.knobs,
                "file": t.file,
                "status": t.status,
                "frames": t.frames,
                "attempts": t.attempts,
                "underflows": t.underflows,
                "overflows": t.overflows,
                "peaks_dbfs": t.peaks_dbfs,
            }
            for t in manifest.takes
        ],
    }


def _print_table(result: SessionResult) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from ampcap.console import err

    # The take's name tells the takes apart: it is never cut or wrapped; the numbers' headers
    # wrap instead, so two knobs' settings fit an 80-column terminal.
    table = Table(
        title=f"Session {result.folder}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("take", justify="left", no_wrap=True)
    table.add_column("status", justify="left", no_wrap=True)
    for column in ("seconds", "attempts", "loopback\npeak dBFS", "device\npeak dBFS", "dropouts"):
        table.add_column(column, justify="right")
    rate = result.manifest.sample_rate_hz
    for take in result.manifest.takes:
        colour = {"complete": "green", "partial": "yellow", "pending": "dim"}.get(
            take.status, "red"
        )
        table.add_row(
            take.file.split("/")[-1].removesuffix(".wav"),
            Text(take.status, style=colour),
            f"{take.frames / rate:.1f}",
            str(take.attempts),
            f"{take.peaks_dbfs.get('loopback', float('nan')):.1f}",
            f"{take.peaks_dbfs.get('device', float('nan')):.1f}",
            str(take.underflows + take.overflows),
        )
    err.print(table)


@click.command()
@click.option(
    "--rig",
    "rig_name",
    metavar="NAME|PATH",
    help="A shipped rig (see `ampcap rigs`) or the path of your own rig .toml.",
)
@click.option(
    "--knob",
    "knobs",
    multiple=True,
    metavar="NAME",
    help="A knob to step through; repeat for several knobs (a grid).",
)
@click.option(
    "--steps",
    type=count(),
    default=None,
    help="Settings per knob for --plan grid, equally spaced over its range [5].",
)
@click.option(
    "--range",
    "ranges",
    multiple=True,
    metavar="MIN:MAX",
    help="A knob's range, one per --knob in order (or NAME=MIN:MAX); default: the "
    "rig's dial range, or 0:10.",
)
@click.option(
    "--plan",
    "plan_kind",
    type=click.Choice(["grid", "lhs"]),
    default="grid",
    show_default=True,
    help="grid: every combination; lhs: a Latin hypercube of --takes settings that "
    "includes the corners.",
)
@click.option("--takes", type=count(), default=None, help="Number of settings for --plan lhs.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="The session folder (created; running the same command again resumes it).",
)
@click.option(
    "--di",
    "di_files",
    multiple=True,
    metavar="[KIND:]FILE",
    help="A DI file (WAV/FLAC, mono) to play; repeat for several. KIND is guitar, "
    "bass or other (default: 'bass' if the name says so, else guitar). Without "
    "--di the built-in synthetic guitar and bass DI plays.",
)
@click.option(
    "--di-seconds",
    type=positive(),
    default=60.0,
    show_default=True,
    help="Length of the built-in DI, seconds (ignored with --di).",
)
@click.option(
    "--device",
    default=None,
    metavar="SUBSTRING",
    help="Use the audio device whose name contains SUBSTRING instead of the rig's.",
)
@click.option(
    "--yes",
    "assume_yes",
    is_flag=True,
    help="Never wait for a person: needed to run without a terminal. Knobs set by "
    "hand are announced and recorded at once.",
)
@click.option(
    "--retake",
    is_flag=True,
    help="Record complete takes again too (replacing them only once the new take is complete).",
)
@click.option(
    "--add-settings",
    "add_settings",
    multiple=True,
    metavar="KNOB=VALUE[,...]",
    help="Add a take at this setting to the existing session in --out (same program, "
    "rig and knobs); repeat for several.",
)
@click.option(
    "--plan-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Add the settings of a plan `ampcap plan --out` wrote to the session in --out.",
)
@seed_option
@json_option
def record(
    rig_name: str | None,
    knobs: tuple[str, ...],
    steps: int | None,
    ranges: tuple[str, ...],
    plan_kind: str,
    takes: int | None,
    out: Path | None,
    di_files: tuple[str, ...],
    di_seconds: float,
    device: str | None,
    assume_yes: bool,
    retake: bool,
    add_settings: tuple[str, ...],
    plan_file: Path | None,
    seed: int,
    as_json: bool,
) -> None:
    """Record a device at each knob setting: program.wav, session.json and one take per setting.

    Plays the program (sync markers, a reference segment, the DI, the reference again) through
    the rig: one output feeds the device, another is patched back as loopback, and each take
    records both as takes/<knob>=<value>.wav (float32, channels loopback, device). A take with
    a dropout is recorded again. Ctrl-C keeps what was recorded; running the same command again
    resumes at the first take that is not complete.

    \b
    Examples:
      ampcap record --rig virtual --knob isf --steps 5 --out captures/demo --yes
      ampcap record --rig motu --knob isf --steps 5 --out captures/ht1 --di guitar.wav --di bass:bass.wav
      ampcap record --rig jack --device system --knob isf --steps 3 --out captures/jack --yes
      ampcap record --rig jack-virtual --knob isf --steps 5 --out captures/jack-virtual --yes
      ampcap record --rig virtual --knob isf --knob gain --plan lhs --takes 12 --out captures/lhs
      ampcap record --rig my-rig.toml --knob tone --range 2:8 --steps 4 --out captures/tone
      ampcap record --rig motu --out captures/ht1 --add-settings isf=3.75 --add-settings isf=6.25
      ampcap record --rig motu --out captures/ht1 --plan-file plan.json
    """
    from ampcap.api import record_request
    from ampcap.capture.rig import list_rigs
    from ampcap.capture.session import record_session
    from ampcap.console import err
    from ampcap.outputs import folder_lock

    if rig_name is None:
        raise UsageError(
            "Missing --rig: say which rig to record through. Shipped rigs: "
            f"{', '.join(list_rigs())} (or the path of your own rig .toml). For "
            "example: ampcap record --rig virtual --knob isf --steps 5 --out "
            "captures/demo"
        )
    if out is None:
        raise UsageError(
            "Missing --out DIR: the session folder to record into, for example --out captures/demo."
        )
    if add_settings or plan_file is not None:
        _add_to_session(rig_name, out, add_settings, plan_file, device, assume_yes, retake, as_json)
        return
    request = record_request(
        rig_name, out, knobs=knobs, steps=steps, ranges=ranges, plan=plan_kind, takes=takes,
        di=di_files, di_seconds=di_seconds, device=device, seed=seed, retake=retake,
        assume_yes=assume_yes,
    )  # fmt: skip
    # Held until the command ends; a second writer of this session is refused.
    click.get_current_context().with_resource(folder_lock(out, "record"))
    err.print(f"Recording {len(request.plan)} take(s) through rig {request.rig.name} into {out}")
    _report(record_session(request, monitor=LiveMeter(), say=err.print), out, as_json)


def _report(result: SessionResult, out: Path, as_json: bool) -> None:
    """The session table (or JSON) and what to do next."""
    from ampcap.console import err, print_json

    if as_json:
        print_json(_summary(result))
    else:
        _print_table(result)
    missing = [t.file for t in result.manifest.takes if t.status != "complete"]
    if result.stopped:
        err.print(
            f"Stopped at your request with {len(missing)} take(s) to go; run the same "
            "command again to continue."
        )
    elif not missing:
        err.print(f"All {len(result.manifest.takes)} take(s) complete. Next: ampcap align {out}")


#: Options that describe a new session's program and plan (parameter: flag): added takes use
#: the session's own.
_NEW_SESSION_OPTIONS = {
    "knobs": "--knob",
    "steps": "--steps",
    "ranges": "--range",
    "plan_kind": "--plan",
    "takes": "--takes",
    "di_files": "--di",
    "di_seconds": "--di-seconds",
    "seed": "--seed",
}


def _add_to_session(
    rig_name: str,
    out: Path,
    add_settings: tuple[str, ...],
    plan_file: Path | None,
    device: str | None,
    assume_yes: bool,
    retake: bool,
    as_json: bool,
) -> None:
    """``--add-settings`` / ``--plan-file``: more takes into the session in ``out``."""
    from ampcap.api import add_takes
    from ampcap.capture.extend import parse_added_settings, settings_from_plan_file
    from ampcap.capture.rig import load_rig
    from ampcap.console import err

    ctx = click.get_current_context()
    given = [
        flag
        for name, flag in _NEW_SESSION_OPTIONS.items()
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    ]
    if given or retake:
        raise UsageError(
            f"{', '.join(given + (['--retake'] if retake else []))} cannot be used with "
            "--add-settings or --plan-file: added takes play the session's own program with "
            "its knobs. Give only --rig, --out and the settings."
        )
    settings = parse_added_settings(add_settings)
    if plan_file is not None:
        settings += settings_from_plan_file(plan_file)
    rig = load_rig(rig_name).with_device(device)
    err.print(f"Adding {len(settings)} take(s) through rig {rig.name} to {out}")
    result = add_takes(
        rig_name, out, settings, device=device, assume_yes=assume_yes, monitor=LiveMeter(),
        say=err.print,
    )  # fmt: skip
    _report(result, out, as_json)
