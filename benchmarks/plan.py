"""Capture-plan benchmark: do the settings ``ampcap plan`` suggests close the gaps between takes?

Two devices nobody here wrote, each with a knob whose effect is not linear in its position,
on 60 s of FluidSynth guitar DI (see ``thirdparty.py``), through ``lv2apply``:

* the Guitarix Big Muff (gx_muff), TONE as the knob, VOLUME 0.5;
* the Guitarix metal amp (gxmetal_amp), PREGAIN as the knob (its -20..20 dB range read 0..1),
  high-passed at 20 Hz as an AC-coupled interface input would.

Each device is recorded at 17 settings (0, 1/16 .. 1), which are all kept for testing, and at
the four other positions of 7 uniform settings (1/6, 1/3, 2/3, 5/6, rounded to 4 decimals).
Four capture plans choose the settings a model is trained on:

* 5 uniform (0, .25, .5, .75, 1), 7 uniform, 9 uniform (0, .125 .. 1);
* 5 uniform + 2 planned: ``ampcap plan --add 2`` run on a session of the 5 uniform takes.

Two tables per device:

1. **Interpolation by mixing takes** (no training, seconds): at each unrecorded test setting,
   the ESR of the best straight mix (by knob position) of the two nearest recorded settings'
   outputs. It is what a model that only blends its neighbours would get, and shows where the
   device's response to the knob bends.
2. **Trained models** (unless ``--no-train``): LSTM32 trained for ``--minutes`` per plan with
   the real commands (``ampcap split --holdout`` every setting the plan did not record, then
   ``ampcap train``); test ESR at every one of the 17 settings, the worst unrecorded one, and
   the mean.

Usage::

    python benchmarks/plan.py [--work DIR] [--minutes 5] [--jobs 2] [--devices muff amp]
                              [--no-train]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train import AMPCAP, build_plugin, percent, sh, train  # noqa: E402

GRID = tuple(k / 16 for k in range(17))
UNIFORM7 = tuple(round(k / 6, 4) for k in range(7))
KNOB = "knob"
DEVICES = {
    "muff": "Guitarix Big Muff (gx_muff), TONE",
    "amp": "Guitarix metal amp (gxmetal_amp), PREGAIN",
}


def device(key: str):
    from thirdparty import Device

    if key == "muff":
        uri = "http://guitarix.sourceforge.net/plugins/gx_muff_#_muff_"
        return Device("muff", "fuzz", uri, "TONE", 0.0, 1.0, (("VOLUME", 0.5),)), False
    uri = "http://guitarix.sourceforge.net/plugins/gxmetal_amp#metal_amp"
    return Device("metalamp", "high-gain amp", uri, "PREGAIN", -20.0, 20.0), True


def guitar_di(work: Path) -> Path:
    from thirdparty import realistic_di

    from ampcap.files import write_audio

    di = work / "di" / "guitar.wav"
    if not di.exists():
        write_audio(di, realistic_di(60.0, 48000, "guitar", seed=3), 48000)
    return di


def build(work: Path, log: Path, key: str, positions: tuple[float, ...], name: str) -> Path:
    dev, ac_coupled = device(key)
    return build_plugin(
        work, log, name, dev, positions, KNOB, di=guitar_di(work), ac_coupled=ac_coupled
    )


def planned(session: Path, log: Path) -> tuple[float, ...]:
    """The two positions ``ampcap plan --add 2`` suggests for a session, and its reasons."""
    document = json.loads(sh(AMPCAP + ["plan", str(session), "--add", "2", "--json"], log))
    for item in document["add"]:
        print(f"  plan: {item['label']}: {item['reason']}", file=sys.stderr)
    return tuple(item["knobs"][KNOB] for item in document["add"])


def outputs_by_position(session: Path) -> dict[float, np.ndarray]:
    """Each take's pre-emphasised device output over the DI, keyed by knob position."""
    from ampcap.dataset.plan import _device_outputs
    from ampcap.dataset.split_inputs import load_session_input

    loaded, _ = load_session_input(session, 0, allow_warnings=True)
    outputs = _device_outputs(loaded)
    return {t.knobs[KNOB]: y for t, y in zip(loaded.takes, outputs, strict=True)}


def mix_errors(outputs: dict[float, np.ndarray], recorded: tuple[float, ...]) -> dict[float, float]:
    """ESR at each unrecorded grid position of the straight mix of its recorded neighbours."""
    errors = {}
    ordered = sorted(recorded)
    for position in GRID:
        if any(abs(position - r) < 1e-6 for r in recorded):
            continue
        low = max(r for r in ordered if r < position)
        high = min(r for r in ordered if r > position)
        t = (position - low) / (high - low)
        mix = (1 - t) * outputs[low] + t * outputs[high]
        target = outputs[position]
        errors[position] = float(np.sum((target - mix) ** 2) / np.sum(target**2))
    return errors


def label(position: float) -> str:
    return f"{KNOB}={position:g}"


def mix_table(key: str, plans: dict[str, tuple[float, ...]], outputs: dict) -> str:
    lines = [
        f"### {DEVICES[key]}: a straight mix of the nearest recorded takes (no model)",
        "",
        "| plan | recorded | worst unrecorded | at | mean unrecorded |",
        "|---|---|---:|---|---:|",
    ]
    for name, recorded in plans.items():
        errors = mix_errors(outputs, recorded)
        worst = max(errors, key=errors.get)
        lines.append(
            f"| {name} | {', '.join(f'{r:g}' for r in sorted(recorded))} | "
            f"{percent(errors[worst])} | {worst:g} | {percent(float(np.mean(list(errors.values()))))} |"
        )
    return "\n".join(lines)


def train_table(
    key: str, plans: dict[str, tuple[float, ...]], results: dict, minutes: float
) -> str:
    header = " | ".join(f"{p:g}" for p in GRID)
    lines = [
        f"### {DEVICES[key]}: LSTM32, {minutes:g} min per plan, test ESR at the 17 settings",
        "",
        f"| plan | pooled (recorded) | worst unrecorded | mean of 17 | {header} |",
        "|---|---:|---:|---:|" + "---:|" * len(GRID),
    ]
    for name, recorded in plans.items():
        rows = {r["setting"]: r for r in results[name]["test"]["settings"]}
        esr = {p: rows[label(p)]["esr"] for p in GRID}
        unrecorded = [esr[p] for p in GRID if not any(abs(p - r) < 1e-6 for r in recorded)]
        cells = " | ".join(
            ("**" + percent(esr[p]) + "**")
            if any(abs(p - r) < 1e-6 for r in recorded)
            else percent(esr[p])
            for p in GRID
        )
        lines.append(
            f"| {name} | {percent(results[name]['test']['esr'])} | {percent(max(unrecorded))} | "
            f"{percent(float(np.mean(list(esr.values()))))} | {cells} |"
        )
    lines.append("")
    lines.append("Bold: settings the plan recorded (trained on); the rest were held out.")
    return "\n".join(lines)


def run_device_plans(work: Path, log: Path, key: str, minutes: float, jobs: int, do_train: bool):
    print(f"{key}: recording 5 uniform settings and planning 2 more", file=sys.stderr)
    five = tuple(k / 4 for k in range(5))
    planned_two = planned(build(work, log, key, five, f"{key}-5"), log)
    plans = {
        "5 uniform": five,
        "7 uniform": UNIFORM7,
        "9 uniform": tuple(k / 8 for k in range(9)),
        "5 uniform + 2 planned": five + planned_two,
    }
    extra = tuple(p for p in UNIFORM7 + planned_two if not any(abs(p - g) < 1e-6 for g in GRID))
    print(f"{key}: recording {len(GRID) + len(extra)} settings", file=sys.stderr)
    session = build(work, log, key, tuple(sorted(GRID + extra)), key)
    sections = [mix_table(key, plans, outputs_by_position(session))]
    print(sections[0], file=sys.stderr)
    if not do_train:
        return sections
    positions = sorted(GRID + extra)

    def one(item):
        name, recorded = item
        held = [p for p in positions if not any(abs(p - r) < 1e-6 for r in recorded)]
        tag = name.replace(" ", "").replace("+", "p")
        data = work / "data" / f"{key}-{tag}"
        shutil.rmtree(data, ignore_errors=True)
        args = AMPCAP + ["split", str(session), "--out", str(data), "--val", "0.15"]
        args += ["--test", "0.15", "--seed", "0"]
        for p in held:
            args += ["--holdout", label(p)]
        sh(args, log)
        out = work / "runs" / f"{key}-{tag}"
        shutil.rmtree(out, ignore_errors=True)
        print(f"{key}: training {name} ({minutes:g} min)", file=sys.stderr)
        return name, train(data, out, minutes, log)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = dict(pool.map(one, plans.items()))
    sections.append(train_table(key, plans, results, minutes))
    print(sections[-1], file=sys.stderr)
    return sections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=None, help="Working folder (default: temp).")
    parser.add_argument("--minutes", type=float, default=5.0, help="Training minutes per plan.")
    parser.add_argument("--jobs", type=int, default=1, help="Trainings at a time (one core each).")
    parser.add_argument("--devices", nargs="+", choices=sorted(DEVICES), default=sorted(DEVICES))
    parser.add_argument("--no-train", action="store_true", help="Only the table without models.")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="ampcap-plan-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    sections = []
    for key in args.devices:
        sections += run_device_plans(work, log, key, args.minutes, args.jobs, not args.no_train)
    print("\n\n".join(sections))


if __name__ == "__main__":
    main()
