"""A 10-take JACK session with two CPU-bound processes beside it: no dropouts, exact takes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jack_helpers import (
    check_take,
    cpu_hogs,
    record_args,
    run_ampcap,
    stop_processes,
    write_di,
    write_rig,
)

from ampcap.schema.session import load_session

pytestmark = [pytest.mark.jack, pytest.mark.slow]


def test_ten_takes_beside_two_busy_processes_have_no_dropouts(
    tmp_path: Path, jack_env: dict[str, str]
) -> None:
    rig = write_rig(tmp_path / "rig.toml")
    di = write_di(tmp_path / "di.wav")
    out = tmp_path / "session"
    hogs = cpu_hogs(2)
    try:
        result = run_ampcap([*record_args(rig, out, di, 10), "--json"], jack_env, timeout=600)
    finally:
        stop_processes(hogs)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["complete"]
    manifest = load_session(out)
    assert len(manifest.takes) == 10
    # Zero dropouts: no take needed a second attempt, and none saw a flag.
    assert [t.attempts for t in manifest.takes] == [1] * 10, result.stderr
    for take in manifest.takes:
        check_take(out, manifest, take)
