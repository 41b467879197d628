"""Both HTML reports in a real browser: Debian's Chromium, driven headless through Playwright.

A report is for a person: every plot and every clip must load in a browser, the page must log
no error, and it must be readable on a laptop (1280 px) and on a phone (400 px) without the page
itself scrolling sideways (wide tables scroll inside their own box). The reports are files on
disk with their plots and clips beside them, opened as ``file://`` pages with no network.

``make test`` installs Chromium (Debian's ``chromium``) and sets ``AMPCAP_REQUIRE_BROWSER=1``, so
there a missing browser fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from align_helpers import make_session
from train_helpers import make_dataset

from ampcap.dataset.align import align_session

WIDTHS = (1280, 400)
# Flags for a root user in a container with no network and no GPU.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Largest report worth sending a person (page, plots and clips together).
MAX_REPORT_BYTES = 3 * 1024 * 1024

# Waits for every <audio> to load its metadata (or fail) and reports what each one got.
AUDIO_STATE_JS = """
async () => Promise.all([...document.querySelectorAll('audio')].map(a => new Promise(done => {
  const report = () => done({src: a.currentSrc, duration: a.duration,
                             error: a.error ? a.error.code : null});
  if (a.readyState >= 1 || a.error) { report(); return; }
  a.addEventListener('loadedmetadata', report, {once: true});
  a.addEventListener('error', report, {once: true});
  a.load();
})))
"""
IMAGE_STATE_JS = """
() => [...document.querySelectorAll('img')].map(i => ({src: i.currentSrc, complete: i.complete,
                                                      width: i.naturalWidth}))
"""


def _chromium() -> str | None:
    return os.environ.get("AMPCAP_CHROMIUM") or shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = _chromium()
    reason = None
    if executable is None:
        reason = "Chromium is not installed (apt install chromium)"
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            reason = "playwright is not installed (pip install -e '.[test]')"
    if reason is not None:
        if os.environ.get("AMPCAP_REQUIRE_BROWSER") == "1":
            pytest.fail(f"AMPCAP_REQUIRE_BROWSER=1 but the browser tests cannot run: {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        # Playwright gives the browser a fresh temporary profile of its own.
        chromium = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def session_report(tmp_path_factory: pytest.TempPathFactory, ampcap_process) -> Path:
    folder = tmp_path_factory.mktemp("browser") / "session"
    make_session(folder, values=(0.0, 5.0, 10.0), di_seconds=4.0)
    align_session(folder)
    ampcap_process("report", "session", cwd=folder.parent, check=True)
    return folder / "report" / "index.html"


@pytest.fixture(scope="module")
def run_report(tmp_path_factory: pytest.TempPathFactory, ampcap_process) -> Path:
    root = tmp_path_factory.mktemp("browser-run")
    make_dataset(root / "data", heldout=(5.0,))
    ampcap_process(
        "train", "data", "--out", "run", "--hidden", "8", "--epochs", "2", cwd=root, check=True
    )
    return root / "run" / "report.html"


def check_page(browser, page_path: Path, width: int, shots: Path) -> dict:
    """Open the page at ``width`` px; assert what a reader needs; return what was measured."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("requestfailed", lambda r: problems.append(f"{r.url}: {r.failure}"))
    page.goto(page_path.as_uri(), wait_until="load")
    images = page.evaluate(IMAGE_STATE_JS)
    audio = page.evaluate(AUDIO_STATE_JS)
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / f"{page_path.parent.name}-{page_path.stem}-{width}.png"
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    assert images and all(i["complete"] and i["width"] > 0 for i in images), images
    assert audio and all(a["error"] is None and a["duration"] > 0 for a in audio), audio
    assert problems == [], problems
    assert overflow <= 0, f"the page is {overflow} px wider than a {width} px window"
    assert shot.stat().st_size > 10_000
    return {"images": len(images), "audio": audio}


def report_bytes(page_path: Path) -> int:
    folder = page_path.parent
    linked = [p for p in folder.rglob("*") if p.suffix in (".html", ".png", ".ogg")]
    return sum(p.stat().st_size for p in linked)


@pytest.mark.parametrize("width", WIDTHS)
def test_session_report_in_a_browser(browser, session_report: Path, width: int, tmp_path) -> None:
    seen = check_page(browser, session_report, width, tmp_path)
    assert seen["images"] == 4
    # The DI once, then every take, each a few seconds long.
    durations = [a["duration"] for a in seen["audio"]]
    assert len(durations) == 4 and all(2.9 < d < 3.1 for d in durations), durations
    page = session_report.read_text()
    assert "isf=10" in page and "http" not in page.replace("http-equiv", "")
    assert report_bytes(session_report) < MAX_REPORT_BYTES


@pytest.mark.parametrize("width", WIDTHS)
def test_run_report_in_a_browser(browser, run_report: Path, width: int, tmp_path) -> None:
    seen = check_page(browser, run_report, width, tmp_path)
    assert seen["images"] == 3
    # Device, model and difference for each of the three settings.
    assert len(seen["audio"]) == 9
    page = run_report.read_text()
    assert page.count("(held out)") >= 2  # in the score table and beside its clips
    assert "tone=5 <b>(held out)</b>" in page
    assert report_bytes(run_report) < MAX_REPORT_BYTES
    metrics = json.loads((run_report.parent / "metrics.json").read_text())
    for setting in metrics["test"]["settings"]:
        assert f"aria-label='{setting['setting']}: difference'" in page
