"""Where trained models are least sure: the settings worth recording next, from runs.

Models trained on the same dataset with different seeds agree where the recordings pin the
device down and drift apart between them, where each model interpolates its own way. Their
disagreement at a setting is measured on the dataset's validation input, rendered by every
model with the knobs at that setting:

    disagreement(k) = mean over model pairs (i, j) of
                      sum((y_i - y_j)^2) / ((sum(y_i^2) + sum(y_j^2)) / 2)

an ESR between the models' outputs. It is measured at the middle and the quarter points of
each gap between neighbouring trained settings (along one knob, the others held), and at the
trained settings themselves for scale. The suggestions are the candidates with the largest
disagreement, no two within half a gap of each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from ampcap.errors import DatasetError, UsageError
from ampcap.files import read_audio
from ampcap.labels import knob_label
from ampcap.schema.dataset import DatasetManifest, load_dataset
from ampcap.schema.run import BEST_MODEL, load_run
from ampcap.settings import runs_along_knobs, same_setting

#: Seconds of validation input each model renders per setting.
DEFAULT_SECONDS = 10.0
#: Where in a gap the candidates sit (share of the gap from its low end).
CANDIDATE_POINTS = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class Candidate:
    """A setting inside a gap and how much the models disagree there (ESR)."""

    knobs: dict[str, float]
    knob: str
    between: tuple[dict[str, float], dict[str, float]]
    point: float
    disagreement_esr: float


@dataclass(frozen=True)
class RunPlan:
    """The runs compared, their disagreement at trained settings and in the gaps, and the
    settings suggested (largest disagreement first)."""

    runs: tuple[Path, ...]
    knobs: tuple
    trained: tuple[dict[str, float], ...]
    trained_disagreement_esr: float
    candidates: tuple[Candidate, ...]
    suggestions: tuple[Candidate, ...]

    def to_dict(self) -> dict:
        """The plan as ``ampcap plan RUN... --json`` prints it; ``add`` as ``--plan-file`` reads."""

        def item(c: Candidate) -> dict:
            return {
                "knobs": c.knobs,
                "label": knob_label(c.knobs),
                "between": [c.between[0], c.between[1]],
                "disagreement_esr": c.disagreement_esr,
                "reason": self.reason(c),
            }

        return {
            "runs": [str(r) for r in self.runs],
            "knobs": [
                {"name": k.name, "minimum": k.minimum, "maximum": k.maximum} for k in self.knobs
            ],
            "recorded": [dict(s) for s in self.trained],
            "trained_disagreement_esr": self.trained_disagreement_esr,
            "candidates": [item(c) for c in self.candidates],
            "add": [item(c) for c in self.suggestions],
        }

    def reason(self, candidate: Candidate) -> str:
        low, high = (f"{candidate.knob}={s[candidate.knob]:g}" for s in candidate.between)
        return (
            f"the {len(self.runs)} models disagree {candidate.disagreement_esr:.2%} (ESR) here, "
            f"between {low} and {high}, against {self.trained_disagreement_esr:.2%} at the "
            "trained settings"
        )


def esr_between(a: np.ndarray, b: np.ndarray) -> float:
    """ESR between two outputs, normalised by their mean energy so it is symmetric."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    energy = 0.5 * (float(np.dot(a, a)) + float(np.dot(b, b)))
    difference = a - b
    return float(np.dot(difference, difference)) / energy if energy > 0 else 0.0


def _load_runs(folders: Sequence[Path]) -> tuple[list, DatasetManifest, Path]:
    """The runs' manifests and their shared dataset; refuses runs of different datasets."""
    if len(folders) < 2:
        raise UsageError(
            "A plan from trained models compares two or more runs of the same dataset, trained "
            "with different --seed (for example `ampcap train data/x --out runs/s1 --seed 1`). "
            "Give them all: `ampcap plan runs/s0 runs/s1 runs/s2 --add 2`. With one folder, give "
            "the capture session instead."
        )
    runs = [load_run(f) for f in folders]
    hashes = {r.dataset_manifest_sha256 for r in runs}
    if len(hashes) > 1:
        raise DatasetError(
            f"The runs {', '.join(map(str, folders))} were trained on different datasets; "
            "models disagree for that reason alone. Give runs of one dataset."
        )
    dataset = Path(runs[0].dataset_path)
    if not (dataset / "manifest.json").exists():
        raise DatasetError(
            f"The dataset {dataset} the runs were trained on is not there (the path is as given "
            "to `ampcap train`, from the folder it ran in). Run `ampcap plan` from that folder."
        )
    return runs, load_dataset(dataset), dataset


def _validation_audio(dataset: Path, manifest: DatasetManifest, seconds: float) -> np.ndarray:
    """Up to ``seconds`` of the validation input's audio, the pieces of its first setting."""
    audio, _ = read_audio(dataset / "val" / "input.wav")
    first = manifest.pieces_of("val")[0].knobs
    pieces = [p for p in manifest.pieces_of("val") if same_setting(p.knobs, first)]
    parts, total = [], int(seconds * manifest.sample_rate_hz)
    for piece in pieces:
        parts.append(audio[piece.offset : piece.offset + piece.length, 0])
        if sum(len(p) for p in parts) >= total:
            break
    return np.concatenate(parts)[:total].astype(np.float32)


def disagreement_at(
    models: Sequence,
    audio: np.ndarray,
    knobs: Sequence,
    setting: dict[str, float],
    sample_rate_hz: int,
) -> float:
    """Mean pairwise ESR between the models' renders of ``audio`` at ``setting``."""
    from ampcap.train.render import render

    normalised = [k.normalise(setting[k.name]) for k in knobs]
    outputs = [render(m.model, audio, normalised, sample_rate_hz=sample_rate_hz) for m in models]
    return float(np.mean([esr_between(a, b) for a, b in combinations(outputs, 2)]))


def plan_from_runs(
    folders: Sequence[str | Path],
    add: int,
    *,
    seconds: float = DEFAULT_SECONDS,
    on_step: Callable[[int, int], None] | None = None,
) -> RunPlan:
    """Suggest ``add`` settings where models trained with different seeds disagree most.

    Parameters
    ----------
    folders : sequence of str or Path
        Two or more run folders (``ampcap train --out``) of the same dataset.
    add : int
        How many settings to suggest, 1 or more.
    seconds : float, default 10
        Seconds of validation input each model renders per setting.
    on_step : callable, optional
        ``on_step(done, total)`` after each setting is measured.

    Raises
    ------
    UsageError
        Fewer than two runs, or ``add`` below 1.
    DatasetError
        Runs of different datasets, a dataset that is gone, or no gap between trained settings.
    """
    from ampcap.train.render import load_any_model

    if add < 1:
        raise UsageError(f"The number of settings to suggest must be 1 or more, not {add}.")
    paths = [Path(f) for f in folders]
    _, manifest, dataset = _load_runs(paths)
    models = [load_any_model(p / BEST_MODEL) for p in paths]
    trained = [
        s for s in manifest.settings if not any(same_setting(s, h) for h in manifest.heldout)
    ]
    gaps = _gaps(trained, [k.name for k in manifest.knobs])
    if not gaps:
        raise DatasetError(
            f"The runs were trained on {len(trained)} setting(s) with no two differing in one "
            "knob only, so there is no gap between trained settings to look into."
        )
    audio = _validation_audio(dataset, manifest, seconds)
    rate = manifest.sample_rate_hz
    steps = len(trained) + len(gaps) * len(CANDIDATE_POINTS)
    done = 0

    def measure(setting: dict[str, float]) -> float:
        nonlocal done
        value = disagreement_at(models, audio, manifest.knobs, setting, rate)
        done += 1
        if on_step:
            on_step(done, steps)
        return value

    baseline = float(np.mean([measure(s) for s in trained]))
    candidates = []
    for knob, low, high in gaps:
        for point in CANDIDATE_POINTS:
            setting = {**low, knob: round(low[knob] + point * (high[knob] - low[knob]), 6)}
            candidates.append(Candidate(setting, knob, (low, high), point, measure(setting)))
    suggestions = _choose(candidates, add)
    if len(suggestions) < add:
        raise DatasetError(
            f"Only {len(suggestions)} of the {add} settings asked for fit between the "
            f"{len(trained)} trained settings at half a gap apart. Ask for fewer."
        )
    return RunPlan(
        runs=tuple(paths),
        knobs=manifest.knobs,
        trained=tuple(trained),
        trained_disagreement_esr=baseline,
        candidates=tuple(candidates),
        suggestions=tuple(suggestions),
    )


def _gaps(
    trained: Sequence[dict[str, float]], names: Sequence[str]
) -> list[tuple[str, dict[str, float], dict[str, float]]]:
    """Every pair of neighbouring trained settings: ``(knob, low, high)``."""
    return [
        (knob, trained[i], trained[j])
        for knob, order in runs_along_knobs(trained, names)
        for i, j in zip(order, order[1:], strict=False)
    ]


def _choose(candidates: Sequence[Candidate], add: int) -> list[Candidate]:
    """The ``add`` largest disagreements, no two within half a gap of each other."""
    chosen: list[Candidate] = []
    for candidate in sorted(candidates, key=lambda c: -c.disagreement_esr):
        if len(chosen) == add:
            break
        if any(
            c.between == candidate.between and abs(c.point - candidate.point) < 0.5 for c in chosen
        ):
            continue
        chosen.append(candidate)
    return chosen
