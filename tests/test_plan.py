"""`ampcap plan`: the settings worth recording next, on sessions with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from split_helpers import make_session

from ampcap.dataset.plan import bend_esr, step_esr

# make_session's device output at the k-th setting is the input times 2^-(k+1): each step
# halves the level, so every step has the same ESR, |c/2|^2 / ((c^2 + c^2/4) / 2) = 0.4, and the
# middle of any three settings is exactly a mix of its neighbours (no bend).
STEP_ESR = 0.4


def test_step_and_bend_have_their_known_values() -> None:
    rng = __import__("numpy").random.default_rng(0)
    x = rng.standard_normal(4000)
    assert step_esr(x, x / 2) == pytest.approx(STEP_ESR)
    assert step_esr(x, x) == 0.0
    assert bend_esr(x, x / 2, x / 4) == pytest.approx(0.0, abs=1e-12)
    # A middle take that is not on the line between its neighbours: y = x^2 shape.
    assert bend_esr(x, x**2, -x) == pytest.approx(1.0, abs=0.05)


def test_plan_fills_the_largest_gaps_first_and_says_why(tmp_path, cli) -> None:
    session = make_session(tmp_path / "s", settings=({"isf": 0.0}, {"isf": 5.0}, {"isf": 10.0}))
    result = cli("plan", session, "--add", "3", "--json")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    added = [item["knobs"]["isf"] for item in plan["add"]]
    # Both gaps hold the same step: the first two takes split them; the third splits a half,
    # whose expected step is a quarter of the original (the output moves with the distance).
    assert sorted(added[:2]) == [2.5, 7.5]
    assert added[2] in (1.25, 3.75, 6.25, 8.75)
    assert [s["esr"] for s in plan["steps"]] == pytest.approx([STEP_ESR, STEP_ESR])
    assert plan["add"][0]["expected_step_esr"] == pytest.approx(STEP_ESR / 4)
    assert plan["add"][2]["expected_step_esr"] == pytest.approx(STEP_ESR / 16)
    assert "about 10.00% after the takes suggested before" in plan["add"][2]["reason"]
    assert plan["bends"][0]["esr"] == pytest.approx(0.0, abs=1e-9)
    assert (
        "between isf=0 and isf=5" in plan["add"][0]["reason"]
        or "between isf=5" in (plan["add"][0]["reason"])
    )
    shown = cli("plan", session, "--add", "2")
    assert shown.code == 0
    assert "isf=2.5: the output changes 40.00% (ESR) between isf=0 and isf=5" in shown.err_flat


def test_plan_writes_a_plan_file_and_never_overwrites_another_file(tmp_path, cli) -> None:
    session = make_session(tmp_path / "s")
    out = tmp_path / "plan.json"
    assert cli("plan", session, "--add", "1", "--out", out).code == 0
    assert json.loads(out.read_text())["add"][0]["label"] in ("isf=2.5", "isf=7.5")
    # Writing again over its own plan is fine; over the session manifest it is refused.
    assert cli("plan", session, "--add", "2", "--out", out).code == 0
    before = (session / "session.json").read_bytes()
    refused = cli("plan", session, "--add", "1", "--out", session / "session.json")
    assert refused.code == 2
    assert "is not a plan ampcap wrote" in refused.err_flat
    assert (session / "session.json").read_bytes() == before


@pytest.mark.parametrize(
    ("settings", "add", "message"),
    [
        (({"isf": 5.0},), 1, "no gap between recorded settings"),
        (({"isf": 0.0}, {"isf": 0.05}), 1, "fit between the recorded settings"),
        (({"isf": 0.0}, {"isf": 10.0}), 0, "must be at least 1, not 0"),
    ],
)
def test_plan_refuses_what_it_cannot_plan(tmp_path, cli, settings, add, message) -> None:
    session = make_session(tmp_path / "s", settings=settings)
    result = cli("plan", session, "--add", add)
    assert result.code == 2
    assert message in result.err_flat


def test_plan_of_a_folder_that_is_not_an_aligned_session(tmp_path, cli) -> None:
    result = cli("plan", tmp_path, "--add", "1")
    assert result.code == 2
    assert "is not a capture session" in result.err_flat


def test_plan_from_runs_measures_where_models_disagree(tmp_path, cli, monkeypatch) -> None:
    import torch
    from train_helpers import make_dataset

    from ampcap.train.disagreement import esr_between

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    make_dataset(Path("data"), settings=(0.0, 5.0, 10.0))
    for seed in (0, 1):
        trained = cli(
            "train", "data", "--out", f"r{seed}", "--hidden", "4", "--epochs", "1",
            "--seed", seed, "--device", "cpu",
        )  # fmt: skip
        assert trained.code == 0, trained.err
    result = cli("plan", "r0", "r1", "--add", "2", "--json")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    candidates = plan["candidates"]
    # Three points in each of the two gaps; the suggestions are the largest disagreements,
    # never two within half a gap of each other.
    assert sorted(c["knobs"]["tone"] for c in candidates) == [1.25, 2.5, 3.75, 6.25, 7.5, 8.75]
    ranked = sorted(candidates, key=lambda c: -c["disagreement_esr"])
    assert plan["add"][0] == ranked[0]
    assert all(c["disagreement_esr"] > 0 for c in candidates)
    assert "models disagree" in plan["add"][0]["reason"]
    # One run, or runs of different datasets, cannot be compared.
    assert "data is not a run" in cli("plan", "r0", "r1", "data", "--add", "1").err_flat
    assert "compares two or more runs" in cli("plan", "r0", "--add", "1").err_flat
    make_dataset(Path("other"), seed=5)
    assert cli("train", "other", "--out", "r2", "--hidden", "4", "--epochs", "1").code == 0
    assert "trained on different datasets" in cli("plan", "r0", "r2", "--add", "1").err_flat
    x = np.random.default_rng(0).standard_normal(100)
    assert esr_between(x, x) == 0.0 and esr_between(x, -x) == pytest.approx(4.0)


def test_plan_leaves_out_takes_whose_alignment_failed(tmp_path, cli) -> None:
    settings = ({"isf": 0.0}, {"isf": 5.0}, {"isf": 10.0})
    session = make_session(tmp_path / "s", settings=settings, verdicts=["ok", "failed", "ok"])
    plan = json.loads(cli("plan", session, "--add", "1", "--json").out)
    assert plan["recorded"] == [{"isf": 0.0}, {"isf": 10.0}]
    assert plan["add"][0]["knobs"] == {"isf": 5.0}
