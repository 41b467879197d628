"""A 10-take JACK session beside two CPU-bound processes: every dropout is caught and redone.

A busy machine may or may not make a take drop out; how often is a benchmark figure
(``benchmarks/capture.py --load``), not something a shared CI machine can promise. What must
hold whatever the load: every dropout is detected and the take recorded again, no take with a
flag is ever marked complete, and every complete take is the program and the amp's output
sample for sample (a dropout that slipped through would break that).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jack_helpers import (
    check_take,
    cpu_hogs,
    record_args,
    stop_processes,
    write_di,
    write_rig,
)

from ampcap.schema.session import load_session

pytestmark = [pytest.mark.jack, pytest.mark.slow]

TAKES = 10
#: Runs of the same command at most: a session stops after 3 dropouts in a row on one take, and
#: running the command again resumes it, as a user would.
MAX_RUNS = 4
RETRY_LINE = re.compile(r"Take (\S+): dropout: (\d+) output underflow\(s\), (\d+) input overflow")


def test_ten_takes_beside_two_busy_processes_lose_nothing(
    ampcap_process, tmp_path: Path, jack_env: dict[str, str]
) -> None:
    rig = write_rig(tmp_path / "rig.toml")
    di = write_di(tmp_path / "di.wav")
    out = tmp_path / "session"
    retries: list[str] = []
    runs = []
    hogs = cpu_hogs(2)
    try:
        for _ in range(MAX_RUNS):
            result = ampcap_process(
                *record_args(rig, out, di, TAKES), "--json", env=jack_env, timeout=600
            )
            runs.append(result)
            said = result.err_flat  # the console wraps long lines
            for match in RETRY_LINE.finditer(said):
                retries.append(match.group(1))
                # A retry is announced only for a real flag.
                assert int(match.group(2)) + int(match.group(3)) > 0, match.group(0)
            if result.code == 0:
                break
            # The only acceptable stop is the repeated-dropout one, and it says how to resume.
            assert result.code == 2, result.err
            assert "had dropouts in 3 attempts in a row" in said, result.err
            assert "run the same command again to resume" in said, result.err
    finally:
        stop_processes(hogs)
    final = runs[-1]
    assert final.code == 0, final.err
    assert json.loads(final.out)["complete"]

    manifest = load_session(out)
    assert len(manifest.takes) == TAKES
    stems = [Path(t.file).name for t in manifest.takes]
    # Every attempt beyond a take's first was caused by a dropout that was caught and reported.
    extra_attempts = {Path(t.file).name: t.attempts - 1 for t in manifest.takes}
    reported = {name: sum(Path(r).name == name for r in retries) for name in stems}
    assert extra_attempts == reported, (extra_attempts, reported, [r.err for r in runs])
    # No flagged take is complete, and each complete take is exact (nothing slipped through).
    for take in manifest.takes:
        assert take.status == "complete"
        assert take.underflows == 0 and take.overflows == 0, take
        check_take(out, manifest, take)
