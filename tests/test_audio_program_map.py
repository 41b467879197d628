"""Playing a memory-mapped program keeps memory flat: played pages are given back."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from ampcap.capture.engine import release_played_pages

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/self/status"
)


def _resident_file_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("RssFile"))


def _mapped(tmp_path: Path, frames: int) -> tuple[np.ndarray, np.ndarray]:
    samples = np.random.default_rng(0).uniform(-0.5, 0.5, frames).astype("<f4")
    path = tmp_path / "program.f32"
    samples.tofile(path)
    # An offset like a WAV header's, so the array does not start on a page boundary.
    return samples, np.memmap(path, dtype="<f4", mode="r", offset=44 * 4, shape=(frames - 44,))


def test_released_pages_leave_the_resident_set_and_read_back_the_same(tmp_path: Path) -> None:
    samples, mapped = _mapped(tmp_path, 4_800_000)  # 19 MB
    before = _resident_file_kib()
    assert float(np.sum(mapped, dtype=np.float64)) == pytest.approx(
        float(np.sum(samples[44:], dtype=np.float64))
    )
    touched = _resident_file_kib()
    release_played_pages(mapped[1000:], len(mapped) - 1000)  # a slice of the map works too
    released = _resident_file_kib()
    # Reading the whole map makes ~18 MiB resident; releasing gives (almost) all of it back.
    assert touched - before > 15_000
    assert touched - released > 15_000
    assert np.array_equal(mapped, samples[44:])


def test_only_pages_before_the_position_are_released(tmp_path: Path) -> None:
    _, mapped = _mapped(tmp_path, 4_800_000)
    float(np.sum(mapped, dtype=np.float64))
    touched = _resident_file_kib()
    release_played_pages(mapped, len(mapped) // 2)
    half = touched - _resident_file_kib()
    assert 8_000 < half < 10_500  # about 9.2 MiB of the 18.3


def test_arrays_in_memory_are_left_alone() -> None:
    samples = np.ones(1_000_000, dtype=np.float32)
    release_played_pages(samples, len(samples))
    assert samples.sum() == 1_000_000
