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
* 5 uniform + 2 planned: ``ampcap plan --add 2`` run on a session of the 5 uniform takes;
* 5 uniform + 2 from models: ``ampcap plan R0 R1 R2 --add 2`` on three models of the 5 uniform
  settings trained with seeds 0, 1 and 2 (where they disagree most).

Two tables per device:

1. **Interpolation by mixing takes** (no training, seconds): at each unrecorded test setting,
   the ESR of the best straight mix (by knob position) of the two nearest recorded settings'
   outputs. It is what a model that only blends its neighbours would get, and shows where the
   device's response to the knob bends.
2. **Trained models** (unless ``--no-train``): LSTM32 trained for ``--minutes`` per plan with
   the real commands (``ampcap split --holdout`` every setting the plan did not record, then
   ``ampcap train``); test ESR at every one of the 17 settings, the worst unrecorded one, and
   the mean.
3. **Does disagreement find the error?** The three 5-uniform models' disagreement at the 12
   unrecorded settings against the seed-0 model's test ESR there: Spearman's rank correlation,
   and whether the two largest disagreements sit where the two largest errors do.

Runs already trained in ``--work`` (same plan, seed and minutes) are reused.

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


def planned(folders: list[Path], log: Path) -> dict:
    """``ampcap plan FOLDERS --add 2 --json`` (a session, or runs); its reasons printed."""
    document = json.loads(sh(AMPCAP + ["plan", *map(str, folders), "--add", "2", "--json"], log))
    for item in document["add"]:
        print(f"  plan: {item['label']}: {item['reason']}", file=sys.stderr)
    return document


def positions(document: dict) -> tuple[float, ...]:
    return tuple(item["knobs"][KNOB] for item in document["add"])


def trained(data: Path, out: Path, minutes: float, log: Path, *extra: str) -> dict:
    """``ampcap train`` unless ``out`` holds a finished run of the same minutes and seed."""
    marker = out / "bench.json"
    key = {"minutes": minutes, "extra": list(extra)}
    if marker.exists() and json.loads(marker.read_text())["key"] == key:
        return json.loads(marker.read_text())["document"]
    if not extra and (out / "run.json").exists():  # a seed-0 run this benchmark made earlier
        run = json.loads((out / "run.json").read_text())
        config = run["train_config"]
        if (
            config.get("minutes") == minutes
            and config.get("seed") == 0
            and run["summary"].get("test_esr") is not None
        ):
            return json.loads(sh(AMPCAP + ["report", str(out), "--json"], log))
    shutil.rmtree(out, ignore_errors=True)
    document = train(data, out, minutes, log, *extra)
    marker.write_text(json.dumps({"key": key, "document": document}))
    return document


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def outputs_by_position(session: Path) -> dict[float, np.ndarray]:
    """Each take's pre-emphasised device output over the DI, keyed by knob position."""
    from ampcap.dataset.plan import device_outputs
    from ampcap.dataset.split_inputs import load_session_input

    loaded, _ = load_session_input(session, 0, allow_warnings=True)
    outputs = device_outputs(loaded)
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
    planned_two = positions(planned([build(work, log, key, five, f"{key}-5")], log))
    plans = {
        "5 uniform": five,
        "7 uniform": UNIFORM7,
        "9 uniform": tuple(k / 8 for k in range(9)),
        "5 uniform + 2 planned": five + planned_two,
    }
    extra = tuple(p for p in UNIFORM7 + planned_two if not any(abs(p - g) < 1e-6 for g in GRID))
    session = work / "captures" / key
    everything = tuple(sorted(GRID + extra))
    if not _holds(session, everything):
        print(f"{key}: recording {len(everything)} settings", file=sys.stderr)
        build(work, log, key, everything, key)
    outputs = outputs_by_position(session)
    if not do_train:
        return [mix_table(key, plans, outputs)]

    def dataset(name: str, recorded: tuple[float, ...]) -> Path:
        """The plan's dataset: every setting it did not record held out (made once)."""
        data = work / "data" / f"{key}-{name.replace(' ', '').replace('+', 'p')}"
        if not (data / "manifest.json").exists():
            held = [p for p in everything if not any(abs(p - r) < 1e-6 for r in recorded)]
            args = AMPCAP + ["split", str(session), "--out", str(data), "--val", "0.15"]
            args += ["--test", "0.15", "--seed", "0"]
            for p in held:
                args += ["--holdout", label(p)]
            sh(args, log)
        return data

    def one(item):
        name, recorded, seed = item
        tag = name.replace(" ", "").replace("+", "p") + (f"-s{seed}" if seed else "")
        data = dataset(name, recorded)
        out = work / "runs" / f"{key}-{tag}"
        print(f"{key}: training {name}, seed {seed} ({minutes:g} min)", file=sys.stderr)
        seed_args = ("--seed", str(seed)) if seed else ()
        return (name, seed), trained(data, out, minutes, log, *seed_args), out

    # The three seeds of the 5 uniform plan share one dataset: split before the pool starts.
    for name, recorded in plans.items():
        dataset(name, recorded)
    first = [(n, r, 0) for n, r in plans.items()] + [("5 uniform", five, s) for s in (1, 2)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        done = list(pool.map(one, first))
    results = {k: d for k, d, _ in done}
    seeds = [out for (n, _), _, out in sorted(done, key=lambda r: r[0][1]) if n == "5 uniform"]
    by_models = planned(seeds, log)
    plans["5 uniform + 2 from models"] = five + positions(by_models)
    name = "5 uniform + 2 from models"
    if not _holds(session, tuple(sorted(set(everything) | set(plans[name])))):
        sys.exit(f"{key}: the models' plan left the recorded grid: {plans[name]}")
    (_, document, _) = one((name, plans[name], 0))
    results[(name, 0)] = document
    sections = [mix_table(key, plans, outputs)]
    sections.append(train_table(key, plans, {n: results[(n, 0)] for n in plans}, minutes))
    sections.append(disagreement_table(key, by_models, results[("5 uniform", 0)]))
    for section in sections:
        print(section, file=sys.stderr)
    return sections


def _holds(session: Path, wanted: tuple[float, ...]) -> bool:
    """Whether ``session`` already holds aligned takes at exactly ``wanted``."""
    from ampcap.schema.session import load_session

    try:
        held = sorted(t.knobs[KNOB] for t in load_session(session).takes)
    except Exception:  # no session yet, or another knob plan
        return False
    return (session / "aligned" / "alignment.json").exists() and np.allclose(held, sorted(wanted))


def disagreement_table(key: str, document: dict, seed0: dict) -> str:
    rows = {r["setting"]: r["esr"] for r in seed0["test"]["settings"]}
    points = [(c["knobs"][KNOB], c["disagreement_esr"]) for c in document["candidates"]]
    errors = [rows[label(p)] for p, _ in points]
    agree = [d for _, d in points]
    ranked = sorted(zip((p for p, _ in points), errors, strict=True), key=lambda x: -x[1])
    top_error = {p for p, _ in ranked[:2]}
    top_agree = {p for p, _ in sorted(points, key=lambda x: -x[1])[:2]}
    lines = [
        f"### {DEVICES[key]}: where three 5-uniform models (seeds 0-2) disagree, against the "
        "seed-0 model's error",
        "",
        "| setting | disagreement (ESR) | test ESR, seed 0 |",
        "|---|---:|---:|",
    ]
    for (p, d), e in zip(points, errors, strict=True):
        lines.append(f"| {p:g} | {percent(d)} | {percent(e)} |")
    lines += [
        "",
        f"At the trained settings the models disagree {percent(document['trained_disagreement_esr'])}. "
        f"Spearman's rank correlation between disagreement and error over the "
        f"{len(points)} unrecorded settings: {spearman(agree, errors):+.2f}; the two largest "
        f"disagreements ({', '.join(f'{p:g}' for p in sorted(top_agree))}) against the two "
        f"largest errors ({', '.join(f'{p:g}' for p in sorted(top_error))}).",
    ]
    return "\n".join(lines)


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
