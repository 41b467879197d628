"""Plain-numpy inference of each player file, written from the format descriptions alone.

These functions read the JSON a player would read and step the recurrent equations sample by
sample in float64, without any ampcap code: they are the independent side of the export tests.

- LSTM (PyTorch and NAM gate order i, f, g, o):
  ``i, f, o = sigmoid(...)``, ``g = tanh(...)``, ``c = f c + i g``, ``h = o tanh(c)``.
- GRU, PyTorch (r, z, n): ``n = tanh(W_in x + b_in + r (W_hn h + b_hn))``,
  ``h = (1 - z) n + z h``.
- GRU, RTNeural (z, r, h; kernel ``in x 3H``, recurrent ``H x 3H``, bias ``2 x 3H`` = input
  row, recurrent row): ``c = tanh(x W_c + b0_c + r (h U_c + b1_c))``, ``h = (1 - z) c + z h``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def _inputs(audio: np.ndarray, knobs: list[float]) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float64)
    columns = [audio] + [np.full_like(audio, k) for k in knobs]
    return np.stack(columns, axis=1)


def _lstm_step(pre: np.ndarray, c: np.ndarray, hidden: int) -> tuple[np.ndarray, np.ndarray]:
    i = _sigmoid(pre[:hidden])
    f = _sigmoid(pre[hidden : 2 * hidden])
    g = np.tanh(pre[2 * hidden : 3 * hidden])
    o = _sigmoid(pre[3 * hidden :])
    c = f * c + i * g
    return o * np.tanh(c), c


def nam_reference(path: Path, audio: np.ndarray) -> np.ndarray:
    """Run a ``.nam`` LSTM file: audio in, one output sample per input sample."""
    doc = json.loads(Path(path).read_text())
    assert doc["architecture"] == "LSTM"
    cfg = doc["config"]
    n_in, hidden, n_layers = cfg["input_size"], cfg["hidden_size"], cfg["num_layers"]
    w = np.asarray(doc["weights"], dtype=np.float64)
    at = 0
    layers = []
    for k in range(n_layers):
        width = n_in if k == 0 else hidden
        size = 4 * hidden * (width + hidden)
        matrix = w[at : at + size].reshape(4 * hidden, width + hidden)
        at += size
        bias = w[at : at + 4 * hidden]
        at += 4 * hidden
        h0 = w[at : at + hidden].copy()
        at += hidden
        c0 = w[at : at + hidden].copy()
        at += hidden
        layers.append([matrix, bias, h0, c0])
    head_w = w[at : at + hidden]
    head_b = w[at + hidden]
    assert at + hidden + 1 == w.size, "weights left over"
    out = np.empty(len(audio))
    for t, x in enumerate(np.asarray(audio, dtype=np.float64)):
        v = np.array([x])
        for layer in layers:
            matrix, bias, h, c = layer
            pre = matrix @ np.concatenate([v, h]) + bias
            h, c = _lstm_step(pre, c, hidden)
            layer[2], layer[3] = h, c
            v = h
        out[t] = head_w @ v + head_b
    return out


def proteus_reference(path: Path, audio: np.ndarray, knobs: list[float]) -> np.ndarray:
    """Run a CoreAudioML/Proteus file with the given normalised knob inputs."""
    doc = json.loads(Path(path).read_text())
    data, sd = doc["model_data"], doc["state_dict"]
    hidden = data["hidden_size"]
    w_ih = np.asarray(sd["rec.weight_ih_l0"], dtype=np.float64)
    w_hh = np.asarray(sd["rec.weight_hh_l0"], dtype=np.float64)
    b_ih = np.asarray(sd["rec.bias_ih_l0"], dtype=np.float64)
    b_hh = np.asarray(sd["rec.bias_hh_l0"], dtype=np.float64)
    lin_w = np.asarray(sd["lin.weight"], dtype=np.float64)[0]
    lin_b = float(sd["lin.bias"][0])
    xs = _inputs(audio, knobs)
    assert xs.shape[1] == data["input_size"]
    h = np.zeros(hidden)
    c = np.zeros(hidden)
    out = np.empty(len(xs))
    for t, x in enumerate(xs):
        if data["unit_type"] == "LSTM":
            h, c = _lstm_step(w_ih @ x + b_ih + w_hh @ h + b_hh, c, hidden)
        else:
            gi = w_ih @ x + b_ih
            gh = w_hh @ h + b_hh
            r = _sigmoid(gi[:hidden] + gh[:hidden])
            z = _sigmoid(gi[hidden : 2 * hidden] + gh[hidden : 2 * hidden])
            n = np.tanh(gi[2 * hidden :] + r * gh[2 * hidden :])
            h = (1 - z) * n + z * h
        out[t] = lin_w @ h + lin_b + (x[0] if data["skip"] else 0.0)
    return out


def aidax_reference(path: Path, audio: np.ndarray, knobs: list[float]) -> np.ndarray:
    """Run an AIDA-X/RTNeural file (lstm or gru layers, then one dense layer)."""
    doc = json.loads(Path(path).read_text())
    xs = _inputs(audio, knobs)
    assert xs.shape[1] == doc["in_shape"][-1]
    rec_layers = doc["layers"][:-1]
    dense = doc["layers"][-1]
    assert dense["type"] == "dense"
    arrays = [[np.asarray(w, dtype=np.float64) for w in layer["weights"]] for layer in rec_layers]
    states = [[np.zeros(layer["shape"][-1]), np.zeros(layer["shape"][-1])] for layer in rec_layers]
    kernel_d = np.asarray(dense["weights"][0], dtype=np.float64)
    bias_d = np.asarray(dense["weights"][1], dtype=np.float64)
    out = np.empty(len(xs))
    for t, x in enumerate(xs):
        v = x
        for layer, (kernel, recurrent, bias), state in zip(rec_layers, arrays, states, strict=True):
            hidden = layer["shape"][-1]
            h, c = state
            if layer["type"] == "lstm":
                h, c = _lstm_step(v @ kernel + h @ recurrent + bias, c, hidden)
            else:
                kx = v @ kernel
                uh = h @ recurrent
                z = _sigmoid(kx[:hidden] + uh[:hidden] + bias[0, :hidden] + bias[1, :hidden])
                r = _sigmoid(
                    kx[hidden : 2 * hidden]
                    + uh[hidden : 2 * hidden]
                    + bias[0, hidden : 2 * hidden]
                    + bias[1, hidden : 2 * hidden]
                )
                cand = np.tanh(
                    kx[2 * hidden :]
                    + bias[0, 2 * hidden :]
                    + r * (uh[2 * hidden :] + bias[1, 2 * hidden :])
                )
                h = (1 - z) * cand + z * h
            state[0], state[1] = h, c
            v = h
        out[t] = (v @ kernel_d)[0] + bias_d[0] + (x[0] if doc.get("in_skip") else 0.0)
    return out
