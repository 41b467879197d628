"""``ampcap align``: align a capture session's takes, or a DI and its reamp made in a DAW."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ampcap.commands.options import json_option, positive
from ampcap.errors import AlignmentError, UsageError

if TYPE_CHECKING:
    from ampcap.dataset.pairs import FileAlignment


# The exit status when some takes of a session could not be aligned and the others were.
SOME_TAKES_FAILED = 3


@click.command()
@click.argument("session", required=False, type=click.Path(path_type=Path))
@click.option(
    "--input",
    "input_path",
    type=click.Path(path_type=Path),
    help="Files mode: the DI that was played (mono WAV/FLAC).",
)
@click.option(
    "--output",
    "output_path",
    type=click.Path(path_type=Path),
    help="Files mode: the device's output as recorded (mono, same sample rate).",
)
@click.option(
    "--loopback",
    "loopback_path",
    type=click.Path(path_type=Path),
    help="Files mode, optional: the DI recorded back through a cable in the same pass.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path),
    help="Files mode: where to write the aligned pair [input, target] "
    "(default: <output>.aligned.wav beside the output).",
)
@click.option(
    "--max-latency",
    "max_latency_seconds",
    type=positive(),
    default=1.0,
    show_default=True,
    help="Largest latency searched, seconds (both signs).",
)
@json_option
def align(
    session: Path | None,
    input_path: Path | None,
    output_path: Path | None,
    loopback_path: Path | None,
    out_path: Path | None,
    max_latency_seconds: float,
    as_json: bool,
) -> None:
    """Align recordings to a fraction of a sample: latency, clock drift, polarity and checks.

    \b
    Session mode: SESSION is a folder made by `ampcap record`. Each complete take's
    loopback and device channels are measured against the program's sync markers
    (latency, drift, polarity, noise floor, SNR, clipping, DC, repeatability), and an
    aligned pair is written to SESSION/aligned/<take>.wav ([input, target], on the
    program's time axis) with SESSION/aligned/alignment.json. Raw takes are never
    rewritten. Each take gets a verdict (ok / warning / failed) and what to do.

    \b
    Files mode: a DI and its recording through the device made elsewhere (a DAW
    reamp, no markers), distorting devices included. Latency, drift and polarity
    come from the part of the output that follows the input (its coherence); a
    render tail is left out and an output that stops early gives a shorter pair,
    each with a note. An unrelated, silent or noise-only file is refused.

    \b
    With --json, one JSON document goes to stdout: the per-take results for a
    session; for files {"latency_samples", "drift_ppm", "drift_error_ppm",
    "polarity", "confidence", ...} where confidence is {"measure": "coherence",
    "value", "trusted_from", "unrelated_floor", "meaning"}: the share of the output
    that follows the input linearly where the input plays (a distorting device
    keeps 0.15 or more; an unrelated file scores near the floor). drift_error_ppm
    is the drift's standard error (null with a loopback, which gives the drift
    exactly). Positive latency means the recording lags.

    \b
    Exit status: 0 every take aligned (warnings included); 2 bad input (a missing,
    damaged or edited file, or no take could be aligned); 3 some takes failed (the
    others were aligned and written); 130 Ctrl-C; 143 SIGTERM.

    \b
    Examples:
      ampcap align captures/demo
      ampcap align captures/demo --json
      ampcap align --input di.wav --output amp.wav
      ampcap align --input di.wav --output amp.wav --loopback lb.wav --out pair.wav --json
    """
    files_mode = any(p is not None for p in (input_path, output_path, loopback_path, out_path))
    if session is not None and files_mode:
        raise UsageError(
            "Give either a SESSION folder or --input/--output files, not both. Examples: "
            "`ampcap align captures/demo`, `ampcap align --input di.wav --output amp.wav`."
        )
    if files_mode:
        if input_path is None or output_path is None:
            raise UsageError(
                "Files mode needs both --input (the DI) and --output (the device's recording), "
                "e.g. `ampcap align --input di.wav --output amp.wav`."
            )
        _align_files(input_path, output_path, loopback_path, out_path, max_latency_seconds, as_json)
        return
    if session is None:
        raise UsageError(
            "Give a session folder (`ampcap align captures/demo`) or a DI and its recording "
            "(`ampcap align --input di.wav --output amp.wav`)."
        )
    _align_session(session, max_latency_seconds, as_json)


def _align_session(folder: Path, max_latency_seconds: float, as_json: bool) -> None:
    from ampcap.api import align
    from ampcap.console import err, print_json, progress
    from ampcap.report_session import print_alignment
    from ampcap.schema.session import load_session

    total = len(load_session(folder).takes)
    with progress(transient=True) as bar:
        task = bar.add_task("aligning takes", total=total)

        def advance(done: int, _total: int, stem: str) -> None:
            bar.update(task, completed=done, description=f"aligned {stem}")

        manifest = align(folder, on_progress=advance, max_latency_seconds=max_latency_seconds)
    print_alignment(manifest, f"Alignment of {folder}")
    report = folder / "aligned" / "alignment.json"
    err.print(f"Aligned pairs and {report} written. See the plots with `ampcap report {folder}`.")
    if as_json:
        print_json(
            {
                "session": str(folder),
                "alignment": str(report),
                "takes": [_take_json(take) for take in manifest.takes],
                "session_checks": manifest.session_checks,
            }
        )
    failed = [take for take in manifest.takes if take.verdict == "failed"]
    if failed and len(failed) == len(manifest.takes):
        raise AlignmentError(
            f"No take of {folder} could be aligned; each take's message above says why and "
            "what to do. Fix the rig and record again before `ampcap split`."
        )
    if failed:
        from ampcap.console import warn

        warn(
            f"{len(failed)} of {len(manifest.takes)} take(s) of {folder} could not be aligned "
            f"({', '.join(take.raw_file for take in failed)}); the others were. Record those "
            "again (`ampcap record ... --retake`), or leave them out with `ampcap split "
            "--allow-warnings`."
        )
        raise click.exceptions.Exit(SOME_TAKES_FAILED)


def _take_json(take: Any) -> dict[str, Any]:
    return {
        "knobs": take.knobs,
        "raw_file": take.raw_file,
        "file": take.file or None,
        "verdict": take.verdict,
        "messages": list(take.messages),
        **take.estimates,
    }


def _align_files(
    input_path: Path,
    output_path: Path,
    loopback_path: Path | None,
    out_path: Path | None,
    max_latency_seconds: float,
    as_json: bool,
) -> None:
    from ampcap.api import align_files
    from ampcap.console import err, print_json

    with err.status("measuring latency and drift"):
        result = align_files(
            input_path,
            output_path,
            loopback=loopback_path,
            out=out_path,
            max_latency_seconds=max_latency_seconds,
        )
    _print_file_table(result)
    if as_json:
        print_json(result.to_json())


def _print_file_table(result: FileAlignment) -> None:
    from rich.table import Table

    from ampcap.console import err

    rate = result.sample_rate_hz
    table = Table(title="Alignment", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row(
        "latency",
        f"{result.latency_samples:.3f} samples ({1000 * result.latency_samples / rate:.3f} ms)",
    )
    if result.loopback_latency_samples is not None:
        table.add_row("  of which interface", f"{result.loopback_latency_samples:.3f} samples")
        table.add_row("  of which device", f"{result.device_latency_samples:.3f} samples")
    spread = f" ± {result.drift_error_ppm:.3f}" if result.drift_error_ppm is not None else ""
    table.add_row(
        "drift",
        f"{result.drift_ppm:+.3f}{spread} ppm" + (" (corrected)" if result.drift_corrected else ""),
    )
    table.add_row("polarity", f"{result.polarity:+d}")
    table.add_row(
        "confidence",
        f"coherence {result.coherence:.3f} (trusted from {result.trusted_from:.2f})",
    )
    table.add_row("aligned pair", f"{result.out_path} ({result.pair_frames / rate:.2f} s)")
    err.print(table)
    for note in result.notes:
        err.print(f"note: {note}")
