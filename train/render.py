"""Offline rendering: run a model over an audio file, fast, matching sample-by-sample processing.

Why chunks, and why in one batch: a recurrent model processes one sample at a time, and at batch
size 1 a CPU spends most of its time on per-step overhead (PyTorch's own LSTM32 renders 48 kHz
audio at about 20x real time on one core that way, its GRU32 at 2x). Cutting the signal into
``B`` chunks and running them as one batch turns each step into a ``(B x H) @ (H x 4H)``
product that keeps the vector units busy (about 60x real time, ``benchmarks/render.py``).
Each chunk starts ``warmup`` samples early from zero state; those outputs are dropped, and
because the model forgets its initial state the kept samples match one long sequential pass
(checked at every seam, see :class:`RenderStats`). The first chunk starts at sample 0 from zero
state, exactly like the sequential pass.

The recurrent kernel is written for this shape of work (Wright et al., DAFx-19, Sec. 5.1):

- the knobs are constant over a render, so they are folded into the bias (``b_cond``,
  Algorithm 1) and the input projection is one column;
- every ``tanh`` is computed as ``2 sigmoid(2a) - 1`` with the factor 2 folded into the weights,
  because on x86 PyTorch's ``sigmoid`` is vectorised and about 5x faster than its ``tanh``;
- all buffers are allocated once per render and reused block after block: touching fresh memory
  on every step costs page faults that otherwise double the time, and blocks of 16 steps keep
  the buffers in cache.

Feed-forward models (WaveNet, MLP) are chunked the same way with a warm-up of exactly their
receptive field, which makes the result exact.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ampcap.errors import AudioFileError, ModelFormatError, UsageError
from ampcap.files import audio_info, read_audio, write_audio
from ampcap.labels import knob_label
from ampcap.levels import dbfs
from ampcap.outputs import check_output_file
from ampcap.schema.run import BEST_MODEL
from ampcap.schema.session import Knob
from ampcap.train.formats import read_exported
from ampcap.train.weights import (
    RecurrentWeights,
    checkpoint_knobs,
    fold_knobs,
    model_from_weights,
    normalised_setting,
    weights_from_model,
)

DEFAULT_WARMUP_SAMPLES = 2048
# Silence a player runs through a model before the first sample it plays: NeuralAmpModelerCore
# prewarms an LSTM for half a second (NAM/lstm.cpp, PrewarmSamples), AIDA-X for 2048 samples
# (src/aidadsp-plugin.cpp). `ampcap render` does the same by default, so it matches a player
# from the first sample instead of starting from a cold, zero state.
PLAYER_WARMUP_SECONDS = 0.5
# Above this peak a render is refused, not written: no amp or pedal model plays 100 times full
# scale, so such an output means damaged or tampered weights (a float WAV would keep it and
# hand it, at full volume, to whatever plays it next).
MAX_OUTPUT_DBFS = 40.0
DEFAULT_TOLERANCE = 1e-4
TARGET_BATCH = 256  # chunks per step: below ~128 per-step overhead dominates on a CPU core
MAX_BATCH = 512
# Longest automatic chunk (0.68 s at 48 kHz) and most samples in one batch (8 M, 32 MB a
# buffer): a long file is rendered batch after batch in bounded memory, with batches of about
# 240 chunks and a warm-up costing 6 % or less.
MAX_CHUNK_SAMPLES = 1 << 15
MAX_GROUP_FRAMES = 1 << 23
# Steps per block: the input projection of a block (16 x 256 chunks x 4H floats, 2 MB for an
# LSTM32) stays in cache between being written and read. 128 steps (16 MB) measured 20% slower.
TIME_BLOCK = 16
FEEDFORWARD_BLOCK_FRAMES = 1 << 20  # (chunks x samples) per feed-forward call, bounds memory
FEEDFORWARD_CHUNK_SAMPLES = 1 << 16
SEAM_CHECK_SAMPLES = 32
# The seam difference is an estimate, not a bound: a transient after the seam can bring out a
# state difference the output did not show yet. On six trained LSTM32 models the error against
# one sequential pass was at most 5x the seam difference, so the seams must agree 10x better
# than the tolerance asked for.
SEAM_MARGIN = 0.1

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class RenderStats:
    """How a render was cut and how well the chunks agreed.

    Attributes
    ----------
    frames : int
        Samples rendered.
    chunks : int
        Chunks the signal was cut into (1: one sequential pass).
    chunk_samples : int
        Samples each chunk contributes (the first one contributes ``chunk + warmup``).
    warmup_samples : int
        Samples each chunk after the first ran before its kept part (outputs dropped).
    seam_error : float
        Largest absolute difference, over the last samples of every warm-up, between a chunk and
        the chunk before it (which had already run for a long time there): an estimate of how
        far the render is from one sequential pass. 0 with one chunk or a feed-forward model.
    workers : int
        Threads that rendered.
    wall_seconds : float
    """

    frames: int
    chunks: int
    chunk_samples: int
    warmup_samples: int
    seam_error: float
    workers: int
    wall_seconds: float


# ---------------------------------------------------------------------------------------------
# The batched recurrent kernel


class _RecurrentKernel:
    """Steps a folded (audio-only input) LSTM/GRU stack over a batch of chunks.

    Parameters
    ----------
    weights : RecurrentWeights
        With every knob folded in (``input_size == 1``).
    """

    def __init__(self, weights: RecurrentWeights) -> None:
        if weights.input_size != 1:
            raise ModelFormatError("Internal: fold every knob before building a render kernel.")
        self.unit = weights.unit
        self.hidden = weights.hidden_size
        self.skip = weights.skip
        gates = 4 if self.unit == "lstm" else 3
        # Rows whose activation is tanh: LSTM g (third block), GRU n (third block). Doubling
        # them lets one sigmoid call serve every gate: tanh(a) = 2 sigmoid(2a) - 1.
        scale = torch.ones(gates * self.hidden, 1, dtype=torch.float64)
        scale[2 * self.hidden : 3 * self.hidden] = 2.0
        self.layers = []
        for layer in weights.layers:
            w_ih = torch.from_numpy(layer.weight_ih) * scale
            w_hh = torch.from_numpy(layer.weight_hh) * scale
            b_ih = torch.from_numpy(layer.bias_ih) * scale[:, 0]
            b_hh = torch.from_numpy(layer.bias_hh) * scale[:, 0]
            if self.unit == "lstm":
                b_ih, b_hh = b_ih + b_hh, torch.zeros_like(b_hh)
            self.layers.append(
                (
                    w_ih.t().contiguous().float(),
                    b_ih.float(),
                    w_hh.t().contiguous().float(),
                    b_hh.float(),
                )
            )
        self.head_weight = torch.from_numpy(weights.head_weight).float().reshape(-1, 1)
        self.head_bias = float(weights.head_bias)
        # The state before the first sample (a .nam file's warmed-up state), or zeros. The LSTM
        # cell state is kept doubled (see _lstm_block).
        self.initial = [
            (
                torch.from_numpy(np.asarray(h)).float(),
                torch.from_numpy(np.asarray(c) * (2.0 if self.unit == "lstm" else 1.0)).float(),
            )
            for h, c in weights.initial_state
        ]

    def run(self, windows: np.ndarray, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Outputs for ``windows`` (float32, shape (B, T)), each row from the initial state.

        ``progress`` is called with the number of samples (all rows) finished since its last call.
        """
        batch, total = windows.shape
        hidden = self.hidden
        width = (4 if self.unit == "lstm" else 3) * hidden
        x = torch.from_numpy(np.ascontiguousarray(windows.T))  # (T, B): time-major
        out = torch.empty(total, batch)
        block = min(TIME_BLOCK, total)
        pre = torch.empty(block, batch, width)
        hs = [torch.empty(block, batch, hidden) for _ in self.layers]
        gates = torch.empty(batch, width)
        work = torch.empty(batch, hidden)
        if self.initial:
            states = [(h.repeat(batch, 1), c.repeat(batch, 1)) for h, c in self.initial]
        else:
            states = [(torch.zeros(batch, hidden), torch.zeros(batch, hidden)) for _ in self.layers]
        for start in range(0, total, block):
            steps = min(block, total - start)
            layer_in: torch.Tensor = x[start : start + steps].reshape(steps * batch, 1)
            for k, (w_ih_t, b_ih, w_hh_t, b_hh) in enumerate(self.layers):
                p = pre[:steps].view(steps * batch, width)
                torch.addmm(b_ih, layer_in, w_ih_t, out=p)
                h, c = states[k]
                if self.unit == "lstm":
                    h = self._lstm_block(pre, hs[k], steps, h, c, w_hh_t, gates, work)
                else:
                    h = self._gru_block(pre, hs[k], steps, h, w_hh_t, b_hh, gates, work)
                states[k] = (h, c)
                layer_in = hs[k][:steps].view(steps * batch, hidden)
            y = out[start : start + steps].view(steps * batch, 1)
            torch.addmm(torch.tensor([self.head_bias]), layer_in, self.head_weight, out=y)
            if progress is not None:
                progress(steps * batch)
        if self.skip:
            out += x
        return out.numpy().T

    def _lstm_block(
        self,
        pre: torch.Tensor,
        hs: torch.Tensor,
        steps: int,
        h: torch.Tensor,
        c: torch.Tensor,
        w_hh_t: torch.Tensor,
        gates: torch.Tensor,
        work: torch.Tensor,
    ) -> torch.Tensor:
        n = self.hidden
        i, f, g, o = gates[:, :n], gates[:, n : 2 * n], gates[:, 2 * n : 3 * n], gates[:, 3 * n :]
        # The state kept is C = 2c, so that tanh(c) = 2 sigmoid(C) - 1 needs no scaling op:
        # C' = f C + 2 i tanh(g) = f C + 4 i sigmoid(2g) - 2 i, and h = 2 o sigmoid(C) - o.
        for t in range(steps):
            torch.addmm(pre[t], h, w_hh_t, out=gates)
            gates.sigmoid_()
            c.mul_(f).addcmul_(i, g, value=4.0).sub_(i, alpha=2.0)
            torch.sigmoid(c, out=work)
            h = hs[t]
            torch.neg(o, out=h).addcmul_(o, work, value=2.0)
        return h.clone()

    def _gru_block(
        self,
        pre: torch.Tensor,
        hs: torch.Tensor,
        steps: int,
        h: torch.Tensor,
        w_hh_t: torch.Tensor,
        b_hh: torch.Tensor,
        gates: torch.Tensor,
        work: torch.Tensor,
    ) -> torch.Tensor:
        n = self.hidden
        r, z, hn = gates[:, :n], gates[:, n : 2 * n], gates[:, 2 * n :]
        for t in range(steps):
            torch.addmm(b_hh, h, w_hh_t, out=gates)  # W_hh h + b_hh, gates r, z, n
            rz = gates[:, : 2 * n]
            rz.add_(pre[t][:, : 2 * n]).sigmoid_()
            # n = tanh(W_in x + b_in + r (W_hn h + b_hn)), the doubled rows make it a sigmoid
            torch.addcmul(pre[t][:, 2 * n :], r, hn, out=work)
            work.sigmoid_().mul_(2.0).sub_(1.0)
            new = hs[t]
            # h' = n + z (h - n)
            torch.sub(h, work, out=new).mul_(z).add_(work)
            h = new
        return h.clone()


# ---------------------------------------------------------------------------------------------
# Chunking


def _auto_chunk(frames: int, warmup: int, recurrent: bool, workers: int = 1) -> int:
    """The chunk length used when none is given.

    Recurrent: about :data:`TARGET_BATCH` chunks per worker (one batch each), never shorter
    than two warm-ups, and no longer than :data:`MAX_CHUNK_SAMPLES` so that a long file is
    rendered batch after batch in bounded memory.
    Feed-forward: a convolution is already parallel over time, so chunks only bound memory;
    long ones keep the repeated receptive field small.
    """
    if not recurrent:
        return max(16 * warmup, FEEDFORWARD_CHUNK_SAMPLES)
    shortest = 2 * max(warmup, 1)
    return max(shortest, min(MAX_CHUNK_SAMPLES, math.ceil(frames / (TARGET_BATCH * workers))))


def _render_pass(
    run: Callable[[np.ndarray, Callable[[int], None] | None], np.ndarray],
    audio: np.ndarray,
    chunk: int,
    warmup: int,
    workers: int,
    group: int,
    progress: Callable[[int], None] | None,
) -> tuple[np.ndarray, float]:
    """One render with a given cut: (output of shape (frames,), seam difference).

    Window k covers input ``[k*chunk, k*chunk + chunk + warmup)`` from zero state; it keeps its
    last ``chunk`` outputs (window 0 keeps all). Groups of at most ``group`` windows are built,
    run and written into the output one after another (over ``workers`` threads), so memory
    holds the signal, the output and one group per worker.
    """
    frames = audio.size
    chunks = max(1, math.ceil(max(frames - warmup, 0) / chunk))
    padded = np.zeros(chunks * chunk + warmup, dtype=np.float32)
    padded[:frames] = audio
    output = np.empty_like(padded)
    check = min(SEAM_CHECK_SAMPLES, warmup)
    # The last `check` warm-up outputs of every window, compared afterwards with what the
    # window before it kept at the same positions.
    heads = np.zeros((chunks, check), dtype=np.float32)
    per_worker = math.ceil(chunks / workers)
    size = max(1, min(group, per_worker))
    parts = [(s, min(s + size, chunks)) for s in range(0, chunks, size)]
    item = padded.itemsize

    def one(part: tuple[int, int]) -> None:
        first, stop = part
        windows = np.lib.stride_tricks.as_strided(
            padded[first * chunk :], (stop - first, chunk + warmup), (chunk * item, item)
        ).copy()
        # Autograd modes are per thread: a worker thread must switch inference mode on itself.
        with torch.inference_mode():
            outs = run(windows, progress)
        kept = output[first * chunk + warmup : stop * chunk + warmup]
        kept.reshape(stop - first, chunk)[:] = outs[:, warmup:]
        if first == 0:
            output[:warmup] = outs[0, :warmup]
        heads[first:stop] = outs[:, warmup - check : warmup]

    if workers <= 1 or len(parts) == 1:
        for part in parts:
            one(part)
    else:
        # Threads share the weights and need no copy of the model; PyTorch releases the GIL
        # inside each operation but each step's Python dispatch holds it, so a second thread
        # pays off only with an idle second core (benchmarks/render.py measures it). Processes
        # were worse: forking after torch has started its thread pools can hang the children,
        # and spawning costs seconds of start-up per worker.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, parts))
    seam = 0.0
    if chunks > 1 and check > 0:
        starts = np.arange(1, chunks) * chunk + warmup - check
        earlier = output[starts[:, None] + np.arange(check)]
        seam = float(np.max(np.abs(heads[1:].astype(np.float64) - earlier)))
    return output[:frames], seam


def _feedforward_runner(model: Any, knobs: Sequence[float]) -> Callable[..., np.ndarray]:
    def run(windows: np.ndarray, progress: Callable[[int], None] | None) -> np.ndarray:
        batch, total = windows.shape
        x = np.empty((batch, total, 1 + len(knobs)), dtype=np.float32)
        x[:, :, 0] = windows
        for j, value in enumerate(knobs):
            x[:, :, 1 + j] = value
        result = model(torch.from_numpy(x))
        y = result[0] if isinstance(result, tuple) else result
        if progress is not None:
            progress(batch * total)
        return y[..., 0].numpy()

    return run


def _checked_audio(audio: np.ndarray, silence_samples: int) -> np.ndarray:
    """``audio`` as float32 after checking it is mono and finite, and the warm-up is not negative."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise UsageError(f"render takes mono audio of shape (frames,), not {audio.shape}.")
    if not np.isfinite(audio).all():
        raise UsageError("The audio holds NaN or infinite samples; fix its source first.")
    if silence_samples < 0:
        raise UsageError(f"The warm-up must be 0 s or more, not {silence_samples} samples.")
    return audio


def _runner(
    model: Any,
    knobs: Sequence[float],
    warmup_samples: int,
    initial_state: tuple[tuple[np.ndarray, np.ndarray], ...],
) -> tuple[Callable[..., np.ndarray], int]:
    """What renders a batch of windows for ``model`` at this knob setting, and its first warm-up.

    A recurrent model gets the batched kernel with the knobs folded in and starts from
    ``warmup_samples``; a feed-forward one its own forward pass and a warm-up of its receptive
    field, which is exact.
    """
    config = getattr(model, "config", None)
    if getattr(config, "recurrent", False):
        names = [f"input{j}" for j in range(len(knobs))]
        weights = replace(weights_from_model(model, names), initial_state=tuple(initial_state))
        kernel = _RecurrentKernel(fold_knobs(weights, dict(zip(names, knobs, strict=True))))
        return kernel.run, max(0, int(warmup_samples))
    return _feedforward_runner(model, knobs), max(0, int(getattr(config, "receptive_field", 1)) - 1)


class _Progress:
    """Adds up the samples of work the threads finish and reports ``(done, total)``."""

    def __init__(self, on_progress: ProgressCallback | None) -> None:
        self.on_progress = on_progress
        self.lock = threading.Lock()
        self.done = 0
        self.total = 0

    def restart(self, total: int) -> None:
        self.done, self.total = 0, total

    def __call__(self, samples: int) -> None:
        with self.lock:
            self.done += samples
            current = self.done
        if self.on_progress is not None:
            self.on_progress(min(current, self.total), self.total)


@dataclass(frozen=True)
class _Cut:
    """How one render pass cuts the signal: see :func:`_render_pass`."""

    chunk: int
    chunks: int
    warmup: int
    group: int  # windows built and run at once

    @property
    def work(self) -> int:
        """Samples the pass runs through the model, warm-ups included."""
        return self.chunks * (self.chunk + self.warmup)


def _cut(frames: int, warmup: int, recurrent: bool, workers: int, chunk: int | None) -> _Cut:
    """The cut for ``frames`` samples with this warm-up; ``chunk`` None picks the length."""
    if chunk is None:
        chunk = _auto_chunk(frames, warmup, recurrent, workers)
    chunks = max(1, math.ceil(max(frames - warmup, 0) / chunk))
    if chunks == 1:
        chunk, warmup = max(frames, 1), 0
    if recurrent:
        group = max(1, min(MAX_BATCH, MAX_GROUP_FRAMES // (chunk + warmup)))
    else:
        group = max(1, FEEDFORWARD_BLOCK_FRAMES // (chunk + warmup))
    return _Cut(chunk, chunks, warmup, group)


def _render_until_seams_agree(
    run: Callable[..., np.ndarray],
    audio: np.ndarray,
    warmup: int,
    recurrent: bool,
    workers: int,
    chunk: int | None,
    tolerance: float,
    progress: _Progress,
) -> tuple[np.ndarray, float, _Cut]:
    """Render pass after pass, doubling the warm-up until the seams agree: (output, seam, cut)."""
    frames = audio.size
    threads_before = torch.get_num_threads()
    try:
        # One intra-op thread: each step's operations are far too small to split (two threads
        # on one step measured 100x slower); parallelism comes from the chunks instead.
        torch.set_num_threads(1)
        with torch.inference_mode():
            while True:
                cut = _cut(frames, warmup, recurrent, workers, chunk)
                progress.restart(cut.work)
                output, seam = _render_pass(
                    run, audio, cut.chunk, cut.warmup, workers, cut.group, progress
                )
                if not recurrent:
                    seam = 0.0  # exact: the warm-up covers the receptive field
                # A model that remembers longer than the warm-up: run again with a longer one.
                if seam <= tolerance * SEAM_MARGIN or cut.chunks == 1 or cut.warmup >= frames:
                    return output, seam, cut
                warmup = min(2 * max(cut.warmup, 1), frames)
    finally:
        torch.set_num_threads(threads_before)


def render_with_stats(
    model: Any,
    audio: np.ndarray,
    knobs_normalised: Sequence[float] = (),
    *,
    sample_rate_hz: int = 48000,
    chunk_seconds: float | None = None,
    warmup_samples: int = DEFAULT_WARMUP_SAMPLES,
    workers: int = 1,
    tolerance: float = DEFAULT_TOLERANCE,
    on_progress: ProgressCallback | None = None,
    silence_samples: int = 0,
    initial_state: tuple[tuple[np.ndarray, np.ndarray], ...] = (),
) -> tuple[np.ndarray, RenderStats]:
    """Render ``audio`` through ``model``; see :func:`render`. Also returns :class:`RenderStats`."""
    started = time.perf_counter()
    audio = _checked_audio(audio, silence_samples)
    kept = audio.size
    knobs = [float(k) for k in knobs_normalised]
    config = getattr(model, "config", None)
    recurrent = bool(getattr(config, "recurrent", False))
    if silence_samples and recurrent:
        # Played before the audio and dropped, as a player warms a model up when it loads it.
        # A feed-forward model has no state to warm: it starts from silence by construction.
        audio = np.concatenate([np.zeros(silence_samples, dtype=np.float32), audio])
    expected_inputs = getattr(config, "input_size", 1 + len(knobs))
    if expected_inputs != 1 + len(knobs):
        raise UsageError(
            f"The model takes {expected_inputs - 1} knob value(s); {len(knobs)} were given."
        )
    if workers < 1:
        raise UsageError(f"workers must be at least 1, not {workers}.")
    run, warmup = _runner(model, knobs, warmup_samples, initial_state)
    chunk = None if chunk_seconds is None else max(1, round(chunk_seconds * sample_rate_hz))
    output, seam, cut = _render_until_seams_agree(
        run, audio, warmup, recurrent, workers, chunk, tolerance, _Progress(on_progress)
    )
    output = output[output.size - kept :] if kept else output[:0]
    stats = RenderStats(
        frames=kept,
        chunks=cut.chunks,
        chunk_samples=cut.chunk,
        warmup_samples=cut.warmup,
        seam_error=seam,
        workers=workers,
        wall_seconds=time.perf_counter() - started,
    )
    return output, stats


def render(
    model: Any,
    audio: np.ndarray,
    knobs_normalised: Sequence[float] = (),
    *,
    sample_rate_hz: int = 48000,
    chunk_seconds: float | None = None,
    warmup_samples: int = DEFAULT_WARMUP_SAMPLES,
    workers: int = 1,
    tolerance: float = DEFAULT_TOLERANCE,
    on_progress: ProgressCallback | None = None,
    silence_samples: int = 0,
    initial_state: tuple[tuple[np.ndarray, np.ndarray], ...] = (),
) -> np.ndarray:
    """Run ``model`` over ``audio`` in parallel chunks; the result matches one sequential pass.

    Parameters
    ----------
    model : torch.nn.Module
        An ampcap model (``config``; recurrent models have ``rec`` and ``lin``), e.g. from
        :func:`load_any_model`.
    audio : numpy.ndarray, float32, shape (frames,)
        Mono input at the model's sample rate.
    knobs_normalised : sequence of float
        One value in [0, 1] per knob input of the model, in its input order.
    sample_rate_hz : int, default 48000
        Only converts ``chunk_seconds`` to samples.
    chunk_seconds : float, optional
        Length each chunk contributes. Default: the signal cut into about 256 chunks (one batch),
        each at least two warm-ups long.
    warmup_samples : int, default 2048
        Samples each chunk after the first runs from zero state before its kept part. Doubled
        automatically until the seams agree within ``tolerance / 10`` (recurrent models);
        feed-forward models use their receptive field, which is exact.
    workers : int, default 1
        Threads sharing the chunks (each gets its own batch of about 256 chunks). Worth more
        than 1 only with idle cores; ``benchmarks/render.py`` measures both.
    tolerance : float, default 1e-4
        The largest difference from one sequential pass the render aims at; the warm-up is
        doubled while the seams differ by more than a tenth of it.
    on_progress : callable, optional
        ``on_progress(done, total)`` in samples of work (warm-ups included).
    silence_samples : int, default 0
        Recurrent models: samples of silence run through the model before the audio, their
        outputs dropped: a player's warm-up when it loads a model (:data:`PLAYER_WARMUP_SECONDS`).
    initial_state : tuple of (numpy.ndarray, numpy.ndarray), optional
        Recurrent models: per layer, the state (LSTM hidden and cell, shape (H,)) before the
        first sample, as a ``.nam`` file holds it. Default: zero state.

    Returns
    -------
    numpy.ndarray, float32, shape (frames,)
    """
    output, _ = render_with_stats(
        model,
        audio,
        knobs_normalised,
        sample_rate_hz=sample_rate_hz,
        chunk_seconds=chunk_seconds,
        warmup_samples=warmup_samples,
        workers=workers,
        tolerance=tolerance,
        on_progress=on_progress,
        silence_samples=silence_samples,
        initial_state=initial_state,
    )
    return output


def render_sequential(
    model: Any, audio: np.ndarray, knobs_normalised: Sequence[float] = ()
) -> np.ndarray:
    """The reference: the model's own forward pass over the whole signal at once, from silence.

    Slow for recurrent models (one sample per step at batch size 1); used to check :func:`render`.
    """
    audio = np.asarray(audio, dtype=np.float32)
    x = np.empty((1, audio.size, 1 + len(knobs_normalised)), dtype=np.float32)
    x[0, :, 0] = audio
    for j, value in enumerate(knobs_normalised):
        x[0, :, 1 + j] = value
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batch size 1: more threads only add synchronisation per step
    try:
        with torch.inference_mode():
            result = model(torch.from_numpy(x))
    finally:
        torch.set_num_threads(threads)
    y = result[0] if isinstance(result, tuple) else result
    return y[0, :, 0].numpy().astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Any model file ampcap wrote or exported


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to render, from a checkpoint or an exported file.

    Attributes
    ----------
    model : torch.nn.Module
        Eval mode, CPU.
    format : {"checkpoint", "nam", "proteus", "aidax"}
    sample_rate_hz : int or None
        ``None`` when the file does not say (CoreAudioML files written by other tools).
    knobs : tuple of Knob
        The knob inputs still open, in input order.
    folded_knobs : dict of str to float
        Knobs folded into the file at export, with their dial values.
    initial_state : tuple of (numpy.ndarray, numpy.ndarray)
        The state the file starts the model from (a ``.nam`` file's); empty for zero state.
    """

    model: Any
    format: str
    sample_rate_hz: int | None
    knobs: tuple[Knob, ...]
    folded_knobs: dict[str, float] = field(default_factory=dict)
    initial_state: tuple[tuple[np.ndarray, np.ndarray], ...] = ()


def load_any_model(path: str | Path) -> LoadedModel:
    """Load an ampcap checkpoint (``.pt``, or a run folder's ``model.pt``) or an exported file.

    Raises
    ------
    ModelFormatError
        Missing file, or a file that is none of the formats (the message lists them).
    """
    path = Path(path)
    if path.is_dir():
        if not (path / BEST_MODEL).is_file():
            raise ModelFormatError(
                f"{path} is a folder without {BEST_MODEL}; give a run folder, a checkpoint (.pt) "
                "or an exported .nam/.json file."
            )
        path = path / BEST_MODEL
    if not path.is_file():
        raise ModelFormatError(f"{path} does not exist; give a checkpoint or an exported model.")
    if path.suffix.lower() in (".nam", ".json"):
        exported = read_exported(path)
        return LoadedModel(
            model_from_weights(exported.weights),
            exported.format,
            exported.sample_rate_hz,
            exported.knobs,
            exported.folded_knobs,
            exported.weights.initial_state,
        )
    from ampcap.train.checkpoint import load_model

    model, checkpoint = load_model(path)
    return LoadedModel(
        model, "checkpoint", int(checkpoint["sample_rate_hz"]), checkpoint_knobs(checkpoint), {}
    )


@dataclass(frozen=True)
class RenderResult:
    """What :func:`render_file` did; times in seconds, rates in Hz."""

    out_path: Path
    model_format: str
    frames: int
    sample_rate_hz: int
    model_sample_rate_hz: int
    knobs: dict[str, float]
    audio_seconds: float
    wall_seconds: float
    stats: RenderStats
    peak_dbfs: float
    warmup_seconds: float = 0.0
    notices: tuple[str, ...] = ()

    @property
    def real_time_factor(self) -> float:
        """Seconds of audio rendered per second of wall-clock time."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else math.inf


def _resample(audio: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    from scipy.signal import resample_poly

    ratio = math.gcd(from_hz, to_hz)
    return resample_poly(audio, to_hz // ratio, from_hz // ratio).astype(np.float32)


def knob_inputs(loaded: LoadedModel, knobs: Mapping[str, float]) -> list[float]:
    """Normalised input values for the model's open knobs, from dial values by name.

    Raises
    ------
    UsageError
        An unknown knob (the model's knobs are listed with their ranges), a value outside a
        knob's range, an open knob without a value, or a value for a knob folded into the file
        at another setting.
    """
    values = dict(knobs)
    for name, folded in loaded.folded_knobs.items():
        if name in values:
            if not math.isclose(values.pop(name), folded, rel_tol=1e-9, abs_tol=1e-9):
                raise UsageError(
                    f"This file was exported with {knob_label({name: folded})} folded into the "
                    f"model; it cannot play another {name}. Render the checkpoint ({BEST_MODEL}) "
                    "instead, or export again at that setting."
                )
    normalised = normalised_setting(loaded.knobs, values, require_all=True)
    return [normalised[k.name] for k in loaded.knobs]


def render_file(
    model_path: str | Path,
    in_path: str | Path,
    out_path: str | Path,
    knobs: Mapping[str, float] | None = None,
    *,
    resample: bool = True,
    workers: int = 1,
    on_progress: ProgressCallback | None = None,
    warmup_seconds: float = PLAYER_WARMUP_SECONDS,
) -> RenderResult:
    """Render a mono audio file through a model and write float32 WAV.

    Parameters
    ----------
    model_path : path-like
        A checkpoint (``model.pt``), a run folder, or an exported ``.nam``/Proteus/AIDA-X file.
    in_path, out_path : path-like
        Mono input (WAV, FLAC, AIFF); the output is float32 WAV at the input's sample rate.
    knobs : mapping of str to float
        Dial value of every open knob, in the knob's own range (``{"isf": 3.3}``).
    resample : bool, default True
        When the file's rate differs from the model's, resample to the model's rate, render,
        and resample back (with a notice). When False, refuse.
    workers : int, default 1
    on_progress : callable, optional
        See :func:`render`.
    warmup_seconds : float, default 0.5
        Seconds of silence run through the model before the input, from the state the file
        starts it from (zero, or a ``.nam`` file's own), as NAM's core does when it loads a
        model. 0 starts the input from that state directly.

    Raises
    ------
    AudioFileError
        Missing, corrupt, stereo, NaN-holding input, or a rate mismatch with ``resample=False``.
    UsageError
        Bad knob values, or an ``out_path`` that is an input, a model or another file ampcap
        keeps (:func:`ampcap.outputs.check_output_file`).
    ModelFormatError
        A model file ampcap cannot read.
    """
    in_path, out_path = Path(in_path), Path(out_path)
    if not (math.isfinite(warmup_seconds) and warmup_seconds >= 0):
        raise UsageError(f"--warmup must be 0 seconds or more, not {warmup_seconds:g}.")
    model_path = Path(model_path)
    check_output_file(out_path, (model_path, in_path), option="OUT.wav")
    loaded = load_any_model(model_path)
    inputs = knob_inputs(loaded, knobs or {})
    audio, file_rate = _read_mono(in_path)
    model_rate, notices = _model_rate(loaded, file_rate, in_path, resample)
    output, stats, wall = _render_timed(
        loaded,
        audio,
        inputs,
        file_rate,
        model_rate,
        workers=workers,
        on_progress=on_progress,
        silence_samples=round(warmup_seconds * model_rate),
    )
    peak_dbfs, output_notices = _checked_output(output, stats, model_path, in_path, out_path)
    write_audio(out_path, output, file_rate)
    return RenderResult(
        out_path=out_path,
        model_format=loaded.format,
        frames=int(output.size),
        sample_rate_hz=file_rate,
        model_sample_rate_hz=model_rate,
        knobs=dict(knobs or {}),
        audio_seconds=output.size / file_rate,
        wall_seconds=wall,
        stats=stats,
        peak_dbfs=peak_dbfs,
        warmup_seconds=float(warmup_seconds),
        notices=tuple(notices + output_notices),
    )


def _read_mono(in_path: Path) -> tuple[np.ndarray, int]:
    """A mono file's samples (float32, shape (frames,)) and rate; refuses more channels."""
    info = audio_info(in_path)
    if info.channels != 1:
        raise AudioFileError(
            f"{in_path} has {info.channels} channels; a guitar model takes one. Mix or pick a "
            f"channel first (for example `sox {in_path.name} mono.wav remix 1`)."
        )
    samples, file_rate = read_audio(in_path, channels=1, allow_silence=True)
    return samples[:, 0], file_rate


def _model_rate(
    loaded: LoadedModel, file_rate: int, in_path: Path, resample: bool
) -> tuple[int, list[str]]:
    """The rate to render at (the model's, or the file's when the model does not say), notices.

    Raises
    ------
    AudioFileError
        The rates differ and ``resample`` is False.
    """
    notices = []
    model_rate = loaded.sample_rate_hz
    if model_rate is None:
        model_rate = file_rate
        notices.append(
            f"The model file does not say its sample rate; rendering at the input's {file_rate} Hz."
        )
    if file_rate != model_rate:
        if not resample:
            raise AudioFileError(
                f"{in_path} is at {file_rate} Hz but the model was trained at {model_rate} Hz. "
                f"Resample it (e.g. `sox {in_path.name} -r {model_rate} in-{model_rate}.wav`) or "
                "allow resampling."
            )
        notices.append(
            f"{in_path.name} is at {file_rate} Hz; resampled to the model's {model_rate} Hz for "
            f"rendering and back to {file_rate} Hz for the output."
        )
    return model_rate, notices


def _render_timed(
    loaded: LoadedModel,
    audio: np.ndarray,
    inputs: Sequence[float],
    file_rate: int,
    model_rate: int,
    *,
    workers: int,
    on_progress: ProgressCallback | None,
    silence_samples: int,
) -> tuple[np.ndarray, RenderStats, float]:
    """Render ``audio`` at the model's rate, resampling to it and back: (output, stats, seconds).

    The seconds count the render and the resampling back, not the resampling to the model's rate.
    """
    frames = audio.size
    if file_rate != model_rate:
        audio = _resample(audio, file_rate, model_rate)
    started = time.perf_counter()
    output, stats = render_with_stats(
        loaded.model,
        audio,
        inputs,
        sample_rate_hz=model_rate,
        workers=workers,
        on_progress=on_progress,
        silence_samples=silence_samples,
        initial_state=loaded.initial_state,
    )
    if file_rate != model_rate:
        output = _resample(output, model_rate, file_rate)[:frames]
    return output, stats, time.perf_counter() - started


def _checked_output(
    output: np.ndarray, stats: RenderStats, model_path: Path, in_path: Path, out_path: Path
) -> tuple[float, list[str]]:
    """The output's peak in dBFS, and notices: seams that disagree, a peak above full scale.

    Raises
    ------
    ModelFormatError
        NaN or infinite samples, or a peak above :data:`MAX_OUTPUT_DBFS`: damaged weights.
    """
    notices = []
    if stats.seam_error > DEFAULT_TOLERANCE * SEAM_MARGIN:
        notices.append(
            f"Chunk seams differ by up to {stats.seam_error:.1e} even with a warm-up of "
            f"{stats.warmup_samples} samples: the model remembers for a long time."
        )
    peak = float(np.max(np.abs(output))) if output.size else 0.0
    peak_dbfs = dbfs(peak)
    if not math.isfinite(peak) or peak_dbfs > MAX_OUTPUT_DBFS:
        what = (
            "NaN or infinite samples"
            if not math.isfinite(peak)
            else f"a signal peaking at {peak_dbfs:+.0f} dBFS"
        )
        raise ModelFormatError(
            f"{model_path} turned {in_path} into {what}; a model of an amp or pedal stays "
            f"within a few dB of full scale, and ampcap refuses anything above "
            f"{MAX_OUTPUT_DBFS:+.0f} dBFS. The model file is damaged or its weights were "
            f"changed; export it again from its run. Nothing was written to {out_path}."
        )
    if peak > 1.0:
        notices.append(
            f"The output peaks at {peak_dbfs:+.1f} dBFS; the float WAV keeps it, but lower the "
            "level before converting to 16 or 24 bit."
        )
    return peak_dbfs, notices
