"""Models: sizes from the paper, chunked processing, skip, causality, checkpoints."""

from __future__ import annotations

import pickle

import pytest
import torch
from train_helpers import one_thread  # noqa: F401 (autouse fixture)

from ampcap.errors import ModelFormatError, TrainingError
from ampcap.train.checkpoint import load_checkpoint, load_model, save_checkpoint
from ampcap.train.model import ModelConfig, build_model, make_config, parameter_count

KNOBS = [{"name": "isf", "minimum": 0.0, "maximum": 10.0}]


@pytest.mark.parametrize(
    ("arch", "hidden", "expected"),
    # DAFx-19 Tables 1 and 2, which count the audio input only: GRU32 3393, LSTM32 4513,
    # LSTM48 9841, LSTM64 17217, LSTM96 38113 parameters.
    [
        ("gru", 32, 3393),
        ("lstm", 32, 4513),
        ("lstm", 48, 9841),
        ("lstm", 64, 17217),
        ("lstm", 96, 38113),
    ],
)
def test_recurrent_parameter_counts_match_the_paper(arch, hidden, expected):
    model = build_model(make_config(arch, 1, hidden))
    assert parameter_count(model) == expected
    # Each knob input adds one column to the input weights of every gate.
    gates = 4 if arch == "lstm" else 3
    assert parameter_count(build_model(make_config(arch, 2, hidden))) == expected + gates * hidden
    assert isinstance(model.rec, torch.nn.LSTM if arch == "lstm" else torch.nn.GRU)
    assert model.rec.batch_first
    assert model.lin.in_features == hidden and model.lin.out_features == 1


@pytest.mark.parametrize("arch", ["lstm", "gru", "wavenet", "mlp"])
def test_chunked_processing_equals_one_pass(arch):
    torch.manual_seed(0)
    config = make_config(arch, 2, 8, 3 if arch == "wavenet" else None, skip=True)
    model = build_model(config).eval()
    x = torch.randn(3, 3000, 2)
    with torch.no_grad():
        whole, _ = model(x)
        state, parts = None, []
        for start in range(0, 3000, 701):  # chunks shorter than the WaveNet's receptive field
            y, state = model(x[:, start : start + 701], state)
            parts.append(y)
    assert whole.shape == (3, 3000, 1)
    torch.testing.assert_close(torch.cat(parts, dim=1), whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("arch", ["lstm", "gru", "wavenet", "mlp"])
def test_skip_adds_the_audio_channel_only(arch):
    torch.manual_seed(0)
    plain = build_model(make_config(arch, 3, 8, 2 if arch != "lstm" else None, skip=False))
    skipped = build_model(make_config(arch, 3, 8, 2 if arch != "lstm" else None, skip=True))
    skipped.load_state_dict(plain.state_dict())
    x = torch.randn(2, 500, 3)
    with torch.no_grad():
        difference = skipped(x)[0] - plain(x)[0]
    torch.testing.assert_close(difference, x[..., :1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("arch", ["wavenet", "mlp"])
def test_feed_forward_models_are_causal_with_the_stated_receptive_field(arch):
    torch.manual_seed(0)
    config = make_config(arch, 1, 4, 3 if arch == "wavenet" else 2, window=16)
    model = build_model(config).eval()
    field = config.receptive_field
    x = torch.zeros(1, 3 * field, 1)
    impulse = x.clone()
    impulse[0, field, 0] = 1.0
    with torch.no_grad():
        changed = (model(impulse)[0] - model(x)[0]).abs()[0, :, 0] > 0
    positions = torch.nonzero(changed).flatten()
    # The impulse at n = field moves outputs field .. 2 field - 1 and nothing else.
    assert positions.min().item() == field
    assert positions.max().item() == 2 * field - 1


def test_wavenet_presets_are_damskaegg_et_al_sizes():
    for (channels, layers), receptive in (((16, 10), 2047), ((8, 18), 2045), ((16, 18), 2045)):
        config = make_config("wavenet", 1, channels, layers)
        assert config.receptive_field == receptive
        assert len(config.dilations) == layers


def test_bad_configurations_name_the_value():
    with pytest.raises(TrainingError, match="'transformer'"):
        ModelConfig("transformer", 2)
    with pytest.raises(TrainingError, match="hidden_size"):
        ModelConfig("lstm", 2, hidden_size=0)
    with pytest.raises(ModelFormatError, match="colour"):
        ModelConfig.from_dict({**make_config("lstm", 2).to_dict(), "colour": "red"})


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    torch.manual_seed(0)
    config = make_config("lstm", 2, 16, skip=True)
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(1, 10, 2))[0].sum().backward()
    optimizer.step()
    path = tmp_path / "model.pt"
    save_checkpoint(
        path,
        model,
        config,
        knobs=KNOBS,
        sample_rate_hz=48000,
        epoch=3,
        step=42,
        best_val_loss=0.25,
        optimizer_state=optimizer.state_dict(),
        dataset={"path": "data/x", "manifest_sha256": "ab" * 32},
    )
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "ampcap-checkpoint" and raw["version"] == 1
    assert raw["model_config"] == config.to_dict()
    loaded, checkpoint = load_model(path)
    assert checkpoint["epoch"] == 3 and checkpoint["step"] == 42
    assert checkpoint["knobs"] == KNOBS and checkpoint["sample_rate_hz"] == 48000
    x = torch.randn(2, 100, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], model.eval()(x)[0], atol=0, rtol=0)


class _Payload:
    """An arbitrary Python object: unpickling it would run code from the file."""


def test_a_checkpoint_that_needs_unpickling_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "ampcap-checkpoint", "object": _Payload()}, path, pickle_module=pickle)
    with pytest.raises(ModelFormatError, match="refuses to unpickle"):
        load_checkpoint(path)


def test_other_files_are_refused_with_a_reason(tmp_path):
    with pytest.raises(ModelFormatError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ModelFormatError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ModelFormatError, match="not an ampcap checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
