"""Training benchmark: build datasets from scratch, train on each, print Markdown tables.

1. The virtual amp: ``ampcap record --rig virtual`` (5 ISF settings x 60 s of the built-in DI,
   48 kHz), ``ampcap align``, ``ampcap split``.
2. A device nobody here wrote: the Guitarix Big Muff simulation (Debian ``guitarix-lv2``), run
   offline with ``lv2apply`` at TONE 0, .25, .5, .75, 1 (VOLUME .5) on the same program the
   virtual rig plays. Each output becomes the device channel of a take whose loopback is the
   program itself; ampcap's own alignment finds the plug-in's delay; ``ampcap split`` cuts
   42 / 9 / 9 s per setting (``--val 0.15 --test 0.15``).
3. Hard devices nobody here wrote (``--only hard``), on 60 s of FluidSynth guitar DI (see
   ``thirdparty.py``), each at five positions of its gain control from 10 % to 100 %, the
   output high-passed at 20 Hz as an AC-coupled interface input would and trimmed once per
   session so the loudest take peaks at -3 dBFS: a high-gain amp (gxmetal_amp, PREGAIN), a
   fuzz (gx_hornet, FUZZ) and a clean preamp (gx_studiopre, volume). Each is trained with the
   DAFx-19 loss pooled over the batch and with the setting-weighted loss for 15 minutes; the
   high-gain amp also with 64 units, and for 60 minutes as LSTM40 with a skip (the model the
   Proteus player runs); the clean preamp also for 60 minutes. ``--max-minutes 15`` leaves
   the 60-minute runs out. ``--jobs 2``
   runs two trainings at a time (one thread each).

Every model is trained with the real command (``ampcap train ... --minutes M --json``). For
each dataset the table gives: seconds per epoch, training samples per second, time to reach a
validation ESR of 2 %, final test ESR per setting and pooled, the ESR of the centre setting for
a model trained without it (``--holdout``, for as long as the main run unless
``--heldout-minutes`` says otherwise), and render speed (times real time, one core).
Training runs are wall-clock budgets: run this on an otherwise idle machine.

Usage::

    python benchmarks/train.py [--work DIR] [--muff-minutes 15] [--muff-short-minutes 5]
                               [--virtual-minutes 8] [--heldout-minutes M]
                               [--only virtual|muff|hard|throughput]
                               [--devices highgain fuzz clean] [--jobs 2]

``--only throughput`` prints only the table of where the training speed comes from (each case
in a fresh process: the allocator setting cannot be undone inside one).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

MUFF_URI = "http://guitarix.sourceforge.net/plugins/gx_muff_#_muff_"
MUFF_TONES = (0.0, 0.25, 0.5, 0.75, 1.0)
AMPCAP = [sys.executable, "-m", "ampcap"]


def sh(args: list[str], log: Path) -> str:
    """Run a command, append its stderr to ``log``, return its stdout; stop on failure."""
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"\n$ {' '.join(args)}\n")
        handle.flush()
        result = subprocess.run(args, stdout=subprocess.PIPE, stderr=handle, text=True)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(args)}; see {log}")
    return result.stdout


def record_virtual(session: Path, log: Path, *extra: str) -> None:
    """Five ISF settings of 60 s of the built-in DI on the virtual rig."""
    sh(
        AMPCAP
        + ["record", "--rig", "virtual", "--knob", "isf", "--steps", "5", "--di-seconds", "60"]
        + ["--out", str(session), "--yes", *extra],
        log,
    )


def build_virtual(work: Path, log: Path) -> Path:
    session = work / "captures" / "virtual"
    record_virtual(session, log)
    sh(AMPCAP + ["align", str(session)], log)
    return session


def build_muff(work: Path, log: Path) -> Path:
    """A session of the Guitarix Big Muff on the virtual rig's built-in DI (TONE as the knob)."""
    from thirdparty import Device

    muff = Device("muff", "fuzz", MUFF_URI, "TONE", 0.0, 1.0, (("VOLUME", 0.5),))
    return build_plugin(work, log, "muff", muff, MUFF_TONES, "tone")


def build_plugin(
    work: Path,
    log: Path,
    key: str,
    device,
    positions: tuple[float, ...],
    knob_name: str,
    di: Path | None = None,
    ac_coupled: bool = False,
) -> Path:
    """A session of a Guitarix plug-in, one take per position of its control, via lv2apply.

    The virtual rig lays out the program (markers, reference, DI, tail) exactly as for a real
    take; its takes are then replaced by ``[program, plug-in output]``. With ``di`` the
    program plays that file instead of the built-in DI. With ``ac_coupled`` the output is
    high-passed at 20 Hz (second order) as an AC-coupled interface input would, and trimmed
    once for the session so the loudest take peaks at -3 dBFS (a trim set once, not per take:
    the settings keep their levels).
    """
    from scipy import signal
    from thirdparty import run_device

    from ampcap.files import read_audio, sha256_array, write_audio
    from ampcap.schema.session import (
        PROGRAM_NAME,
        Knob,
        load_session,
        save_session,
        take_file_name,
    )

    if shutil.which("lv2apply") is None:
        sys.exit("lv2apply is missing: install lilv-utils and guitarix-lv2 (make bench-deps).")
    session = work / "captures" / key
    # A session left by an earlier run in this working folder holds another knob plan.
    shutil.rmtree(session, ignore_errors=True)
    extra = ["--range", "0:1", "--steps", str(len(positions))]
    if di is not None:
        extra += ["--di", str(di)]
    record_virtual(session, log, *extra)
    manifest = load_session(session)
    program, rate = read_audio(session / PROGRAM_NAME, channels=1)
    shutil.rmtree(session / "takes")
    (session / "takes").mkdir()
    outputs = [run_device(device, p, program[:, 0], rate) for p in positions]
    if ac_coupled:
        sos = signal.butter(2, 20.0, "highpass", fs=rate, output="sos")
        outputs = [signal.sosfilt(sos, y) for y in outputs]
        trim = 10 ** (-3 / 20) / max(float(np.max(np.abs(y))) for y in outputs)
        outputs = [y * trim for y in outputs]
    takes = []
    for take, position, output in zip(manifest.takes, positions, outputs, strict=True):
        pair = np.stack([program[:, 0], output[: program.shape[0]]], axis=1)
        knobs = {knob_name: position}
        write_audio(session / take_file_name(knobs), pair, rate)
        takes.append(
            replace(
                take,
                knobs=knobs,
                file=take_file_name(knobs),
                frames=pair.shape[0],
                sha256=sha256_array(pair),
            )
        )
    knob = Knob(knob_name, 0.0, 1.0)
    save_session(session, replace(manifest, knobs=(knob,), takes=tuple(takes)))
    sh(AMPCAP + ["align", str(session)], log)
    return session


def split(session: Path, out: Path, log: Path, holdout: str | None = None) -> Path:
    args = AMPCAP + [
        "split",
        str(session),
        "--out",
        str(out),
        "--val",
        "0.15",
        "--test",
        "0.15",
        "--seed",
        "0",
    ]
    if holdout:
        args += ["--holdout", holdout]
    sh(args, log)
    return out


def train(data: Path, out: Path, minutes: float, log: Path, *extra: str) -> dict:
    """``ampcap train`` (LSTM32 unless ``extra`` says otherwise) for ``minutes``; its JSON."""
    started = time.perf_counter()
    hidden = [] if "--hidden" in extra else ["--hidden", "32"]
    document = json.loads(
        sh(
            AMPCAP
            + ["train", str(data), "--out", str(out), *hidden, "--minutes", f"{minutes:g}"]
            + ["--device", "cpu", "--json", *extra],
            log,
        )
    )
    document["wall_s"] = time.perf_counter() - started
    return document


def render_speed(run: Path, data: Path) -> float:
    """Times real time of ``ampcap.train.render.render`` on one core (60 s of test input)."""
    import torch

    from ampcap.files import read_audio
    from ampcap.train.checkpoint import load_model
    from ampcap.train.render import render

    torch.set_num_threads(1)
    model, checkpoint = load_model(run / "model.pt")
    rate = checkpoint["sample_rate_hz"]
    audio, _ = read_audio(data / "test" / "input.wav")
    audio = np.resize(audio[:, 0], 60 * rate).astype(np.float32)
    knobs = [0.5] * (model.config.input_size - 1)
    render(model, audio[:rate], knobs, sample_rate_hz=rate)  # warm caches and allocator
    started = time.perf_counter()
    render(model, audio, knobs, sample_rate_hz=rate, workers=1)
    return 60.0 / (time.perf_counter() - started)


def time_to_val_esr(history: dict, threshold: float) -> float | None:
    for row in history["validations"]:
        if row["val_esr"] <= threshold:
            return row["elapsed_s"]
    return None


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def table(name: str, main: dict, short: dict | None, heldout: dict | None, render_x: float) -> str:
    epochs = main["history"]["epochs"]
    seconds = np.mean([e["seconds"] for e in epochs]) if epochs else float("nan")
    reach = time_to_val_esr(main["history"], 0.02)
    minutes = main["train_config"]["minutes"]
    lines = [
        f"### {name}: LSTM32, {minutes:g} min budget",
        "",
        "| measure | value |",
        "|---|---|",
        f"| seconds per epoch | {seconds:.1f} |",
        f"| training samples/s | {main['summary'].get('samples_per_second', 0) / 1e6:.2f} M |",
        f"| epochs trained | {main['summary']['epochs']} |",
        "| time to validation ESR 2 % | "
        + ("not reached" if reach is None else f"{reach / 60:.1f} min")
        + " |",
    ]
    for row in main["test"]["settings"]:
        lines.append(f"| test ESR {row['setting']} | {percent(row['esr'])} |")
    lines.append(f"| test ESR pooled | {percent(main['test']['esr'])} |")
    lines.append(f"| test ESR worst setting | {percent(main['test']['esr_worst'])} |")
    if short is not None:
        budget = short["train_config"]["minutes"]
        lines.append(f"| test ESR pooled, {budget:g} min run | {percent(short['test']['esr'])} |")
    if heldout is not None:
        budget = heldout["train_config"]["minutes"]
        held = [r for r in heldout["test"]["settings"] if r["heldout"]]
        trained = heldout["test"]["esr_mean"]
        ratio = held[0]["esr"] / trained if held and trained else float("nan")
        # Both readings of "close to the average": the ratio, and the difference in percentage
        # points (the DAFx-19 paper's "within 0.2 %").
        points = 100 * (held[0]["esr"] - trained) if held else float("nan")
        lines.append(
            f"| held-out centre ({held[0]['setting'] if held else '?'}), {budget:g} min run | "
            f"{percent(held[0]['esr'] if held else None)} ({ratio:.2f} x the trained settings' "
            f"mean {percent(trained)}, {points:+.2f} points) |"
        )
    lines.append(f"| render speed (one core) | {render_x:.0f} x real time |")
    return "\n".join(lines)


THROUGHPUT_CASES = (
    ("as torch ships it (2 threads, glibc defaults, warm-up with gradients)", 2, False, False),
    ("one thread", 1, False, False),
    ("one thread + allocator kept (mallopt)", 1, True, False),
    ("one thread + allocator kept + warm-up under no_grad (ampcap)", 1, True, True),
    ("two threads + allocator kept + warm-up under no_grad (--threads 2)", 2, True, True),
)


def throughput_child(threads: int, allocator: bool, no_grad_warmup: bool) -> float:
    """Training samples/s of the recipe's mini-batch (40 x 0.5 s at 48 kHz), LSTM32, one knob."""
    import torch

    from ampcap.train.loop import TrainConfig, train_segments, tune_allocator
    from ampcap.train.loss import esr_dc_loss
    from ampcap.train.model import build_model, make_config

    torch.set_num_threads(threads)
    if allocator:
        tune_allocator()
    torch.manual_seed(0)
    model = build_model(make_config("lstm", 2, 32))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    config = TrainConfig(learning_rate=1e-3)
    x = torch.randn(40, 24000, 2) * 0.1
    y = torch.tanh(x[..., :1] * 5)
    if not no_grad_warmup:
        # The same updates, but the warm-up runs with autograd on (its graph is discarded).
        def step() -> None:
            _, state = model(x[:, :1000])
            state = tuple(s.detach() for s in state)
            for start in range(1000, 24000, 2048):
                out, state = model(x[:, start : start + 2048], state)
                loss = esr_dc_loss(out, y[:, start : start + 2048])
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                state = tuple(s.detach() for s in state)
    else:

        def step() -> None:
            train_segments(model, optimizer, x, y, config)

    step()
    started = time.perf_counter()
    batches = 4
    for _ in range(batches):
        step()
    return batches * x.shape[0] * x.shape[1] / (time.perf_counter() - started)


def throughput_table() -> str:
    """Where the training speed comes from, each case in a fresh process (allocator settings
    cannot be undone inside one)."""
    lines = ["| LSTM32 training step | samples/s |", "|---|---|"]
    for label, threads, allocator, no_grad in THROUGHPUT_CASES:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--throughput-child",
                f"{threads},{int(allocator)},{int(no_grad)}",
            ],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        ).stdout
        lines.append(f"| {label} | {float(out) / 1e6:.2f} M |")
    return "\n".join(lines)


# --- hard devices -------------------------------------------------------------------------

#: Knob positions of the hard devices: 10 % to 100 % of the control's range.
HARD_POSITIONS = (0.1, 0.325, 0.55, 0.775, 1.0)
HARD_DEVICES = {
    "highgain": "Guitarix metal amp (gxmetal_amp), PREGAIN as the gain knob",
    "fuzz": "Guitarix Hornet fuzz (gx_hornet), FUZZ as the knob",
    "clean": "Guitarix studio preamp (gx_studiopre), volume (gain) as the knob",
}
#: Runs per hard device: (label, extra `ampcap train` arguments, minutes).
POOLED = ("LSTM32, loss pooled over the batch (DAFx-19)", ("--setting-balance", "0"), 15.0)
#: LSTM40 with the input added to the output is the only model the Proteus player runs; NAM
#: refuses the skip, so NAM's model is the LSTM32 row (AIDA-X plays both).
HARD_RUNS = {
    "highgain": (
        POOLED,
        ("LSTM32", (), 15.0),
        ("LSTM64", ("--hidden", "64"), 15.0),
        ("LSTM40 + skip (Proteus)", ("--hidden", "40", "--skip"), 60.0),
    ),
    "fuzz": (POOLED, ("LSTM32", (), 15.0)),
    "clean": (
        POOLED,
        ("LSTM32", (), 15.0),
        ("LSTM32", (), 60.0),
        ("LSTM64", ("--hidden", "64"), 60.0),
        ("LSTM32, batches of 10", ("--batch-size", "10"), 15.0),
        ("LSTM64, batches of 10", ("--hidden", "64", "--batch-size", "10"), 60.0),
    ),
}
#: Minutes at which the validation curve is read.
CURVE_MINUTES = (2, 5, 10, 15, 30, 60)


def build_hard(work: Path, log: Path, key: str) -> Path:
    """A session of one hard device at five gains on 60 s of FluidSynth guitar DI."""
    from thirdparty import DEVICES, Device, realistic_di

    from ampcap.files import write_audio

    di = work / "di" / "guitar.wav"
    if not di.exists():
        write_audio(di, realistic_di(60.0, 48000, "guitar", seed=3), 48000)
    uri = "http://guitarix.sourceforge.net/plugins/gxmetal_amp#metal_amp"
    device = {
        "highgain": Device("metalamp", "high-gain amp", uri, "PREGAIN", -20.0, 20.0),
        "fuzz": DEVICES["hornet"],
        "clean": DEVICES["studiopre"],
    }[key]
    # The knob reads 0-1 over the control's range; positions 0.1-1 map onto it.
    full = replace(device, low=device.value(0.0), high=device.value(1.0))
    return build_plugin(work, log, key, full, HARD_POSITIONS, "gain", di=di, ac_coupled=True)


def hard_table(key: str, runs: list[tuple[str, float, dict]]) -> str:
    settings = [row["setting"] for row in runs[0][2]["test"]["settings"]]
    lines = [
        f"### {HARD_DEVICES[key]}: 5 settings x 60 s of guitar DI (42 / 9 / 9 s), 48 kHz",
        "",
        "| model | budget | epochs | test ESR pooled | "
        + " | ".join(settings)
        + " | worst | lowest val ESR by 2 / 5 / 10 / 15 / 30 / 60 min |",
        "|---|---:|---:|---:|" + "---:|" * len(settings) + "---:|---|",
    ]
    for label, minutes, document in runs:
        test = document["test"]
        curve = []
        for at in CURVE_MINUTES:
            seen = [
                v["val_esr"]
                for v in document["history"]["validations"]
                if v["elapsed_s"] <= 60 * at
            ]
            curve.append(percent(min(seen)) if seen and at <= minutes else "—")
        lines.append(
            f"| {label} | {minutes:g} min | {document['summary']['epochs']} | "
            f"{percent(test['esr'])} | "
            + " | ".join(percent(row["esr"]) for row in test["settings"])
            + f" | {percent(test['esr_worst'])} | {' / '.join(curve)} |"
        )
    return "\n".join(lines)


def run_hard(
    work: Path, log: Path, keys: list[str], jobs: int, max_minutes: float = math.inf
) -> list[str]:
    """Build each hard device's dataset, then run its training plans ``jobs`` at a time
    (those of at most ``max_minutes``)."""
    from concurrent.futures import ThreadPoolExecutor

    datasets = {}
    for key in keys:
        session = build_hard(work, log, key)
        datasets[key] = split(session, work / "data" / key, log)
    plans = [
        (key, index, label, extra, minutes)
        for key in keys
        for index, (label, extra, minutes) in enumerate(HARD_RUNS[key])
        if minutes <= max_minutes
    ]
    # Longest first, so the pool does not end with one long run alone.
    plans.sort(key=lambda plan: -plan[4])

    def one(plan):
        key, index, label, extra, minutes = plan
        print(f"{key}: {label}, {minutes:g} min", file=sys.stderr)
        out = work / "runs" / f"{key}-{index}"
        shutil.rmtree(out, ignore_errors=True)
        document = train(datasets[key], out, minutes, log, *extra)
        document["history"] = json.loads((out / "metrics.json").read_text())["history"]
        return plan, document

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(one, plans))
    sections = []
    for key in keys:
        runs = sorted(
            ((p[1], p[2], p[4], d) for p, d in results if p[0] == key), key=lambda r: r[0]
        )
        sections.append(hard_table(key, [(label, m, d) for _, label, m, d in runs]))
    return sections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=None, help="Working folder (default: temp).")
    parser.add_argument("--muff-minutes", type=float, default=15.0)
    parser.add_argument("--muff-short-minutes", type=float, default=5.0)
    parser.add_argument("--virtual-minutes", type=float, default=8.0)
    parser.add_argument(
        "--heldout-minutes",
        type=float,
        default=None,
        help="Training budget without the centre setting (default: the main run's).",
    )
    parser.add_argument("--only", choices=("virtual", "muff", "hard", "throughput"), default=None)
    parser.add_argument(
        "--devices",
        nargs="+",
        choices=tuple(HARD_DEVICES),
        default=list(HARD_DEVICES),
        help="Hard devices to train (default: all).",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="Training runs at a time for the hard devices (one thread each).",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=math.inf,
        help="Skip the hard devices' runs longer than this (default: run them all).",
    )
    parser.add_argument("--throughput-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.throughput_child:
        threads, allocator, no_grad = (int(v) for v in args.throughput_child.split(","))
        print(throughput_child(threads, bool(allocator), bool(no_grad)))
        return
    if args.only == "throughput":
        print(throughput_table())
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="ampcap-bench-train-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "benchmark.log"
    print(
        f"working in {work} (commands' output: {log}); load average {os.getloadavg()}",
        file=sys.stderr,
    )
    sections = []
    if args.only in (None, "hard"):
        sections += run_hard(work, log, args.devices, args.jobs, args.max_minutes)
        for section in sections:
            print(section + "\n", file=sys.stderr)
    plans = []
    if args.only in (None, "virtual"):
        plans.append(
            (
                "Virtual amp (5 ISF settings x 60 s, 48 kHz)",
                build_virtual,
                "isf=5",
                args.virtual_minutes,
                None,
            )
        )
    if args.only in (None, "muff"):
        plans.append(
            (
                "Guitarix Big Muff (5 TONE settings x 60 s, 48 kHz)",
                build_muff,
                "tone=0.5",
                args.muff_minutes,
                args.muff_short_minutes,
            )
        )
    for name, build, centre, minutes, short_minutes in plans:
        key = "virtual" if build is build_virtual else "muff"
        session = build(work, log)
        data = split(session, work / "data" / key, log)
        held_data = split(session, work / "data" / f"{key}-heldout", log, holdout=centre)
        print(f"{name}: training {minutes:g} min", file=sys.stderr)
        main_run = train(data, work / "runs" / key, minutes, log)
        short_run = None
        if short_minutes:
            print(f"{name}: training {short_minutes:g} min", file=sys.stderr)
            short_run = train(data, work / "runs" / f"{key}-short", short_minutes, log)
        held_minutes = args.heldout_minutes or minutes
        print(f"{name}: training {held_minutes:g} min without {centre}", file=sys.stderr)
        held_run = train(held_data, work / "runs" / f"{key}-heldout", held_minutes, log)
        speed = render_speed(work / "runs" / key, data)
        sections.append(table(name, main_run, short_run, held_run, speed))
        print(sections[-1] + "\n", file=sys.stderr)
    sections.append(throughput_table())
    print(f"Load average at the end: {os.getloadavg()}\n", file=sys.stderr)
    print("\n\n".join(sections))


if __name__ == "__main__":
    main()
