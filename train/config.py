"""What a run is made of: the model's and the training's settings, each default written once.

Both dataclasses are stored in ``run.json`` and in every checkpoint. This module imports no
torch, so the command line can show their defaults in ``ampcap train --help`` without loading it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ampcap.errors import ModelFormatError, TrainingError

ARCHITECTURES = ("lstm", "gru", "wavenet", "mlp")
DEFAULT_ARCH = "lstm"
#: (hidden size, layers) of each architecture when not given: the DAFx-19 recurrent model,
#: Damskägg et al.'s smallest WaveNet (channels, dilated layers) and a small MLP (width, layers).
ARCH_DEFAULTS: dict[str, tuple[int, int]] = {
    "lstm": (32, 1),
    "gru": (32, 1),
    "wavenet": (16, 10),
    "mlp": (32, 2),
}
# (channels, layers) -> dilations of Damskägg et al.'s three WaveNets: one stack 1..512 for ten
# layers, two stacks 1..256 for eighteen. Their paper names them by these two numbers.
WAVENET_PRESETS: dict[tuple[int, int], tuple[int, ...]] = {
    (16, 10): tuple(2**i for i in range(10)),
    (8, 18): tuple(2**i for i in range(9)) * 2,
    (16, 18): tuple(2**i for i in range(9)) * 2,
}
DEFAULT_MLP_WINDOW = 128
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class ModelConfig:
    """What :func:`ampcap.train.model.build_model` needs to rebuild a model.

    Attributes
    ----------
    arch : {"lstm", "gru", "wavenet", "mlp"}
    input_size : int
        1 (audio) + number of knobs.
    hidden_size : int
        Recurrent units (lstm/gru), channels (wavenet) or units per layer (mlp).
    num_layers : int
        Recurrent layers (lstm/gru), dilated layers (wavenet) or hidden layers (mlp).
    skip : bool
        Add the audio input to the output (``y += x[..., :1]``).
    kernel_size : int
        WaveNet only: taps of each dilated convolution.
    dilations : tuple of int
        WaveNet only: the dilation of each layer, ``num_layers`` entries.
    window : int
        MLP only: audio samples the model sees (the current one and ``window - 1`` before it).
    """

    arch: str
    input_size: int
    hidden_size: int = ARCH_DEFAULTS[DEFAULT_ARCH][0]
    num_layers: int = ARCH_DEFAULTS[DEFAULT_ARCH][1]
    skip: bool = False
    kernel_size: int = 3
    dilations: tuple[int, ...] = ()
    window: int = 0

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise TrainingError(
                f"Unknown model architecture {self.arch!r}; use one of {', '.join(ARCHITECTURES)}."
            )
        for name in ("input_size", "hidden_size", "num_layers"):
            if int(getattr(self, name)) < 1:
                raise TrainingError(f"{name} must be at least 1, not {getattr(self, name)}.")
        if self.arch == "wavenet":
            if len(self.dilations) != self.num_layers or any(d < 1 for d in self.dilations):
                raise TrainingError(
                    f"A WaveNet with {self.num_layers} layers needs {self.num_layers} positive "
                    f"dilations, not {list(self.dilations)}."
                )
            if self.kernel_size < 2:
                raise TrainingError(
                    f"WaveNet kernel_size must be at least 2, not {self.kernel_size}."
                )
        if self.arch == "mlp" and self.window < 1:
            raise TrainingError(f"An MLP needs a window of at least 1 sample, not {self.window}.")

    @property
    def recurrent(self) -> bool:
        return self.arch in ("lstm", "gru")

    @property
    def receptive_field(self) -> int:
        """Input samples each output sample depends on (0: unbounded, a recurrent model)."""
        if self.arch == "wavenet":
            return 1 + (self.kernel_size - 1) * sum(self.dilations)
        if self.arch == "mlp":
            return self.window
        return 0

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["dilations"] = list(self.dilations)
        return document

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild from :meth:`to_dict`; unknown keys are refused by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelFormatError(
                f"The model configuration has unknown key(s) {', '.join(unknown)}; it was written "
                "by another version of ampcap."
            )
        values = dict(data)
        values["dilations"] = tuple(int(d) for d in values.get("dilations", ()))
        try:
            return cls(**values)
        except TypeError as exc:
            raise ModelFormatError(f"The model configuration is incomplete ({exc}).") from exc


def make_config(
    arch: str,
    input_size: int,
    hidden_size: int | None = None,
    num_layers: int | None = None,
    skip: bool = False,
    window: int | None = None,
) -> ModelConfig:
    """A :class:`ModelConfig` with each architecture's defaults filled in.

    ``hidden_size``/``num_layers`` default to :data:`ARCH_DEFAULTS`. A WaveNet takes its
    dilations from :data:`WAVENET_PRESETS`; other sizes get stacks of 1..512 (ten layers a
    stack). An MLP sees :data:`DEFAULT_MLP_WINDOW` samples unless ``window`` is given.
    """
    arch = arch.lower()
    default_hidden, default_layers = ARCH_DEFAULTS.get(arch, ARCH_DEFAULTS[DEFAULT_ARCH])
    hidden = default_hidden if hidden_size is None else hidden_size
    layers = default_layers if num_layers is None else num_layers
    if arch == "wavenet":
        dilations = WAVENET_PRESETS.get(
            (hidden, layers), tuple(2 ** (i % 10) for i in range(max(layers, 0)))
        )
        return ModelConfig(arch, input_size, hidden, layers, skip, dilations=dilations)
    if arch == "mlp":
        window = DEFAULT_MLP_WINDOW if window is None else window
        return ModelConfig(arch, input_size, hidden, layers, skip, window=window)
    return ModelConfig(arch, input_size, hidden, layers, skip)


@dataclass(frozen=True)
class TrainConfig:
    """How to train; stored in ``run.json`` and every checkpoint.

    Attributes
    ----------
    epochs : int
        Epochs in all (a resumed run counts the epochs already done).
    minutes : float or None
        Wall-clock budget for this invocation's training, in minutes (evaluation not included).
    patience_epochs : int
        Stop when the best validation loss is this many epochs old.
    seed : int
        Seeds the initial parameters and every epoch's shuffle.
    device : str
        "cpu" or "cuda" (resolved; see :func:`ampcap.train.loop.resolve_device`).
    threads : int
        Intra-op threads on the CPU (1: robust when other programs share the cores).
    segment_seconds : float
        Length of the training segments cut inside pieces, in seconds (DAFx-19: 0.5 s).
    batch_size : int
        Segments per mini-batch (DAFx-19: 40).
    warmup_samples : int
        Samples run without updates at the start of each mini-batch (DAFx-19: 1000); also the
        unscored start of every validation and test piece.
    tbptt_samples : int
        Samples between updates, and the back-propagation length (DAFx-19: 2048).
    learning_rate : float
        Adam's (peak) learning rate. DAFx-19 used 5e-4, constant; ampcap starts twenty times
        higher and decays (``schedule``), which reaches a given test ESR in far fewer epochs.
    schedule : {"constant", "cosine"}
        ``cosine`` decays from ``learning_rate`` to ``learning_rate * final_lr_fraction``
        over the run's horizon.
    final_lr_fraction : float
    grad_clip : float
        Clip the gradient's global norm to this (0: no clipping).
    validate_every : int
        Epochs between validations (DAFx-19: 2).
    setting_balance : float in [0, 1]
        How evenly the loss weighs knob settings of different loudness. 0 is DAFx-19's loss,
        the ESR pooled over each mini-batch, where a quiet knob setting hardly counts. Above 0
        each segment's error is divided by an energy of its own setting
        (:func:`ampcap.train.data.balanced_energies`); 1 makes every setting weigh the same.
        The validation that picks the best model weighs the settings the same way.
    max_recoveries : int
        How many times a loss that becomes NaN or infinite is recovered from: the run goes back
        to its last checkpoint and goes on at half the learning rate. One more stops the run.
    """

    epochs: int = 200
    minutes: float | None = None
    patience_epochs: int = 50
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    segment_seconds: float = 0.5
    batch_size: int = 40
    warmup_samples: int = 1000
    tbptt_samples: int = 2048
    learning_rate: float = 1e-2
    schedule: str = "cosine"
    final_lr_fraction: float = 0.05
    grad_clip: float = 1.0
    validate_every: int = 2
    setting_balance: float = 0.25
    max_recoveries: int = 3

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise TrainingError(
                f"epochs (passes over the training split, in all) must be 1 or more, "
                f"not {self.epochs}."
            )
        if self.minutes is not None and self.minutes <= 0:
            raise TrainingError(
                f"minutes (the training time budget) must be above 0, not {self.minutes}."
            )
        if self.patience_epochs < 1:
            raise TrainingError(
                "patience_epochs (epochs without a better validation loss before training "
                f"stops) must be 1 or more, not {self.patience_epochs}."
            )
        if not 0 <= self.setting_balance <= 1:
            raise TrainingError(
                "setting_balance must be between 0 (the error pooled over each batch) and 1 "
                f"(every knob setting weighs alike), not {self.setting_balance}."
            )
        if self.max_recoveries < 0:
            raise TrainingError(
                "max_recoveries (times a NaN or infinite loss is recovered from) must be 0 or "
                f"more, not {self.max_recoveries}."
            )
        if self.schedule not in SCHEDULES:
            raise TrainingError(
                f"Unknown schedule {self.schedule!r}; use one of {', '.join(SCHEDULES)}."
            )
        if self.batch_size < 1 or self.tbptt_samples < 2 or self.warmup_samples < 0:
            raise TrainingError(
                f"Batch size {self.batch_size}, TBPTT length {self.tbptt_samples} and warm-up "
                f"{self.warmup_samples} must be at least 1, 2 and 0."
            )
        if not 0 < self.learning_rate < 1:
            raise TrainingError(f"The learning rate must be in (0, 1), not {self.learning_rate}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        # Runs written before the loss could weigh settings were trained with the pooled one.
        data = {"setting_balance": 0.0, **data}
        return cls(**{k: v for k, v in data.items() if k in known})
