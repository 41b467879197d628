"""``ampcap render``: run audio through a trained or exported model, faster than real time."""

from __future__ import annotations

import math
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ampcap.commands.export import knob_value_option, parse_knob_values
from ampcap.commands.options import Number, count, json_option

if TYPE_CHECKING:  # the stage loads torch: imported inside the command, for --help's sake
    from ampcap.train.render import RenderResult


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("in_path", metavar="IN.wav", type=click.Path(path_type=Path))
@click.argument("out_path", metavar="OUT.wav", type=click.Path(path_type=Path))
@knob_value_option
@click.option(
    "--workers",
    type=count(),
    default=1,
    show_default=True,
    help="Threads sharing the chunks of the signal.",
)
@click.option(
    "--warmup",
    "warmup_seconds",
    type=Number(0),
    default=0.5,
    show_default=True,
    metavar="SECONDS",
    help="Silence run through the model before IN.wav, as a player does when it loads a model "
    "(NAM's core: 0.5 s). 0 starts IN.wav from the file's initial state.",
)
@click.option(
    "--resample/--no-resample",
    default=True,
    show_default=True,
    help="When IN.wav's rate differs from the model's, resample (and back) or refuse.",
)
@json_option
def render(
    model: Path,
    in_path: Path,
    out_path: Path,
    knob_values: tuple[str, ...],
    workers: int,
    warmup_seconds: float,
    resample: bool,
    as_json: bool,
) -> None:
    """Render a mono audio file through a model and write a float32 WAV.

    MODEL is a run folder, a checkpoint (model.pt) or an exported file (.nam, Proteus or AIDA-X
    .json). Give every knob the model still has as an input (a file exported with a knob
    folded in plays that setting only). The output has the input's sample rate and length.
    Like a player, the model first plays --warmup seconds of silence from the state the file
    starts it in, so the output matches what a player plays from its first sample.

    \b
    Examples:
      ampcap render runs/demo di.wav out.wav --knob isf=3.3
      ampcap render runs/demo/exports/demo-isf=3.3.nam di.wav out.wav
      ampcap render runs/demo/exports/demo-aidax.json di.wav out.wav --knob isf=7.5 --json
    """
    from ampcap.console import err, info, print_json, progress, warn
    from ampcap.outputs import output_lock
    from ampcap.train.render import render_file

    values = parse_knob_values(knob_values)
    # No bar when stderr is a file or a pipe: it would only leave an empty line behind.
    bar_or_none = progress(transient=True) if err.is_terminal else nullcontext()
    with output_lock(out_path, "render"), bar_or_none as bar:
        update = None
        if bar is not None:
            task = bar.add_task("rendering", total=None)

            def update(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

        result = render_file(
            model,
            in_path,
            out_path,
            values,
            resample=resample,
            workers=workers,
            on_progress=update,
            warmup_seconds=warmup_seconds,
        )
    for note in result.notices:
        warn(note)
    if as_json:
        print_json(_json_document(result))
    else:
        info(
            f"Wrote {result.out_path}: {result.audio_seconds:.1f} s rendered in "
            f"{result.wall_seconds:.2f} s, {result.real_time_factor:.0f}x real time "
            f"({result.stats.chunks} chunk(s), {result.warmup_seconds:g} s of silence first, "
            f"peak {result.peak_dbfs:+.1f} dBFS)."
        )


def _json_document(result: RenderResult) -> dict[str, Any]:
    """What ``--json`` prints: the result, with a silent output's peak as null."""
    stats = result.stats
    return {
        "out_path": str(result.out_path),
        "model_format": result.model_format,
        "knobs": result.knobs,
        "frames": result.frames,
        "sample_rate_hz": result.sample_rate_hz,
        "model_sample_rate_hz": result.model_sample_rate_hz,
        "audio_seconds": result.audio_seconds,
        "wall_seconds": result.wall_seconds,
        "real_time_factor": result.real_time_factor,
        "peak_dbfs": result.peak_dbfs if math.isfinite(result.peak_dbfs) else None,
        "warmup_seconds": result.warmup_seconds,
        "chunks": stats.chunks,
        "warmup_samples": stats.warmup_samples,
        "seam_error": stats.seam_error,
        "notices": list(result.notices),
    }
