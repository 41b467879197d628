"""The report of a training run: terminal tables, ``report.html`` and its PNGs.

``show_run_report(folder)`` prints the run's summary and its test ESR per knob setting (the
table ``make demo`` ends with) and writes ``runs/<name>/report.html`` with the training curves,
the per-setting table, waveform and spectrum overlays of the device (target) and the model on
test audio, and, for each knob setting, a few seconds of the loudest test audio to listen to:
the device, the model and their difference. Plots are PNGs made with matplotlib's Agg backend
(no display needed); clips are Ogg Vorbis files in ``report_audio/`` beside the page.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table
from rich.text import Text

from ampcap.console import err, print_json
from ampcap.errors import TrainingError
from ampcap.outputs import atomic_output
from ampcap.schema.run import BEST_MODEL, METRICS_NAME, load_metrics, load_run

REPORT_NAME = "report.html"
CURVES_PNG = "report_curves.png"
SETTINGS_PNG = "report_settings.png"
OVERLAYS_PNG = "report_overlays.png"
AUDIO_DIR = "report_audio"
# Excerpt shown in the waveform overlay, ms: a few periods of a low guitar note.
WAVEFORM_MS = 40.0


def _metrics(folder: Path) -> dict[str, Any]:
    path = folder / METRICS_NAME
    if not path.exists():
        run = load_run(folder)
        raise TrainingError(
            f"{folder} has no {METRICS_NAME}: the run stopped before its first validation, so "
            "there is no model to report on. Start it over with `ampcap train "
            f"{run.dataset_path} --out {folder}`."
        )
    return load_metrics(folder)


def _percent(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{100 * value:.2f} %"


def run_report_document(folder: str | Path) -> dict[str, Any]:
    """Everything the report shows, as one JSON-ready dictionary."""
    folder = Path(folder)
    run = load_run(folder)
    metrics = _metrics(folder)
    return {
        "run": str(folder),
        "status": run.status,
        "message": run.message,
        "model_config": run.model_config,
        "train_config": run.train_config,
        "dataset": {"path": run.dataset_path, "manifest_sha256": run.dataset_manifest_sha256},
        "summary": run.summary,
        "test": metrics.get("test"),
        "history": metrics.get("history"),
    }


def test_table(folder: str | Path) -> Table:
    """The rich table of test scores per knob setting, trained settings then held-out ones."""
    folder = Path(folder)
    test = _metrics(folder).get("test")
    table = Table(title=f"Test ESR per knob setting — {folder}", title_justify="left")
    for column in ("setting", "ESR", "MR-STFT", "loudness Δ", "audio"):
        table.add_column(column, justify="left" if column == "setting" else "right")
    if not test:
        table.add_row("(not tested yet)", "", "", "", "")
        return table
    # Settings arrive in knob order; held-out ones go last.
    rows = sorted(test["settings"], key=lambda r: r["heldout"])
    for row in rows:
        loud = row["loudness_diff_db"]
        table.add_row(
            row["setting"] + (" (held out)" if row["heldout"] else ""),
            _percent(row["esr"]),
            f"{row['mr_stft']:.3f}",
            "—" if loud is None else f"{loud:+.2f} dB",
            f"{row['seconds']:.1f} s",
        )
    table.add_section()
    table.add_row("pooled (trained settings)", _percent(test["esr"]), "", "", "")
    table.add_row("worst trained setting", _percent(test["esr_worst"]), "", "", "")
    if test.get("heldout_esr") is not None:
        table.add_row("held-out settings", _percent(test["heldout_esr"]), "", "", "")
    return table


def show_test_table(folder: str | Path) -> None:
    """Print :func:`test_table` on stderr."""
    err.print(test_table(folder))


def show_run_report(folder: str | Path, as_json: bool = False) -> None:
    """Show a run's summary and per-setting test table and (re)write its ``report.html``.

    With ``as_json`` one JSON document goes to stdout instead of the tables.
    """
    folder = Path(folder)
    report = write_run_report(folder)
    if as_json:
        document = run_report_document(folder)
        document["report"] = str(report)
        print_json(document)
        return
    run = load_run(folder)
    summary = run.summary
    config = run.model_config
    err.print(
        Text.assemble(
            (str(folder), "bold"),
            f": {config['arch'].upper()}{config['hidden_size']}"
            f"{' + skip' if config.get('skip') else ''}, status {run.status}"
            + (f" — {run.message}" if run.message else ""),
        ),
        soft_wrap=True,
    )
    if summary:
        speed = summary.get("samples_per_second")
        err.print(
            f"epochs {summary.get('epochs')}, best at epoch {summary.get('best_epoch')} "
            f"(validation ESR {_percent(summary.get('best_val_esr'))}), training time "
            f"{summary.get('train_seconds_total', 0.0) / 60:.1f} min"
            + (f", {speed / 1e6:.2f} M samples/s" if speed else ""),
            soft_wrap=True,
        )
    show_test_table(folder)
    err.print(f"report: {report}")


# --- the HTML page and its plots -------------------------------------------------------------


def _plot_curves(history: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    epochs = history.get("epochs", [])
    vals = history.get("validations", [])
    ax = axes[0]
    if epochs:
        ax.plot(
            [e["epoch"] for e in epochs], [e["train_loss"] for e in epochs], label="training loss"
        )
    if vals:
        ax.plot(
            [v["epoch"] for v in vals], [v["val_loss"] for v in vals], "o-", label="validation loss"
        )
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ESR (pre-emphasis) + DC")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax = axes[1]
    if vals:
        ax.plot(
            [v["elapsed_s"] / 60 for v in vals],
            [100 * v["val_esr"] for v in vals],
            "o-",
            label="validation ESR",
        )
    ax.set_yscale("log")
    ax.set_xlabel("training time (min)")
    ax.set_ylabel("ESR (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def _plot_settings(test: dict[str, Any], path: Path) -> None:
    """Test ESR against the knob's position (one knob), recorded settings filled and held-out
    ones hollow, so the error between recordings shows; bars per setting for several knobs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = test["settings"]
    names = sorted({name for r in rows for name in r.get("knobs", {})})
    if len(names) == 1:
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
        ordered = sorted(rows, key=lambda r: r["knobs"][names[0]])
        ax.plot([r["knobs"][names[0]] for r in ordered], [100 * r["esr"] for r in ordered],
                color="0.6", lw=1, zorder=1)  # fmt: skip
        for heldout, style in ((False, "tab:blue"), (True, "none")):
            chosen = [r for r in ordered if bool(r["heldout"]) == heldout]
            if not chosen:
                continue
            ax.scatter(
                [r["knobs"][names[0]] for r in chosen],
                [100 * r["esr"] for r in chosen],
                facecolors=style,
                edgecolors="tab:orange" if heldout else "tab:blue",
                zorder=2,
                label="held out (not trained on)" if heldout else "trained on",
            )
        ax.set_xlabel(names[0])
        ax.set_title("test ESR against the knob")
    else:
        fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 2), 3.4))
        colours = ["tab:orange" if r["heldout"] else "tab:blue" for r in rows]
        ax.bar([r["setting"] for r in rows], [100 * r["esr"] for r in rows], color=colours)
        ax.set_title("test ESR per knob setting (orange: held out)")
    if test.get("esr") is not None and math.isfinite(test["esr"]):
        ax.axhline(100 * test["esr"], color="k", lw=1, ls="--", label="pooled")
    ax.legend(fontsize=8)
    ax.set_ylabel("test ESR (%)")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def _test_outputs(folder: Path, run: Any) -> list[Any] | str:
    """The best model's output on every test piece (``PieceOutput``), or why there is none."""
    from ampcap.errors import AmpcapError
    from ampcap.schema.dataset import load_dataset
    from ampcap.train.checkpoint import load_model
    from ampcap.train.data import load_split
    from ampcap.train.evaluate import predict_split

    try:
        dataset_folder = Path(run.dataset_path)
        manifest = load_dataset(dataset_folder)
        split = load_split(dataset_folder, manifest, "test")
        model, _ = load_model(folder / BEST_MODEL)
    except AmpcapError as exc:
        return f"No overlays or audio: {exc}"
    import torch

    # A small recurrent model runs fastest on one thread; a second one only spin-waits.
    torch.set_num_threads(1)
    warmup = int(run.train_config.get("warmup_samples", 1000))
    return predict_split(model, split, warmup)


def _overlay_audio(outputs: list[Any]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """One test piece per setting: ``(label, target, model output)``."""
    from ampcap.train.data import setting_key

    chosen: dict[str, Any] = {}
    for item in outputs:
        # The first piece of each setting is the same time block at every setting.
        chosen.setdefault(setting_key(item.piece.knobs), item)
    return [(label, item.target, item.output) for label, item in chosen.items()]


def _write_clips(
    outputs: list[Any], sample_rate_hz: int, folder: Path
) -> list[tuple[str, bool, dict[str, str]]]:
    """Per setting, the loudest :data:`CLIP_SECONDS` of its test audio as three clips.

    Returns ``(setting label, held out, {"device" | "model" | "difference": relative path})``
    in the test table's order: trained settings, then held-out ones.
    """
    from ampcap.report_audio import CLIP_SECONDS, common_gain, loudest_window, write_clip
    from ampcap.train.data import setting_key

    frames = int(CLIP_SECONDS * sample_rate_hz)
    best: dict[str, tuple[float, Any, int]] = {}
    for item in outputs:
        label = setting_key(item.piece.knobs)
        start = loudest_window(item.target, frames)
        stop = min(start + frames, item.target.size)
        energy = float(np.sum(item.target[start:stop].astype(np.float64) ** 2))
        if label not in best or energy > best[label][0]:
            best[label] = (energy, item, start)
    chosen = []
    for label, (_, item, start) in best.items():
        target = item.target[start : start + frames]
        output = item.output[start : start + frames]
        chosen.append((label, bool(item.piece.heldout), target, output, target - output))
    chosen.sort(key=lambda c: c[1])
    # One gain for every clip, so that settings and the error compare by ear.
    gain = common_gain([clip for c in chosen for clip in c[2:]])
    out_dir = folder / AUDIO_DIR
    if out_dir.exists():
        for old in out_dir.glob("*.ogg"):
            old.unlink()
    clips = []
    for label, heldout, *signals in chosen:
        stem = label.replace(", ", ",").replace(" ", "_")
        paths = {}
        for kind, signal in zip(("device", "model", "difference"), signals, strict=True):
            write_clip(out_dir / f"{stem}-{kind}.ogg", signal, sample_rate_hz, gain)
            paths[kind] = f"{AUDIO_DIR}/{stem}-{kind}.ogg"
        clips.append((label, heldout, paths))
    return clips


def _plot_overlays(
    pieces: list[tuple[str, np.ndarray, np.ndarray]], sample_rate_hz: int, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.signal import welch

    fig, axes = plt.subplots(len(pieces), 2, figsize=(11, 2.6 * len(pieces)), squeeze=False)
    width = int(WAVEFORM_MS * 1e-3 * sample_rate_hz)
    for row, (label, target, output) in enumerate(pieces):
        # The loudest stretch of the piece shows the nonlinearity best.
        energy = np.convolve(target**2, np.ones(width), mode="valid")
        start = int(np.argmax(energy)) if energy.size else 0
        t_ms = 1e3 * np.arange(width) / sample_rate_hz
        ax = axes[row, 0]
        ax.plot(t_ms, target[start : start + width], label="device", lw=1.2)
        ax.plot(t_ms, output[start : start + width], "--", label="model", lw=1.0)
        ax.set_title(f"{label}: waveform ({WAVEFORM_MS:g} ms, loudest part)")
        ax.set_xlabel("ms")
        ax.legend(loc="upper right")
        ax = axes[row, 1]
        nper = min(4096, target.size)
        f, p_t = welch(target, sample_rate_hz, nperseg=nper)
        _, p_o = welch(output, sample_rate_hz, nperseg=nper)
        tiny = 1e-20
        ax.semilogx(f[1:], 10 * np.log10(p_t[1:] + tiny), label="device", lw=1.2)
        ax.semilogx(f[1:], 10 * np.log10(p_o[1:] + tiny), "--", label="model", lw=1.0)
        ax.set_title(f"{label}: spectrum (Welch)")
        ax.set_xlabel("Hz")
        ax.set_ylabel("dB")
        ax.legend(loc="lower left")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def write_run_report(folder: str | Path) -> Path:
    """Write ``report.html`` and its PNGs into the run folder; returns the page's path."""
    folder = Path(folder)
    run = load_run(folder)
    metrics = _metrics(folder)
    history = metrics.get("history") or {"epochs": [], "validations": []}
    test = metrics.get("test")
    _plot_curves(history, folder / CURVES_PNG)
    images = [("Training curves", CURVES_PNG)]
    note = ""
    clips: list[tuple[str, bool, dict[str, str]]] = []
    if test:
        _plot_settings(test, folder / SETTINGS_PNG)
        images.append(("Test ESR per knob setting", SETTINGS_PNG))
        outputs = _test_outputs(folder, run)
        if isinstance(outputs, str):
            note = outputs
        else:
            _plot_overlays(_overlay_audio(outputs), run.sample_rate_hz, folder / OVERLAYS_PNG)
            images.append(("Device vs model on test audio", OVERLAYS_PNG))
            clips = _write_clips(outputs, run.sample_rate_hz, folder)
    page = _html(folder, run, test, images, note, clips)
    from ampcap.files import atomic_write_bytes

    atomic_write_bytes(folder / REPORT_NAME, page.encode("utf-8"))
    return folder / REPORT_NAME


def _listening_table(clips: list[tuple[str, bool, dict[str, str]]]) -> str:
    """The "Listen" section: one row per setting, device / model / difference players."""
    from ampcap.report_audio import CLIP_SECONDS, audio_tag

    if not clips:
        return ""
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(label)}{' <b>(held out)</b>' if heldout else ''}</td>"
        + "".join(
            f"<td>{audio_tag(paths[kind], f'{label}: {kind}')}</td>"
            for kind in ("device", "model", "difference")
        )
        + "</tr>"
        for label, heldout, paths in clips
    )
    return (
        "<h2>Listen: device, model and their difference</h2>"
        f"<p>For each knob setting, the loudest {CLIP_SECONDS:g} s of its test audio (never "
        "heard in training), as the device played it, as the model plays it, and the "
        "difference (device minus model) at its real level: the quieter the difference, the "
        "closer the capture. Held-out settings were not trained on at all.</p>"
        "<div class='wide'><table><tr><th>setting</th><th>device</th><th>model</th>"
        f"<th>difference</th></tr>{rows}</table></div>"
    )


def _html(
    folder: Path,
    run: Any,
    test: dict[str, Any] | None,
    images: list[tuple[str, str]],
    note: str,
    clips: list[tuple[str, bool, dict[str, str]]] = (),
) -> str:
    esc = html.escape
    config = run.model_config
    rows = []
    if test:
        for r in sorted(test["settings"], key=lambda r: r["heldout"]):
            loud = r["loudness_diff_db"]
            rows.append(
                f"<tr><td>{esc(r['setting'])}{' (held out)' if r['heldout'] else ''}</td>"
                f"<td>{_percent(r['esr'])}</td><td>{r['mr_stft']:.3f}</td>"
                f"<td>{'—' if loud is None else f'{loud:+.2f} dB'}</td>"
                f"<td>{r['seconds']:.1f} s</td></tr>"
            )
        rows.append(
            f"<tr><th>pooled (trained)</th><th>{_percent(test['esr'])}</th><th colspan=3></th></tr>"
        )
        if test.get("heldout_esr") is not None:
            rows.append(
                f"<tr><th>held-out settings</th><th>{_percent(test['heldout_esr'])}</th>"
                "<th colspan=3></th></tr>"
            )
    summary = "".join(
        f"<tr><td>{esc(str(k))}</td><td>{esc(_fmt(v))}</td></tr>" for k, v in run.summary.items()
    )
    settings = "".join(
        f"<tr><td>{esc(str(k))}</td><td>{esc(_fmt(v))}</td></tr>"
        for k, v in {**config, **run.train_config}.items()
    )
    figures = "".join(
        f"<h2>{esc(title)}</h2><img src='{esc(name)}' alt='{esc(title)}'>"
        + (_listening_table(clips) if name == OVERLAYS_PNG else "")
        for title, name in images
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ampcap run {esc(folder.name)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.3em .7em;
text-align:right}}td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}
.wide{{overflow-x:auto;max-width:100%}}audio{{width:16em;max-width:100%}}
code{{overflow-wrap:anywhere}}h1{{overflow-wrap:anywhere}}</style>
</head><body>
<h1>Training run {esc(str(folder))}</h1>
<p>Status: <b>{esc(run.status)}</b>{(" — " + esc(run.message)) if run.message else ""}.
Dataset: <code>{esc(run.dataset_path)}</code> (manifest {esc(run.dataset_manifest_sha256[:12])}),
{run.sample_rate_hz} Hz. Test ESR is the plain error-to-signal ratio of the best-validation
model on unheard test audio, the first {run.train_config.get("warmup_samples", 1000)} samples
of each piece unscored (the model's warm-up).</p>
<h2>Test scores per knob setting</h2>
<div class="wide"><table><tr><th>setting</th><th>ESR</th><th>MR-STFT</th><th>loudness Δ</th>
<th>audio</th></tr>
{"".join(rows) or "<tr><td colspan=5>not tested yet</td></tr>"}</table></div>
{f"<p>{esc(note)}</p>" if note else ""}
{figures}
<h2>Summary</h2><div class="wide"><table>{summary}</table></div>
<h2>Model and training settings</h2><div class="wide"><table>{settings}</table></div>
</body></html>
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
