"""`ampcap plan`: the settings worth recording next, on sessions with known answers."""

from __future__ import annotations

import json

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
