"""Benchmark offline rendering: seconds of audio rendered per second, on one core and on two.

Rows: PyTorch's own LSTM/GRU forward over the whole signal at batch size 1 (the sequential
reference, one thread), and ``ampcap.train.render.render`` with 1 and 2 worker threads. Each
figure is the best of ``--repeats`` runs over ``--seconds`` of noise-like audio (the speed of a
recurrent model does not depend on the signal). The target is >= 50x real time on one core for
an LSTM with hidden size 32 at 48 kHz. Prints a Markdown table.

Two speeds are given: audio seconds per wall-clock second, and per CPU second of this process
(``time.process_time``). On an idle core they agree for one worker; on a machine shared with
other work the wall-clock figure counts the time the scheduler gave to others, and the CPU
figure is the one that says what one core does.

    python benchmarks/render.py [--seconds 60] [--rate 48000] [--repeats 3] [--models lstm32,gru32]

``benchmarks/train.py`` calls :func:`render_speed` on the model it trained.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass

import numpy as np
import torch

from ampcap.train.model import build_model, make_config
from ampcap.train.render import render_sequential, render_with_stats

TARGET_X_REAL_TIME = 50.0


@dataclass(frozen=True)
class RenderSpeed:
    """One measurement: ``x_real_time`` = audio seconds / wall seconds (best of the repeats)."""

    label: str
    method: str
    workers: int
    audio_seconds: float
    wall_seconds: float
    cpu_seconds: float
    chunks: int
    warmup_samples: int

    @property
    def x_real_time(self) -> float:
        return self.audio_seconds / self.wall_seconds

    @property
    def x_real_time_cpu(self) -> float:
        """Audio seconds per CPU second of the process (all its threads)."""
        return self.audio_seconds / self.cpu_seconds


def _audio(seconds: float, sample_rate_hz: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (0.3 * rng.standard_normal(int(seconds * sample_rate_hz))).astype(np.float32)


def render_speed(
    model: torch.nn.Module,
    sample_rate_hz: int,
    *,
    seconds: float = 60.0,
    workers: int = 1,
    repeats: int = 3,
    label: str = "",
) -> RenderSpeed:
    """Time :func:`ampcap.train.render.render` on ``model`` (best of ``repeats``).

    Parameters
    ----------
    model : torch.nn.Module
        Any ampcap model; knob inputs are held at 0.5.
    sample_rate_hz : int
        The model's rate: sets how many samples ``seconds`` is.
    seconds : float, default 60
        Length of the rendered signal.
    workers : int, default 1
        Render threads.
    """
    audio = _audio(seconds, sample_rate_hz)
    knobs = [0.5] * (model.config.input_size - 1)
    best = None
    for _ in range(repeats):
        cpu = time.process_time()
        _, stats = render_with_stats(
            model, audio, knobs, sample_rate_hz=sample_rate_hz, workers=workers
        )
        cpu = time.process_time() - cpu
        if best is None or stats.wall_seconds < best[0].wall_seconds:
            best = (stats, cpu)
    stats, cpu = best
    return RenderSpeed(
        label or model.config.arch,
        "ampcap render",
        workers,
        seconds,
        stats.wall_seconds,
        cpu,
        stats.chunks,
        stats.warmup_samples,
    )


def sequential_speed(
    model: torch.nn.Module, sample_rate_hz: int, *, seconds: float = 10.0, label: str = ""
) -> RenderSpeed:
    """Time the model's own forward pass at batch size 1 (one thread), one run."""
    audio = _audio(seconds, sample_rate_hz)
    knobs = [0.5] * (model.config.input_size - 1)
    started, cpu = time.perf_counter(), time.process_time()
    render_sequential(model, audio, knobs)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return RenderSpeed(
        label or model.config.arch, "torch forward, batch 1", 1, seconds, wall, cpu, 1, 0
    )


def markdown_table(rows: list[RenderSpeed]) -> str:
    lines = [
        "| model | method | workers | audio s | wall s | x real time (wall) | CPU s "
        "| x real time per CPU s | chunks | warm-up |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.label} | {r.method} | {r.workers} | {r.audio_seconds:.0f} | "
            f"{r.wall_seconds:.2f} | {r.x_real_time:.1f} | {r.cpu_seconds:.2f} | "
            f"{r.x_real_time_cpu:.1f} | {r.chunks} | {r.warmup_samples} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=48000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="lstm32,gru32,lstm64")
    args = parser.parse_args()
    rows = []
    for spec in args.models.split(","):
        arch, hidden = spec.rstrip("0123456789"), int(spec[len(spec.rstrip("0123456789")) :])
        torch.manual_seed(0)
        model = build_model(make_config(arch, 2, hidden_size=hidden)).eval()
        label = f"{arch.upper()}{hidden}"
        rows.append(
            sequential_speed(model, args.rate, seconds=min(10.0, args.seconds), label=label)
        )
        for workers in (1, 2):
            rows.append(
                render_speed(
                    model,
                    args.rate,
                    seconds=args.seconds,
                    workers=workers,
                    repeats=args.repeats,
                    label=label,
                )
            )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"Render speed at {args.rate} Hz, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU(s), load average {load:.2f} at the end; torch {torch.__version__}. "
        f"Target: >= {TARGET_X_REAL_TIME:.0f}x real time, LSTM32, one worker.\n"
    )
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
