"""``ampcap report SESSION``: the terminal tables, the HTML page and its plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from align_helpers import Rig, make_session

from ampcap.dataset.align import align_session
from ampcap.errors import SessionError
from ampcap.report_session import session_report_document, show_session_report

TERMINAL = {"COLUMNS": "100"}  # the width the tables and messages are checked at


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report") / "s"
    make_session(
        folder,
        values=(0.0, 5.0, 10.0),
        rig=Rig(latency_samples=88.8, drift_ppm=40.0, seed=3),
        di_seconds=1.5,
    )
    return folder


def test_an_unaligned_session_says_to_run_align(ampcap_process, session: Path) -> None:
    result = ampcap_process("report", str(session), cwd=session.parent, env=TERMINAL)
    assert result.code == 2
    assert f"ampcap align {session}" in result.err_flat


def test_report_writes_html_and_plots(ampcap_process, session: Path) -> None:
    align_session(session)
    result = ampcap_process("report", "s", "--json", cwd=session.parent, env=TERMINAL)
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["report"] == "s/report/index.html"
    assert document["stale"] is False
    assert [t["knobs"]["isf"] for t in document["takes"]] == [0.0, 5.0, 10.0]
    assert all(t["drift_ppm"] == pytest.approx(40.0, abs=0.5) for t in document["takes"])
    page = (session / "report" / "index.html").read_text()
    for png in ("xcorr.png", "markers.png", "volume.png", "spectra.png"):
        assert (session / "report" / png).stat().st_size > 1000
        assert f"src='{png}'" in page
    assert "No warnings" in page
    assert "isf=10" in page
    assert "s/report/index.html" in result.err_flat


def test_report_tells_warnings_in_plain_language(session: Path) -> None:
    align_session(session)
    manifest_path = session / "aligned" / "alignment.json"
    data = json.loads(manifest_path.read_text())
    data["takes"][1]["verdict"] = "warning"
    data["takes"][1]["messages"] = ["The device channel clipped: lower the input gain."]
    manifest_path.write_text(json.dumps(data))
    path = show_session_report(session)
    page = path.read_text()
    assert "The device channel clipped: lower the input gain." in page
    assert "class='warning'" in page


def test_report_notices_a_session_changed_since_alignment(session: Path) -> None:
    align_session(session)
    manifest = session / "session.json"
    manifest.write_text(manifest.read_text() + "\n")
    assert session_report_document(session)["stale"] is True
    path = show_session_report(session)
    assert "run <code>ampcap align" in path.read_text()


def test_report_document_refuses_an_unaligned_folder(tmp_path: Path) -> None:
    make_session(tmp_path / "x", values=(5.0,), di_seconds=1.0)
    with pytest.raises(SessionError, match="has not been aligned"):
        session_report_document(tmp_path / "x")
