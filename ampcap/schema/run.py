"""The training run manifest, ``runs/<name>/run.json``.

A run folder holds ``run.json`` (this schema), ``checkpoints/last.pt`` (written at every
validation), ``model.pt`` (the parameters with the best validation loss), ``metrics.json``
(training curves and test results), ``report.html`` with its PNGs, and ``exports/``.
``run.json`` ties the run to its dataset (path and manifest hash) and says where it stands.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ampcap.errors import TrainingError
from ampcap.files import atomic_write_json, read_json
from ampcap.schema.fields import build, expect_version
from ampcap.schema.session import Knob

SCHEMA_VERSION = 1
MANIFEST_NAME = "run.json"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "checkpoints/last.pt"
BEST_MODEL = "model.pt"
METRICS_NAME = "metrics.json"
EXPORTS_DIR = "exports"
# running: training now (or killed while training); stopped: ended early by the time budget,
# patience or Ctrl-C with a usable model; finished: ran its epochs; failed: stopped by an error
# (the last good checkpoint is kept).
STATUSES = ("running", "stopped", "finished", "failed")


@dataclass(frozen=True)
class _ModelShape:
    """What the report and ``--resume`` read of ``model_config`` (the trainer checks the rest)."""

    arch: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    skip: bool = False


# The only settings of train_config written as text; every other one is a number or null.
_TEXT_SETTINGS = ("device", "schedule")


def _check_flat(values: dict[str, Any], name: str, where: str, advice: str) -> None:
    """``train_config`` and ``summary`` hold finite numbers (or null), and a few named texts."""
    for key, value in values.items():
        if name == "train_config" and key in _TEXT_SETTINGS:
            ok, kind = isinstance(value, str), "text"
        else:
            ok = value is None or (isinstance(value, (int, float)) and math.isfinite(value))
            kind = "a number"
        if not ok:
            raise TrainingError(
                f"{where} is damaged: {name}.{key} should be {kind}, not {value!r}. {advice}"
            )


@dataclass(frozen=True)
class RunManifest:
    """What a run is and where it stands.

    Attributes
    ----------
    model_config : dict
        ``ModelConfig.to_dict()`` of the model.
    train_config : dict
        The training settings (segment, batch, warm-up, TBPTT length, learning rate...).
    dataset_path : str
        The dataset folder as given to ``ampcap train``.
    dataset_manifest_sha256 : str
        SHA-256 of the dataset's ``manifest.json``; resuming on another dataset is refused.
    status : str
        One of :data:`STATUSES`.
    message : str or None
        Why the run stopped, in words.
    summary : dict
        Headline numbers: ``epochs``, ``steps``, ``best_epoch``, ``best_val_loss``,
        ``best_val_esr``, ``train_seconds``, ``samples_per_second``, ``test_esr`` (pooled),
        ``test_esr_worst``, ``heldout_esr``...
    """

    schema_version: int
    ampcap_version: str
    created_at: str
    updated_at: str
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    dataset_path: str
    dataset_manifest_sha256: str
    sample_rate_hz: int
    knobs: tuple[dict[str, Any], ...]
    status: str = "running"
    message: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def updated(self, **changes: Any) -> RunManifest:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["knobs"] = list(self.knobs)
        return document

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = MANIFEST_NAME) -> RunManifest:
        """Read a run manifest; a damaged one raises :class:`TrainingError` naming the field."""
        advice = "Restore the file, or train again into a new --out folder."
        expect_version(
            data,
            SCHEMA_VERSION,
            where,
            TrainingError,
            advice,
            "Train the run again with this version.",
        )
        manifest = build(cls, data, where, TrainingError, advice)
        build(
            _ModelShape, manifest.model_config, where, TrainingError, advice, prefix="model_config"
        )
        for index, knob in enumerate(manifest.knobs):
            build(Knob, knob, where, TrainingError, advice, prefix=f"knobs[{index}]")
        _check_flat(manifest.train_config, "train_config", where, advice)
        _check_flat(manifest.summary, "summary", where, advice)
        if manifest.status not in STATUSES:
            raise TrainingError(
                f"{where} is damaged: status is {manifest.status!r}, not one of "
                f"{', '.join(STATUSES)}. {advice}"
            )
        return manifest


def load_run(folder: str | Path) -> RunManifest:
    """Read ``folder/run.json``; a folder that is not a run gets a message saying so."""
    path = Path(folder) / MANIFEST_NAME
    if not path.exists():
        raise TrainingError(
            f"{folder} is not a training run: it has no {MANIFEST_NAME}. Train one with "
            "`ampcap train DATA --out FOLDER`."
        )
    return RunManifest.from_dict(read_json(path, "an ampcap run manifest"), str(path))


def save_run(folder: str | Path, manifest: RunManifest) -> None:
    """Replace ``folder/run.json`` atomically."""
    atomic_write_json(Path(folder) / MANIFEST_NAME, manifest.to_dict())


@dataclass(frozen=True)
class _EpochRow:
    epoch: int
    train_loss: float | None
    seconds: float | None
    learning_rate: float | None


@dataclass(frozen=True)
class _ValidationRow:
    epoch: int
    step: int
    elapsed_s: float | None
    train_loss: float | None
    val_loss: float | None
    val_esr: float | None
    learning_rate: float | None


@dataclass(frozen=True)
class _RecoveryRow:
    epoch: int
    resumed_from_epoch: int
    loss: str
    lr_scale: float
    elapsed_s: float | None


@dataclass(frozen=True)
class _History:
    epochs: tuple[_EpochRow, ...] = ()
    validations: tuple[_ValidationRow, ...] = ()
    recoveries: tuple[_RecoveryRow, ...] = ()


@dataclass(frozen=True)
class _SettingRow:
    setting: str
    knobs: dict[str, float]
    heldout: bool
    esr: float | None
    mr_stft: float | None
    loudness_diff_db: float | None
    seconds: float


@dataclass(frozen=True)
class _TestScores:
    settings: tuple[_SettingRow, ...]
    esr: float | None
    esr_mean: float | None
    esr_worst: float | None
    heldout_esr: float | None = None


@dataclass(frozen=True)
class _Metrics:
    """The shape of ``metrics.json``: training curves and, once tested, the test scores."""

    history: _History | None = None
    test: _TestScores | None = None


def load_metrics(folder: str | Path) -> dict[str, Any]:
    """Read ``folder/metrics.json`` (as written), every field checked; damaged raises
    :class:`TrainingError` naming the field."""
    path = Path(folder) / METRICS_NAME
    document = read_json(path, "an ampcap run's metrics")
    advice = "Restore it, or resume the run with `ampcap train ... --resume` to rewrite it."
    build(_Metrics, document, str(path), TrainingError, advice)
    return document
