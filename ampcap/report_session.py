"""The report of a capture session: terminal tables, ``report/index.html`` and its PNGs.

``show_session_report(folder)`` reads the session and its alignment (``ampcap align`` must have
run), prints the per-take table and the warnings, and writes ``<session>/report/index.html``
with PNG plots beside it: the cross-correlation around each latency peak, program / input /
target overlaid at the start and end markers after alignment, the volume curve across knob
settings and the spectrum of the device's output per setting, and a few seconds of each take to
listen to (the same stretch of the DI at every setting, as Ogg Vorbis files in
``report/audio/``). Plots use matplotlib's Agg backend and decimated excerpts, so a report takes
a few seconds, not minutes.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from rich import box
from rich.table import Table
from rich.text import Text

from ampcap.console import err, print_json, warn
from ampcap.files import atomic_write_bytes, read_audio, sha256_file
from ampcap.labels import knob_label
from ampcap.outputs import atomic_output
from ampcap.schema.alignment import AlignedTake, AlignmentManifest, load_alignment
from ampcap.schema.session import MANIFEST_NAME, PROGRAM_NAME, SessionManifest, load_session

REPORT_DIR = "report"
REPORT_NAME = "index.html"
XCORR_PNG = "xcorr.png"
MARKERS_PNG = "markers.png"
VOLUME_PNG = "volume.png"
SPECTRA_PNG = "spectra.png"
AUDIO_DIR = "audio"
#: DI seconds searched for the loudest stretch to listen to (the same stretch for every take).
LISTEN_SEARCH_SECONDS = 30.0
#: Takes drawn in the per-take plots; a session with more shows the first ones and says so.
MAX_PLOTTED_TAKES = 12
#: Excerpt of each marker shown after alignment, in samples: a few cycles of the sweep.
MARKER_EXCERPT_SAMPLES = 96
#: DI seconds used for each spectrum (Welch average): enough for a smooth curve, fast to compute.
SPECTRUM_SECONDS = 8.0

_VERDICT_STYLE = {"ok": "green", "warning": "yellow", "failed": "bold red"}


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def alignment_table(manifest: AlignmentManifest, title: str) -> Table:
    """The per-take table shown by ``ampcap align`` and ``ampcap report`` (fits 80 columns)."""
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
    )
    for column in (
        "take",
        "verdict",
        "latency\nsamples",
        "drift\nppm",
        "pol",
        "conf\ndB",
        "SNR\ndB",
        "peak\ndBFS",
        "clips",
        "rep.\nESR",
    ):
        table.add_column(
            column, justify="left" if column in ("take", "verdict") else "right", no_wrap=True
        )
    for take in manifest.takes:
        e = take.estimates
        style = _VERDICT_STYLE.get(take.verdict, "")
        table.add_row(
            knob_label(take.knobs),
            Text(take.verdict, style=style),
            _fmt(e.get("latency_samples"), ".3f"),
            _fmt(e.get("drift_ppm"), "+.2f"),
            _fmt(e.get("polarity"), "+d"),
            _fmt(e.get("confidence_db"), ".1f"),
            _fmt(e.get("snr_db"), ".1f"),
            _fmt(e.get("peak_dbfs"), ".1f"),
            _fmt(e.get("clipped_runs"), "d"),
            _fmt(e.get("repeatability_esr"), ".4f"),
        )
    return table


def print_alignment(manifest: AlignmentManifest, title: str) -> None:
    """Print the per-take table, a legend, each take's messages and the session's checks."""
    err.print(alignment_table(manifest, title))
    err.print(
        "latency: device channel against the program at its first sample, in samples "
        "(positive: the recording lags); conf: peak-to-sidelobe ratio; rep. ESR: the two "
        "reference segments against each other."
    )
    for take in manifest.takes:
        style = _VERDICT_STYLE.get(take.verdict, "")
        for message in take.messages:
            err.print(Text.assemble((f"{knob_label(take.knobs)}:", style), " ", message))
    for message in manifest.session_checks.get("messages", []):
        err.print(Text.assemble(("session:", "yellow"), " ", message))


def session_report_document(folder: str | Path) -> dict[str, Any]:
    """Everything the report shows, JSON-ready (raises if the session is not aligned)."""
    folder = Path(folder)
    session = load_session(folder)
    alignment = load_alignment(folder)
    return {
        "session": str(folder),
        "sample_rate_hz": alignment.sample_rate_hz,
        "aligned_at": alignment.created_at,
        "stale": _is_stale(folder, alignment),
        "knobs": [
            {"name": k.name, "minimum": k.minimum, "maximum": k.maximum} for k in session.knobs
        ],
        "takes": [
            {
                "knobs": t.knobs,
                "raw_file": t.raw_file,
                "file": t.file or None,
                "verdict": t.verdict,
                "messages": list(t.messages),
                **t.estimates,
            }
            for t in alignment.takes
        ],
        "session_checks": alignment.session_checks,
    }


def _is_stale(folder: Path, alignment: AlignmentManifest) -> bool:
    return sha256_file(folder / MANIFEST_NAME) != alignment.session_sha256


def show_session_report(folder: str | Path, as_json: bool = False) -> Path:
    """Print a session's alignment report and write ``<folder>/report/index.html``.

    Parameters
    ----------
    folder : path-like
        A session folder aligned with ``ampcap align``.
    as_json : bool, default False
        Also print one JSON document on stdout with everything shown and the report's path.

    Returns
    -------
    Path
        The HTML report.

    Raises
    ------
    SessionError
        Not a session, or not aligned yet (the message says to run ``ampcap align``).
    """
    folder = Path(folder)
    document = session_report_document(folder)
    session = load_session(folder)
    alignment = load_alignment(folder)
    print_alignment(alignment, f"Session {folder}")
    if document["stale"]:
        warn(
            "session.json changed since the alignment (a take was added or recorded again). "
            f"Run `ampcap align {folder}` to bring it up to date."
        )
    with err.status("drawing the report"):
        path = write_session_report(folder, session, alignment, document)
    err.print(f"Report: {path}")
    if as_json:
        print_json({**document, "report": str(path)})
    return path


def report_session_html(folder: str | Path) -> Path:
    """Write ``<folder>/report/index.html`` of an aligned session without printing; its path."""
    folder = Path(folder)
    document = session_report_document(folder)
    return write_session_report(folder, load_session(folder), load_alignment(folder), document)


def write_session_report(
    folder: Path,
    session: SessionManifest,
    alignment: AlignmentManifest,
    document: dict[str, Any],
) -> Path:
    """Draw the plots and write ``report/index.html``; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    out = folder / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    program, rate = read_audio(folder / PROGRAM_NAME)
    program = program[:, 0]
    aligned = [t for t in alignment.takes if t.file][:MAX_PLOTTED_TAKES]
    figures = {}
    if aligned:
        _plot_correlations(folder, session, program, aligned, out / XCORR_PNG)
        _plot_markers(folder, session, program, aligned, out / MARKERS_PNG)
        _plot_volume(alignment, out / VOLUME_PNG)
        _plot_spectra(folder, session, aligned, rate, out / SPECTRA_PNG)
        figures = {
            "Cross-correlation around each latency peak": (
                XCORR_PNG,
                "Left: loopback against the program at the start marker (plain "
                "correlation); right: device against the loopback (phase-weighted, as it is "
                "measured). The dashed line is the estimated latency; a single sharp peak means "
                "a confident estimate.",
            ),
            "Start and end markers after alignment": (
                MARKERS_PNG,
                "Program, aligned input and aligned target (scaled to the "
                "program's level) over a few cycles of each sweep. Program and input lie on "
                "each other when latency and drift are right, at the end as at the start.",
            ),
            "Volume curve": (
                VOLUME_PNG,
                "RMS level of the device's output over the DI section per knob setting.",
            ),
            "Spectra per knob setting": (
                SPECTRA_PNG,
                "Average spectrum of the device's output over the DI section.",
            ),
        }
    clips = _write_clips(folder, session, program, [t for t in alignment.takes if t.file], rate)
    path = out / REPORT_NAME
    page = _html(folder, alignment, document, figures, len(aligned), clips)
    atomic_write_bytes(path, page.encode("utf-8"))
    return path


def _write_clips(
    folder: Path,
    session: SessionManifest,
    program: np.ndarray,
    takes: list[AlignedTake],
    rate: int,
) -> list[tuple[str, str]]:
    """The DI and every aligned take's device output over the same few seconds, as clips.

    The stretch is the loudest :data:`~ampcap.report_audio.CLIP_SECONDS` of the program's DI
    within its first :data:`LISTEN_SEARCH_SECONDS`, so the takes differ only by the setting.
    Returns ``(label, path relative to the report)`` pairs, the DI first.
    """
    from ampcap.report_audio import CLIP_SECONDS, common_gain, loudest_window, write_clip

    if not takes:
        return []
    di = session.program.section("di")
    searched = program[di.start : di.start + min(di.length, int(LISTEN_SEARCH_SECONDS * rate))]
    frames = min(int(CLIP_SECONDS * rate), searched.size)
    start = di.start + loudest_window(searched, frames)
    signals = [("DI (what was played)", "di", program[start : start + frames])]
    for take in takes:
        label = knob_label(take.knobs) or "take"
        signals.append((label, label, _read_frames(folder / take.file, start, frames)[:, 1]))
    gain = common_gain([signal for _, _, signal in signals])
    out_dir = folder / REPORT_DIR / AUDIO_DIR
    if out_dir.exists():
        for old in out_dir.glob("*.ogg"):
            old.unlink()
    clips = []
    for label, stem, signal in signals:
        write_clip(out_dir / f"{stem}.ogg", signal, rate, gain)
        clips.append((label, f"{AUDIO_DIR}/{stem}.ogg"))
    return clips


def _peak_curve(
    reference: np.ndarray, channel: np.ndarray, start: int, latency: float, weighting: str = "plain"
) -> tuple[np.ndarray, np.ndarray]:
    """Correlation of ``reference`` (at ``start`` on the channel's axis) near ``latency``."""
    from ampcap.dataset.delay import correlation_curve

    first = max(int(math.floor(latency)) + start - 64, 0)
    window = np.asarray(channel[first : first + len(reference) + 128], dtype=np.float64)
    offset = first - start
    lags, values = correlation_curve(reference, window, latency - offset, weighting=weighting)
    return lags + offset, values


def _plot_correlations(
    folder: Path,
    session: SessionManifest,
    program: np.ndarray,
    takes: list[AlignedTake],
    path: Path,
) -> None:
    import matplotlib.pyplot as plt

    marker = session.program.section("marker_start")
    length = min(session.program.marker.length, marker.length)
    sweep = program[marker.start : marker.start + length].astype(np.float64)
    fig, axes = plt.subplots(len(takes), 2, figsize=(9, 1.8 * len(takes) + 0.6), squeeze=False)
    for row, take in enumerate(takes):
        e = take.estimates
        raw, _ = read_audio(folder / take.raw_file, allow_silence=True)
        loop_col, dev_col = (1, 0) if e.get("channels_swapped") else (0, 1)
        drift = (e.get("drift_ppm") or 0.0) * 1e-6
        at_marker = drift * (marker.start + length / 2)
        label = knob_label(take.knobs)
        needed = (
            ("loopback_latency_samples", "device_latency_samples")
            if e.get("input") == "loopback"
            else ("latency_samples",)
        )
        if any(e.get(key) is None for key in needed):
            # An alignment written without its latencies: nothing to draw for this take.
            axes[row][0].axis("off")
            axes[row][1].axis("off")
            continue
        if e.get("input") == "loopback":
            latency = e["loopback_latency_samples"] + at_marker
            lags, values = _peak_curve(sweep, raw[:, loop_col], marker.start, latency)
            _correlation_axis(axes[row][0], lags, values, latency, f"{label}: loopback vs program")
            first = int(math.floor(latency)) + marker.start
            loop = raw[first : first + length, loop_col].astype(np.float64)
            device_latency = e["device_latency_samples"]
            lags, values = _peak_curve(loop, raw[:, dev_col], first, device_latency, "phat")
            _correlation_axis(axes[row][1], lags, values, device_latency, "device vs loopback")
        else:
            latency = e["latency_samples"] + at_marker
            lags, values = _peak_curve(sweep, raw[:, dev_col], marker.start, latency, "phat")
            _correlation_axis(
                axes[row][0], lags, values, latency, f"{label}: device vs program (no loopback)"
            )
            axes[row][1].axis("off")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def _correlation_axis(
    axis: Any, lags: np.ndarray, values: np.ndarray, latency: float, title: str
) -> None:
    axis.plot(lags, values, lw=1.2)
    axis.axvline(latency, ls="--", color="k", lw=0.8)
    axis.set_title(f"{title}: {latency:.3f} samples", fontsize=8)
    axis.set_ylabel("correlation", fontsize=7)
    axis.tick_params(labelsize=7)
    axis.grid(alpha=0.3)


def _read_frames(path: Path, start: int, frames: int) -> np.ndarray:
    with sf.SoundFile(str(path)) as handle:
        handle.seek(max(start, 0))
        return handle.read(frames, dtype="float32", always_2d=True)


def _plot_markers(
    folder: Path,
    session: SessionManifest,
    program: np.ndarray,
    takes: list[AlignedTake],
    path: Path,
) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(takes), 2, figsize=(9, 1.8 * len(takes) + 0.6), squeeze=False)
    length = session.program.marker.length
    for row, take in enumerate(takes):
        for col, name in enumerate(("marker_start", "marker_end")):
            section = session.program.section(name)
            # Three quarters into the sweep: a few kHz, where a misalignment shows clearly.
            start = section.start + int(0.75 * min(length, section.length))
            pair = _read_frames(folder / take.file, start, MARKER_EXCERPT_SAMPLES)
            reference = program[start : start + len(pair)]
            scale = np.sqrt(np.mean(reference**2)) / max(np.sqrt(np.mean(pair[:, 1] ** 2)), 1e-12)
            t = np.arange(len(pair))
            axis = axes[row][col]
            axis.plot(t, reference, color="0.6", lw=3, label="program")
            axis.plot(t, pair[:, 0], color="C0", lw=1.2, label="input")
            axis.plot(t, pair[:, 1] * scale, color="C3", lw=1, ls="--", label="target (scaled)")
            axis.set_title(f"{knob_label(take.knobs)}: {name.replace('_', ' ')}", fontsize=8)
            axis.tick_params(labelsize=7)
            axis.grid(alpha=0.3)
            if row == 0 and col == 0:
                axis.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def _plot_volume(alignment: AlignmentManifest, path: Path) -> None:
    import matplotlib.pyplot as plt

    curve = [
        p
        for p in alignment.session_checks.get("volume_curve", [])
        if p.get("output_rms_dbfs") is not None
    ]
    fig, axis = plt.subplots(figsize=(6, 3))
    knob_names = {name for p in curve for name in p["knobs"]}
    levels = [p["output_rms_dbfs"] for p in curve]
    if len(knob_names) == 1:
        name = next(iter(knob_names))
        values = [p["knobs"][name] for p in curve]
        order = np.argsort(values)
        axis.plot(np.array(values)[order], np.array(levels)[order], "o-")
        axis.set_xlabel(name)
    else:
        axis.plot(range(len(levels)), levels, "o-")
        axis.set_xticks(range(len(levels)))
        axis.set_xticklabels([knob_label(p["knobs"]) for p in curve], rotation=30, fontsize=7)
    axis.set_ylabel("output RMS (dBFS)")
    axis.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def _plot_spectra(
    folder: Path, session: SessionManifest, takes: list[AlignedTake], rate: int, path: Path
) -> None:
    import matplotlib.pyplot as plt
    from scipy import signal

    di = session.program.section("di")
    frames = min(di.length, int(SPECTRUM_SECONDS * rate))
    fig, axis = plt.subplots(figsize=(7, 3.5))
    for take in takes:
        target = _read_frames(folder / take.file, di.start, frames)[:, 1]
        freqs, power = signal.welch(target, fs=rate, nperseg=4096)
        axis.semilogx(
            freqs[1:],
            10 * np.log10(np.maximum(power[1:], 1e-20)),
            lw=1,
            label=knob_label(take.knobs),
        )
    axis.set_xlabel("frequency (Hz)")
    axis.set_ylabel("power (dB/Hz)")
    axis.set_xlim(20, rate / 2)
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def _html(
    folder: Path,
    alignment: AlignmentManifest,
    document: dict[str, Any],
    figures: dict[str, tuple[str, str]],
    plotted: int,
    clips: list[tuple[str, str]] = (),
) -> str:
    from ampcap.report_audio import CLIP_SECONDS, audio_tag

    esc = html.escape
    rows = []
    for take in alignment.takes:
        e = take.estimates
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{esc(str(cell))}</td>"
                for cell in (
                    knob_label(take.knobs),
                    take.verdict,
                    _fmt(e.get("latency_samples"), ".3f"),
                    _fmt(e.get("device_latency_samples"), ".3f"),
                    _fmt(e.get("drift_ppm"), "+.3f"),
                    _fmt(e.get("polarity"), "+d"),
                    _fmt(e.get("confidence_db"), ".1f"),
                    _fmt(e.get("snr_db"), ".1f"),
                    _fmt(e.get("noise_floor_dbfs"), ".1f"),
                    _fmt(e.get("peak_dbfs"), ".1f"),
                    _fmt(e.get("clipped_runs"), "d"),
                    _fmt(e.get("dc_offset"), "+.5f"),
                    _fmt(e.get("repeatability_esr"), ".5f"),
                    _fmt(e.get("output_rms_dbfs"), ".2f"),
                )
            )
            + "</tr>"
        )
    warnings = []
    for take in alignment.takes:
        for message in take.messages:
            warnings.append(
                f"<li class='{esc(take.verdict)}'><b>{esc(knob_label(take.knobs))}"
                f" ({esc(take.verdict)}):</b> {esc(message)}</li>"
            )
    for message in alignment.session_checks.get("messages", []):
        warnings.append(f"<li class='warning'><b>session:</b> {esc(message)}</li>")
    if document.get("stale"):
        warnings.append(
            "<li class='warning'><b>session:</b> session.json changed since the "
            f"alignment; run <code>ampcap align {esc(str(folder))}</code> again.</li>"
        )
    sections = []
    if clips:
        players = "".join(
            f"<tr><td>{esc(label)}</td><td>{audio_tag(path, label)}</td></tr>"
            for label, path in clips
        )
        sections.append(
            "<h2>Listen to the takes</h2><p>The same "
            f"{CLIP_SECONDS:g} s of the DI (its loudest stretch) at every setting, as the device "
            "played it after alignment, at the levels recorded.</p>"
            f"<div class='wide'><table><tr><th>take</th><th>audio</th></tr>{players}</table></div>"
        )
    for title, (png, caption) in figures.items():
        sections.append(
            f"<h2>{esc(title)}</h2><p>{esc(caption)}</p><img src='{esc(png)}' alt='{esc(title)}'>"
        )
    more = len([t for t in alignment.takes if t.file]) - plotted
    note = (
        f"<p>Plots show the first {plotted} aligned takes; {more} more are in the table.</p>"
        if more > 0
        else ""
    )
    checks = alignment.session_checks
    header = (
        "take",
        "verdict",
        "latency (samples)",
        "device part (samples)",
        "drift (ppm)",
        "polarity",
        "confidence (dB)",
        "SNR (dB)",
        "noise floor (dBFS)",
        "peak (dBFS)",
        "clipped runs",
        "DC offset",
        "repeatability ESR",
        "output RMS (dBFS)",
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ampcap session {esc(str(folder))}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
  color: #222; }}
.wide {{ overflow-x: auto; max-width: 100%; }}
h1, code {{ overflow-wrap: anywhere; }}
audio {{ width: 16em; max-width: 100%; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }}
td:first-child, td:nth-child(2) {{ text-align: left; }}
li.warning {{ color: #8a5a00; }} li.failed {{ color: #b00020; }} li.ok {{ color: #225522; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>Capture session {esc(str(folder))}</h1>
<p>Aligned {esc(alignment.created_at)} at {alignment.sample_rate_hz} Hz by ampcap
{esc(alignment.ampcap_version)}. {checks.get("takes_aligned", 0)} take(s) aligned,
{checks.get("takes_failed", 0)} failed. Latency spread across takes:
{checks.get("latency_spread_samples", 0)} samples. Positive latency means the recording lags;
drift in ppm (positive: the recorder's clock runs fast).</p>
<h2>Takes</h2>
<div class="wide"><table><tr>{"".join(f"<th>{esc(h)}</th>" for h in header)}</tr>
{"".join(rows)}</table></div>
<h2>Warnings and what to do</h2>
<ul>{"".join(warnings) or '<li class="ok">No warnings: every take looks healthy.</li>'}</ul>
{note}{"".join(sections)}
</body></html>
"""
