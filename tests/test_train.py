"""The training loop: segments, TBPTT state handling, resume, divergence, end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from train_helpers import make_dataset, one_thread  # noqa: F401 (autouse fixture)

from ampcap.errors import TrainingError
from ampcap.schema.run import load_metrics, load_run
from ampcap.train import loop as loop_module
from ampcap.train.checkpoint import load_checkpoint, load_model
from ampcap.train.data import (
    BatchMaker,
    balanced_energies,
    epoch_batches,
    load_training_data,
    segment_starts,
    setting_energies,
    setting_key,
)
from ampcap.train.evaluate import predict_split, validation_scores
from ampcap.train.loop import TrainConfig, train_run, train_segments
from ampcap.train.loss import esr
from ampcap.train.model import build_model, make_config

FAST = dict(learning_rate=5e-3, batch_size=8, schedule="constant")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return load_training_data(make_dataset(tmp_path_factory.mktemp("data") / "toy"))


def test_segments_lie_inside_trained_pieces_and_shuffle_per_seed_and_epoch(tmp_path):
    data = load_training_data(
        make_dataset(tmp_path / "d", settings=(0.0, 5.0, 10.0), heldout=(5.0,), block_seconds=1.3)
    )
    split = data.splits["train"]
    segment = 4000  # 0.5 s at 8 kHz; a 1.3 s piece holds two, with 2400 samples to spare
    for epoch in range(3):
        starts = np.concatenate(epoch_batches(split, segment, 8, seed=0, epoch=epoch))
        assert starts.size == 2 * len(split.pieces)
        for start in starts:
            inside = [
                p
                for p in split.pieces
                if p.offset <= start and start + segment <= p.offset + p.length
            ]
            assert len(inside) == 1 and not inside[0].heldout
    again = epoch_batches(split, segment, 8, seed=0, epoch=1)
    first = epoch_batches(split, segment, 8, seed=0, epoch=1)
    other_epoch = epoch_batches(split, segment, 8, seed=0, epoch=2)
    other_seed = epoch_batches(split, segment, 8, seed=1, epoch=1)
    assert all(np.array_equal(a, b) for a, b in zip(again, first, strict=True))
    assert not np.array_equal(np.concatenate(first), np.concatenate(other_epoch))
    assert not np.array_equal(np.concatenate(first), np.concatenate(other_seed))
    assert all(b.size == 8 for b in first[:-1])
    # Without a generator the grid starts at each piece's first sample.
    grid = segment_starts(split.pieces, segment)
    assert set(grid.tolist()) == {p.offset + k * segment for p in split.pieces for k in (0, 1)}


class _Spy(torch.nn.Module):
    """Wraps a model and records what each call received and returned."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[dict] = []

    def forward(self, x, state=None):
        y, new_state = self.inner(x, state)
        self.calls.append(
            {
                "length": x.shape[1],
                "state_in": state,
                "state_out": new_state,
                "grad": torch.is_grad_enabled(),
            }
        )
        return y, new_state


def test_tbptt_carries_state_within_a_segment_and_resets_between_batches():
    torch.manual_seed(0)
    spy = _Spy(build_model(make_config("lstm", 2, 4)))
    optimizer = torch.optim.Adam(spy.parameters(), lr=1e-3)
    config = TrainConfig(warmup_samples=1000, tbptt_samples=2048)
    x, y = torch.randn(3, 6000, 2), torch.randn(3, 6000, 1)
    for _ in range(2):  # two mini-batches
        spy.calls.clear()
        _, updates = train_segments(spy, optimizer, x, y, config)
        # 1000 warm-up samples, then 2048, 2048 and the remaining 904.
        assert [c["length"] for c in spy.calls] == [1000, 2048, 2048, 904]
        assert updates == 3
        # Each mini-batch starts from zero state, and its warm-up builds no graph.
        assert spy.calls[0]["state_in"] is None and not spy.calls[0]["grad"]
        for before, after in zip(spy.calls, spy.calls[1:], strict=False):
            assert after["grad"]
            # The state handed on is the previous chunk's final state, cut from its graph.
            for carried, produced in zip(after["state_in"], before["state_out"], strict=True):
                assert not carried.requires_grad
                torch.testing.assert_close(carried, produced.detach(), atol=0, rtol=0)


def test_a_tiny_training_run_lowers_the_validation_loss(tmp_path, dataset):
    torch.manual_seed(0)
    untrained = build_model(make_config("lstm", 2, 8))
    before, _ = validation_scores(
        predict_split(untrained, dataset.splits["val"], 1000), balance=0.5
    )
    outcome = train_run(
        dataset, tmp_path / "run", make_config("lstm", 2, 8), TrainConfig(epochs=6, **FAST)
    )
    losses = [v["val_loss"] for v in outcome.history["validations"]]
    assert len(losses) == 3  # every other epoch
    assert losses[-1] < losses[0] < before
    assert outcome.best_val_loss == min(losses)
    assert outcome.status == "finished"
    assert [s.setting for s in outcome.test.settings] == ["tone=0", "tone=5", "tone=10"]
    assert 0 < outcome.test.esr < 1
    run = load_run(tmp_path / "run")
    assert run.status == "finished" and run.summary["test_esr"] == pytest.approx(outcome.test.esr)
    best = load_checkpoint(tmp_path / "run" / "model.pt")
    assert best["epoch"] == outcome.best_epoch
    assert best["dataset"]["manifest_sha256"] == dataset.manifest_sha256


def test_each_setting_weighs_alike_in_the_batches_and_the_validation(dataset):
    split = dataset.splits["train"]
    energies = setting_energies(split)
    assert set(energies) == {"tone=0", "tone=5", "tone=10"}
    # Each segment carries its own setting's energies, whatever its neighbours in the batch.
    maker = BatchMaker(split, 4800, balance=1.0)
    starts = segment_starts(split.pieces, 4800)
    x, y, energy = maker(starts)
    for row, start in enumerate(starts):
        piece = next(p for p in split.pieces if p.offset <= start < p.offset + p.length)
        expected = energies[setting_key(piece.knobs)]
        np.testing.assert_allclose(energy[row].numpy(), expected, rtol=1e-6)
    assert BatchMaker(split, 4800)(starts)[2] is None
    # The balanced validation score is the mean of the settings' own scores.
    torch.manual_seed(0)
    outputs = predict_split(build_model(make_config("lstm", 2, 4)), dataset.splits["val"], 1000)
    per_setting = {}
    for item in outputs:
        per_setting.setdefault(setting_key(item.piece.knobs), []).append(item)
    scores = [validation_scores(items) for items in per_setting.values()]
    loss, plain = validation_scores(outputs, balance=1.0)
    assert loss == pytest.approx(np.mean([s[0] for s in scores]))
    assert plain == pytest.approx(np.mean([s[1] for s in scores]))
    # Balance near 0 weighs each setting by its energy: the plain ESR pooled over all pieces.
    assert validation_scores(outputs, balance=1e-9)[1] == pytest.approx(
        validation_scores(outputs)[1], rel=1e-6
    )


def test_a_partial_balance_lies_between_pooled_and_per_setting_energies():
    energies = {"gain=1": (0.01, 0.04), "gain=10": (1.0, 4.0)}
    mean = np.array([0.505, 2.02])
    np.testing.assert_allclose(balanced_energies(energies, 1.0)["gain=1"], (0.01, 0.04))
    np.testing.assert_allclose(balanced_energies(energies, 0.0)["gain=1"], mean)
    half = balanced_energies(energies, 0.5)
    np.testing.assert_allclose(half["gain=1"], np.sqrt(np.array([0.01, 0.04]) * mean))
    # The quiet setting's error is divided by less than the mean energy, more than its own.
    assert 0.01 < half["gain=1"][0] < 0.505 and 0.505 < half["gain=10"][0] < 1.0


def test_resume_gives_the_same_model_as_an_uninterrupted_run(tmp_path, dataset):
    config = make_config("lstm", 2, 6)
    straight = train_run(dataset, tmp_path / "a", config, TrainConfig(epochs=4, **FAST))
    train_run(dataset, tmp_path / "b", config, TrainConfig(epochs=2, **FAST))
    resumed = train_run(dataset, tmp_path / "b", config, TrainConfig(epochs=4, **FAST), resume=True)
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == 4 and a["step"] == b["step"]
    for name, tensor in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], tensor, atol=0, rtol=0)
    assert resumed.test.esr == straight.test.esr
    assert [v["epoch"] for v in resumed.history["validations"]] == [2, 4]


def test_resume_refuses_another_architecture_or_dataset(tmp_path, dataset):
    train_run(dataset, tmp_path / "run", make_config("lstm", 2, 6), TrainConfig(epochs=2, **FAST))
    with pytest.raises(TrainingError, match="another architecture: arch 'lstm'"):
        train_run(
            dataset,
            tmp_path / "run",
            make_config("gru", 2, 6),
            TrainConfig(epochs=4, **FAST),
            resume=True,
        )
    other = load_training_data(make_dataset(tmp_path / "other", seed=7))
    with pytest.raises(TrainingError, match="another dataset"):
        train_run(
            other,
            tmp_path / "run",
            make_config("lstm", 2, 6),
            TrainConfig(epochs=4, **FAST),
            resume=True,
        )
    with pytest.raises(TrainingError, match="Nothing to resume"):
        train_run(
            dataset,
            tmp_path / "new",
            make_config("lstm", 2, 6),
            TrainConfig(epochs=4, **FAST),
            resume=True,
        )


def _poison_loss(monkeypatch, nan_at) -> None:
    """Make the training loss NaN at the updates (counted from 1) for which ``nan_at`` holds.

    Two epochs of the toy dataset are 36 updates, so update 37 is epoch 3's first.
    """
    real_loss = loop_module.esr_dc_loss
    calls = {"n": 0}

    def poisoned(output, target, **kwargs):
        calls["n"] += 1
        value = real_loss(output, target, **kwargs)
        return value * math.nan if nan_at(calls["n"]) else value

    monkeypatch.setattr(loop_module, "esr_dc_loss", poisoned)


@pytest.mark.parametrize("max_recoveries", [0, 2])
def test_a_nan_loss_that_persists_stops_with_a_message_and_keeps_the_last_good_checkpoint(
    tmp_path, dataset, monkeypatch, max_recoveries
):
    _poison_loss(monkeypatch, lambda n: n > 36)
    config = TrainConfig(epochs=6, max_recoveries=max_recoveries, **FAST)
    with pytest.raises(TrainingError, match=r"became nan in epoch 3.*checkpoints/last.pt"):
        train_run(dataset, tmp_path / "run", make_config("lstm", 2, 6), config)
    run = load_run(tmp_path / "run")
    assert run.status == "failed" and "became nan" in run.message
    assert ("2 recoveries" in run.message) == (max_recoveries == 2)
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last["epoch"] == 2
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())


def test_a_nan_loss_goes_back_to_the_last_checkpoint_at_half_the_learning_rate(
    tmp_path, dataset, monkeypatch
):
    # One NaN, in epoch 4 (update 3 of it): the run returns to epoch 2's checkpoint, trains
    # epochs 3-6 again at half the learning rate and ends normally.
    _poison_loss(monkeypatch, lambda n: n == 57)
    events = []
    outcome = train_run(
        dataset,
        tmp_path / "run",
        make_config("lstm", 2, 6),
        TrainConfig(epochs=6, **FAST),
        on_progress=events.append,
    )
    assert outcome.status == "finished" and outcome.epochs == 6
    recoveries = [e for e in events if e.kind == "recovery"]
    assert len(recoveries) == 1
    assert "epoch 4" in recoveries[0].note and "epoch 2" in recoveries[0].note
    history = load_metrics(tmp_path / "run")["history"]
    assert [e["epoch"] for e in history["epochs"]] == [1, 2, 3, 4, 5, 6]
    assert history["recoveries"] == [
        {
            "epoch": 4,
            "resumed_from_epoch": 2,
            "loss": "nan",
            "lr_scale": 0.5,
            "elapsed_s": history["recoveries"][0]["elapsed_s"],
        }
    ]
    rates = [e["learning_rate"] for e in history["epochs"]]
    assert rates[:2] == [FAST["learning_rate"]] * 2
    assert rates[2:] == [FAST["learning_rate"] / 2] * 4
    run = load_run(tmp_path / "run")
    assert run.status == "finished" and run.summary["recoveries"] == 1
    # Resuming keeps the halved rate and the record of the recovery.
    resumed = train_run(
        dataset,
        tmp_path / "run",
        make_config("lstm", 2, 6),
        TrainConfig(epochs=7, **FAST),
        resume=True,
    )
    assert resumed.history["epochs"][-1]["learning_rate"] == FAST["learning_rate"] / 2
    assert len(resumed.history["recoveries"]) == 1


# torch has no fused CPU kernel for the GRU's backward pass: it trains far slower than the LSTM.
@pytest.mark.parametrize("arch", [pytest.param("gru", marks=pytest.mark.slow), "wavenet", "mlp"])
def test_other_architectures_train_and_are_tested(tmp_path, dataset, arch):
    layers = 4 if arch == "wavenet" else None
    outcome = train_run(
        dataset, tmp_path / arch, make_config(arch, 2, 8, layers), TrainConfig(epochs=2, **FAST)
    )
    assert math.isfinite(outcome.test.esr) and len(outcome.test.settings) == 3
    assert load_checkpoint(tmp_path / arch / "model.pt")["model_config"]["arch"] == arch


def test_held_out_settings_are_scored_apart_from_the_trained_ones(tmp_path):
    data = load_training_data(make_dataset(tmp_path / "d", heldout=(5.0,)))
    assert not any(p.heldout for p in data.splits["train"].pieces)
    outcome = train_run(
        data, tmp_path / "run", make_config("lstm", 2, 6), TrainConfig(epochs=2, **FAST)
    )
    rows = {s.setting: s for s in outcome.test.settings}
    assert rows["tone=5"].heldout and not rows["tone=0"].heldout and not rows["tone=10"].heldout
    assert outcome.test.heldout_esr == pytest.approx(rows["tone=5"].esr)
    trained = [p for p in data.splits["test"].pieces if not p.heldout]
    outputs = [
        o
        for o in predict_split(
            load_model(tmp_path / "run" / "model.pt")[0], data.splits["test"], 1000
        )
        if not o.piece.heldout
    ]
    assert len(outputs) == len(trained)
    pooled = esr(
        np.concatenate([o.target for o in outputs]), np.concatenate([o.output for o in outputs])
    )
    assert outcome.test.esr == pytest.approx(pooled, rel=1e-6)
    assert outcome.test.esr_worst == max(rows["tone=0"].esr, rows["tone=10"].esr)


def test_cosine_schedule_runs_from_the_peak_to_the_floor_over_the_horizon():
    config = TrainConfig(learning_rate=1e-2, schedule="cosine", final_lr_fraction=0.05)
    floor = 1e-2 * 0.05
    assert loop_module.learning_rate_at(config, 0.0, 40.0) == pytest.approx(1e-2)
    assert loop_module.learning_rate_at(config, 20.0, 40.0) == pytest.approx((1e-2 + floor) / 2)
    assert loop_module.learning_rate_at(config, 40.0, 40.0) == pytest.approx(floor)
    assert loop_module.learning_rate_at(config, 55.0, 40.0) == pytest.approx(floor)
    constant = TrainConfig(learning_rate=5e-4, schedule="constant")
    assert loop_module.learning_rate_at(constant, 30.0, 40.0) == 5e-4


def test_the_seed_makes_training_repeatable(tmp_path, dataset):
    config = make_config("lstm", 2, 6)

    def weights(name: str, seed: int) -> dict:
        train_run(dataset, tmp_path / name, config, TrainConfig(epochs=2, seed=seed, **FAST))
        return load_checkpoint(tmp_path / name / "model.pt")["state_dict"]

    first, again, other = weights("a", 0), weights("b", 0), weights("c", 1)
    for name, tensor in first.items():
        torch.testing.assert_close(again[name], tensor, atol=0, rtol=0)
    assert any(not torch.equal(other[name], tensor) for name, tensor in first.items())
