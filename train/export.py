"""Exporting a trained model for the players: one file, or every file a run folder gets.

Where the pieces live:

- :mod:`ampcap.train.weights`: :class:`~ampcap.train.weights.RecurrentWeights`, the neutral form
  of a recurrent model every format is written from; moving weights between torch and arrays;
  folding knobs into the bias.
- :mod:`ampcap.train.nam`, :mod:`ampcap.train.proteus`, :mod:`ampcap.train.aidax`: each player
  format's writer, reader and warnings (layouts of ``FORMATS.md``);
  :mod:`ampcap.train.nam_metadata` the start state, loudness and gain a ``.nam`` file carries.
- :mod:`ampcap.train.model_file`: what the three files share (the ``"ampcap"`` object, checked
  arrays); :mod:`ampcap.train.formats`: a document in any format, any file read back.
- this module: :func:`export_model` (one file, ``ampcap export``) and :func:`write_exports`
  (``runs/<name>/exports/`` and its ``index.json``, after training), and the files' names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ampcap.errors import AmpcapError, ModelFormatError, UsageError
from ampcap.files import atomic_write_json, read_json
from ampcap.labels import knob_label
from ampcap.outputs import check_output_file
from ampcap.schema.run import BEST_MODEL, EXPORTS_DIR, MANIFEST_NAME
from ampcap.schema.session import Knob
from ampcap.train.formats import FORMATS, player_document
from ampcap.train.nam import NamMetadata, check_nam_compatible
from ampcap.train.weights import (
    RecurrentWeights,
    checkpoint_knobs,
    fold_knobs,
    normalised_setting,
    weights_from_model,
)

INDEX_NAME = "index.json"
# Proteus and AIDA-X files keep the knobs as the player's own inputs; .nam files fold them in.
_PLAYER_FORMATS = ("proteus", "aidax")


@dataclass(frozen=True)
class ExportResult:
    """One file written: its path, format, the knob setting folded in (dial values) and warnings."""

    path: Path
    format: str
    folded_knobs: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Trained:
    """A trained model's weights with what its checkpoint says about them."""

    weights: RecurrentWeights
    knobs: tuple[Knob, ...]
    sample_rate_hz: int


def _trained(model: Any, checkpoint: Mapping[str, Any]) -> _Trained:
    knobs = checkpoint_knobs(checkpoint)
    sample_rate_hz = int(checkpoint["sample_rate_hz"])
    return _Trained(weights_from_model(model, [k.name for k in knobs]), knobs, sample_rate_hz)


def default_file_name(stem: str, fmt: str, setting: Mapping[str, float]) -> str:
    """``demo-isf=3.3.nam``, ``demo-proteus.json``, ``demo-aidax.json``..."""
    label = f"-{knob_label(setting)}" if setting else ""
    return f"{stem}{label}.nam" if fmt == "nam" else f"{stem}{label}-{fmt}.json"


def _write_file(
    trained: _Trained,
    fmt: str,
    path: Path,
    setting: Mapping[str, float] | None,
    metadata: NamMetadata | None = None,
) -> ExportResult:
    """Fold ``setting`` (dial values) into the weights and write them as ``fmt`` to ``path``."""
    setting = dict(setting or {})
    if fmt == "nam":
        # Refuse what .nam cannot hold before asking for knob values that would not help.
        check_nam_compatible(trained.weights)
    normalised = normalised_setting(trained.knobs, setting, require_all=fmt == "nam")
    document, notes = player_document(
        fmt,
        fold_knobs(trained.weights, normalised),
        trained.sample_rate_hz,
        trained.knobs,
        metadata,
    )
    atomic_write_json(path, document)
    return ExportResult(path, fmt, setting, tuple(notes))


def export_model(
    model: Any,
    checkpoint: Mapping[str, Any],
    fmt: str,
    path: str | Path,
    setting: Mapping[str, float] | None = None,
    metadata: NamMetadata | None = None,
) -> ExportResult:
    """Write one model file.

    Parameters
    ----------
    model : torch.nn.Module
        The trained model (from :func:`ampcap.train.checkpoint.load_model`).
    checkpoint : mapping
        Its checkpoint: ``knobs`` (name, minimum, maximum) and ``sample_rate_hz`` are used.
    fmt : {"nam", "proteus", "aidax"}
    path : path-like
        The file to write (replaced atomically).
    setting : mapping of str to float, optional
        Dial values of knobs to fold into the bias. ``.nam`` needs every knob; Proteus and AIDA-X
        keep unnamed knobs as inputs (the player's own knobs).
    metadata : NamMetadata, optional
        ``.nam`` only.

    Raises
    ------
    UsageError
        Unknown format, unknown knob, value outside the knob's range, a missing knob for ``.nam``,
        or a ``path`` ampcap must keep (a checkpoint, a manifest: see
        :func:`ampcap.outputs.check_output_file`).
    ModelFormatError
        The model cannot be written in this format (GRU or skip to ``.nam``, WaveNet...).
    """
    if fmt not in FORMATS:
        raise UsageError(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.")
    path = Path(path)
    check_output_file(path, option="--out", models_ok=True)
    return _write_file(_trained(model, checkpoint), fmt, path, setting, metadata)


# ---------------------------------------------------------------------------------------------
# A run folder's exports


def _dataset_settings(
    run_dir: Path, checkpoint: Mapping[str, Any], knobs: Sequence[Knob]
) -> list[dict[str, float]]:
    """The knob settings the model was trained on, read from its dataset; [] if unreadable."""
    from ampcap.schema.dataset import load_dataset

    dataset = checkpoint.get("dataset")
    folder = dataset.get("path") if isinstance(dataset, Mapping) else None
    if not folder and (run_dir / MANIFEST_NAME).is_file():
        try:
            document = read_json(run_dir / MANIFEST_NAME, "a run manifest")
            folder = document.get("dataset_path") if isinstance(document, dict) else None
        except AmpcapError:
            folder = None
    if not folder or not isinstance(folder, str):
        return []
    try:
        manifest = load_dataset(folder)
    except AmpcapError:
        return []
    names = {k.name for k in knobs}
    settings = [dict(s) for s in (*manifest.settings, *manifest.heldout) if set(s) == names]
    unique = {tuple(sorted(s.items())): s for s in settings}
    return [unique[key] for key in sorted(unique)]


def _nam_settings(
    run_dir: Path,
    checkpoint: Mapping[str, Any],
    specs: Sequence[Knob],
    knobs: dict[str, float] | None,
) -> list[dict[str, float]]:
    """The settings to write a ``.nam`` for: ``knobs``, the dataset's, or each range's centre."""
    if knobs is not None:
        return [dict(knobs)]
    if not specs:
        return [{}]
    return _dataset_settings(run_dir, checkpoint, specs) or [
        {k.name: (k.minimum + k.maximum) / 2 for k in specs}
    ]


def _skipped(fmt: str, exc: ModelFormatError) -> dict[str, str]:
    return {"format": fmt, "reason": str(exc)}


def _export_run(
    model: Any, checkpoint: Mapping[str, Any], run_dir: Path, knobs: dict[str, float] | None
) -> tuple[list[ExportResult], list[dict[str, str]]]:
    """Write a recurrent model's files into ``run_dir/exports``: (files written, formats skipped).

    A format the model cannot be written in is skipped with the reason, not raised.
    """
    stem = run_dir.resolve().name
    try:
        trained = _trained(model, checkpoint)
    except ModelFormatError as exc:
        return [], [_skipped(fmt, exc) for fmt in FORMATS]
    nam_settings = _nam_settings(run_dir, checkpoint, trained.knobs, knobs)
    results: list[ExportResult] = []
    skipped: list[dict[str, str]] = []

    def write(fmt: str, setting: dict[str, float], metadata: NamMetadata | None = None) -> None:
        path = run_dir / EXPORTS_DIR / default_file_name(stem, fmt, setting)
        check_output_file(path, option="--out", models_ok=True)
        results.append(_write_file(trained, fmt, path, setting, metadata))

    try:
        for setting in nam_settings:
            write("nam", setting, NamMetadata(name=f"{stem} {knob_label(setting)}".strip()))
    except ModelFormatError as exc:
        skipped.append(_skipped("nam", exc))
    for fmt in _PLAYER_FORMATS:
        try:
            write(fmt, dict(knobs or {}))
        except ModelFormatError as exc:
            skipped.append(_skipped(fmt, exc))
    return results, skipped


def write_exports(
    run_dir: str | Path,
    knobs: dict[str, float] | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write every player format the run's model allows into ``runs/<name>/exports/``.

    A knob-conditioned model gives one ``.nam`` per knob setting (the knobs folded into the
    bias): the setting in ``knobs`` when given, otherwise each setting of the run's dataset
    (held-out ones included), or the centre of each knob's range when the dataset is gone.
    Proteus and AIDA-X files keep the knobs as inputs (the player's own knobs) unless ``knobs``
    is given, in which case that setting is folded in as for ``.nam``. A model without knobs
    gives one file per format. WaveNet and MLP models have no player format: nothing is written.

    ``exports/index.json`` lists the files, formats, settings and warnings.

    Parameters
    ----------
    run_dir : path-like
        The run folder holding ``model.pt``.
    knobs : dict of str to float, optional
        Dial values (each knob's own range), e.g. ``{"isf": 3.3}``.
    warn : callable, optional
        Receives each warning (e.g. Proteus needs hidden size 40 with skip).

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    from ampcap.train.checkpoint import load_model

    run_dir = Path(run_dir)
    model, checkpoint = load_model(run_dir / BEST_MODEL)
    if getattr(model.config, "recurrent", False):
        results, skipped = _export_run(model, checkpoint, run_dir, knobs)
    else:
        reason = f"{model.config.arch} models have no player format"
        results, skipped = [], [{"format": "all", "reason": reason}]
    files = [
        {
            "file": result.path.name,
            "format": result.format,
            "knobs": result.folded_knobs,
            "warnings": list(result.warnings),
        }
        for result in results
    ]
    for result in results:
        for note in result.warnings:
            if warn is not None:
                warn(f"{result.path.name}: {note}")
    index = {"model": BEST_MODEL, "files": files, "skipped": skipped}
    atomic_write_json(run_dir / EXPORTS_DIR / INDEX_NAME, index)
    return [r.path for r in results]
