"""``ampcap rig check`` through PortAudio and a real JACK server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jack_helpers import write_rig

pytestmark = pytest.mark.jack


def _check(ampcap_process, rig: Path, env: dict[str, str], *extra: str) -> tuple[int, dict]:
    result = ampcap_process("rig", "check", "--rig", rig, "--json", *extra, env=env, timeout=90)
    assert "Traceback" not in result.err
    return result.code, json.loads(result.out)


def test_check_measures_the_whole_period_round_trip_and_approves_the_wiring(
    ampcap_process, tmp_path: Path, jack_env: dict[str, str]
) -> None:
    rig = write_rig(tmp_path / "rig.toml")
    # A machine busy with other work can make PortAudio drop a block. The check must then
    # say so and fail, and the advice is to run it again; the measurement is read from the
    # first run without a dropout.
    for _ in range(3):
        code, check = _check(ampcap_process, rig, jack_env)
        if not (check["underflows"] or check["overflows"]):
            break
        assert code == 1 and check["ok"] is False
        assert any("underflow(s)" in advice for advice in check["advice"])
    else:
        pytest.fail("PortAudio dropped audio in each of three checks: is the machine overloaded?")
    assert code == 0, (check["wiring"], check["advice"])
    assert check["wiring"] == "ok"
    assert check["ok"] is True and check["advice"] == []
    # Synchronous JACK: the round trip is exactly two 1024-frame periods.
    assert check["latency_samples"] == pytest.approx(2048.0, abs=0.011)
    assert check["latency_ms"] == pytest.approx(2048 / 48, abs=0.001)
    assert check["loopback_gain_db"] == pytest.approx(0.0, abs=0.01)
    assert check["loopback_noise_dbfs"] is None  # digital silence: no noise at all
    assert check["device"].endswith("ampcap-virtual-amp")
    assert check["underflows"] == 0 and check["overflows"] == 0


def test_check_finds_swapped_inputs(
    ampcap_process, tmp_path: Path, jack_env: dict[str, str]
) -> None:
    rig = write_rig(tmp_path / "rig.toml", input_device=2, input_loopback=1)
    code, check = _check(ampcap_process, rig, jack_env)
    assert code == 1
    assert check["wiring"] == "swapped"
    assert "input 1 hears the device and input 2 hears the loopback" in check["advice"][0]


def test_check_on_unconnected_ports_reports_both_silent(
    ampcap_process, tmp_path: Path, jack_env: dict[str, str]
) -> None:
    # The dummy backend's system ports: the outputs go nowhere and the inputs are silent.
    code, check = _check(
        ampcap_process, write_rig(tmp_path / "rig.toml"), jack_env, "--device", "system"
    )
    assert code == 1
    assert check["wiring"] == "both silent"
    assert check["latency_samples"] is None
