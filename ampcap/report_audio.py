"""Short listening clips for the HTML reports: Ogg Vorbis files beside the page, ``<audio>`` tags.

A guitarist judges a capture by ear, so the reports carry a few seconds of sound next to the
plots. Clips are Ogg Vorbis (about 10 kB per second of guitar at 48 kHz; every browser with
free codecs plays it, no network needed) written next to the page and linked by relative paths.
Levels are kept as recorded, so the device, the model and their difference can be compared by
ear; only a clip set that would clip on playback is lowered, all its clips by the same amount.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from urllib.parse import quote

import numpy as np
import soundfile as sf

from ampcap.outputs import atomic_output

#: Seconds of each clip: long enough for a riff, short enough to keep a report small.
CLIP_SECONDS = 3.0
#: Fade in and out, seconds: no click where the clip is cut out of the recording.
FADE_SECONDS = 0.01
#: Highest peak a clip is written with; a louder set of clips is lowered as a whole.
MAX_PEAK = 0.99


def loudest_window(signal: np.ndarray, frames: int) -> int:
    """Start of the ``frames``-long window of ``signal`` with the most energy (0 if shorter).

    Parameters
    ----------
    signal : numpy.ndarray, shape (n,)
    frames : int
        Window length in samples.
    """
    signal = np.asarray(signal, dtype=np.float64)
    if signal.size <= frames:
        return 0
    energy = np.concatenate([[0.0], np.cumsum(signal**2)])
    return int(np.argmax(energy[frames:] - energy[:-frames]))


def common_gain(clips: list[np.ndarray]) -> float:
    """1.0, or the factor that brings the loudest of ``clips`` down to :data:`MAX_PEAK`."""
    peak = max((float(np.max(np.abs(c))) for c in clips if c.size), default=0.0)
    return 1.0 if peak <= MAX_PEAK else MAX_PEAK / peak


def write_clip(path: Path, samples: np.ndarray, sample_rate_hz: int, gain: float = 1.0) -> Path:
    """Write a mono clip as Ogg Vorbis with short fades; returns ``path``.

    Parameters
    ----------
    path : pathlib.Path
        Where to write (``.ogg``); the folder is created.
    samples : numpy.ndarray, shape (n,)
        Full scale 1.0.
    sample_rate_hz : int
    gain : float, default 1.0
        Applied before writing (see :func:`common_gain`).
    """
    clip = np.asarray(samples, dtype=np.float64) * gain
    fade = min(int(FADE_SECONDS * sample_rate_hz), clip.size // 2)
    if fade:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, fade))
        clip[:fade] *= ramp
        clip[-fade:] *= ramp[::-1]
    with atomic_output(path) as tmp:
        sf.write(
            str(tmp), clip.astype(np.float32), int(sample_rate_hz), format="OGG", subtype="VORBIS"
        )
    return path


def audio_tag(relative_path: str, label: str) -> str:
    """An ``<audio>`` element with controls for a clip beside the page."""
    return (
        f"<audio controls preload='metadata' src='{html.escape(quote(relative_path))}' "
        f"aria-label='{html.escape(label)}'></audio>"
    )
