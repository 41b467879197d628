"""Copies of a dataset in the layouts other trainers read.

``coreaudioml``: ``Data/{train,val,test}/NAME-input.wav`` and ``NAME-target.wav``, the layout
Automated-GuitarAmpModelling and the GuitarML trainers load (``-input``/``-target`` suffixes,
``train``/``val``/``test`` folders). The files are ampcap's own split files (float32, input
channels ``[audio, knob_1 ... knob_n]``, mono target), hard-linked where the file system allows.

``nam``: Neural Amp Modeler models one fixed setting with audio as the only input, so every
knob setting gets its own folder ``nam/<setting>/`` with mono 24-bit PCM pairs
``train-input.wav``/``train-output.wav``, ``validation-input.wav``/``validation-output.wav``
and, for held-out audio, ``test-input.wav``/``test-output.wav``, plus ``data.json``: a data
configuration for NAM's full trainer (``nam-full``) pointing at the train and validation pairs.
NAM reads WAVs through Python's ``wave`` module, which reads integer PCM only, hence 24-bit;
its trainer refuses an output that reaches +-1.0 ("Output clipped"), and its tools assume
48 kHz unless told otherwise.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from ampcap.errors import DatasetError
from ampcap.files import atomic_write_json
from ampcap.schema.dataset import SPLITS, DatasetManifest, Piece
from ampcap.schema.session import take_file_name
from ampcap.wavstream import WavStreamWriter

EXPORT_FORMATS = ("coreaudioml", "nam")
COREAUDIOML_DIR = "Data"
NAM_DIR = "nam"
NAM_RATE_HZ = 48_000
# NAM's split names and the ampcap split each one is made from.
NAM_SPLITS = (("train", "train"), ("validation", "val"), ("test", "test"))
# Output frames per training example for nam-full (its example configurations use 8192).
NAM_TRAIN_NY = 8192


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        # Another file system, or one without hard links: a plain copy holds the same bytes.
        shutil.copyfile(source, target)


def export_coreaudioml(folder: Path, manifest: DatasetManifest, name: str) -> str:
    """Write ``folder/Data/{train,val,test}/NAME-{input,target}.wav``; returns ``"Data"``.

    Parameters
    ----------
    folder : Path
        The dataset folder, holding the split files named in ``manifest``.
    manifest : DatasetManifest
        The dataset's manifest (its split files are the source).
    name : str
        File name stem, normally the dataset folder's name.
    """
    for split in SPLITS:
        files = manifest.splits[split]
        _link_or_copy(folder / files.input, folder / COREAUDIOML_DIR / split / f"{name}-input.wav")
        _link_or_copy(
            folder / files.target, folder / COREAUDIOML_DIR / split / f"{name}-target.wav"
        )
    return COREAUDIOML_DIR


def _copy_pieces(
    folder: Path,
    manifest: DatasetManifest,
    split: str,
    pieces: Sequence[Piece],
    input_path: Path,
    output_path: Path,
) -> float:
    """Copy the audio channel and target of ``pieces`` into a mono 24-bit pair; returns the
    output's peak (absolute, before 24-bit clipping)."""
    files = manifest.splits[split]
    rate = manifest.sample_rate_hz
    longest = max(p.length for p in pieces)
    # Read buffers reused for every piece: fresh memory per piece costs more than the copy.
    x_buffer = np.empty((longest, 1 + len(manifest.knobs)), dtype=np.float32)
    y_buffer = np.empty((longest, 1), dtype=np.float32)
    with (
        sf.SoundFile(str(folder / files.input)) as x_file,
        sf.SoundFile(str(folder / files.target)) as y_file,
        WavStreamWriter(input_path, rate, 1, "pcm24", sha256=False) as x_out,
        WavStreamWriter(output_path, rate, 1, "pcm24", sha256=False) as y_out,
    ):
        for piece in pieces:
            n = piece.length
            x_file.seek(piece.offset)
            y_file.seek(piece.offset)
            x = x_file.read(n, dtype="float32", always_2d=True, out=x_buffer[:n])
            y = y_file.read(n, dtype="float32", always_2d=True, out=y_buffer[:n])
            if x.shape[0] != n or y.shape[0] != n:
                raise DatasetError(
                    f"{folder / files.input} is shorter than its manifest says; "
                    "run `ampcap split` again."
                )
            x_out.write(x[:, :1])
            y_out.write(y)
        return y_out.close().peak


def export_nam(
    folder: Path,
    manifest: DatasetManifest,
    final_folder: Path,
) -> tuple[str, list[str]]:
    """Write one NAM training folder per knob setting under ``folder/nam/``.

    Parameters
    ----------
    folder : Path
        The dataset folder being written (its split files are the source).
    manifest : DatasetManifest
        The dataset's manifest.
    final_folder : Path
        Where the dataset folder will finally live; ``data.json`` holds absolute paths there,
        because ``nam-full`` opens them relative to where it is started.

    Returns
    -------
    folder_name : str
        ``"nam"``.
    notes : list of str
        What a NAM user must know about these files (sample rate, clipped outputs).
    """
    notes: list[str] = []
    rate = manifest.sample_rate_hz
    for knobs in manifest.settings:
        label = Path(take_file_name(knobs)).stem
        setting_dir = folder / NAM_DIR / label
        setting_dir.mkdir(parents=True, exist_ok=True)
        written: dict[str, tuple[str, str]] = {}
        for nam_split, split in NAM_SPLITS:
            pieces = [p for p in manifest.pieces_of(split) if p.knobs == knobs]
            if not pieces:
                continue
            names = (f"{nam_split}-input.wav", f"{nam_split}-output.wav")
            peak = _copy_pieces(
                folder, manifest, split, pieces, setting_dir / names[0], setting_dir / names[1]
            )
            written[nam_split] = names
            if peak >= 1.0:
                notes.append(
                    f"NAM export {label}/{names[1]} peaks at {20 * np.log10(peak):+.1f} dBFS; "
                    "NAM's trainer refuses outputs that reach full scale. Record again with "
                    "less device output level."
                )
        if "train" in written and "validation" in written:
            final = final_folder / NAM_DIR / label
            config = {
                "_notes": [
                    f"Neural Amp Modeler data configuration for knob setting {label}, made by "
                    "ampcap split. Train with: nam-full data.json MODEL.json LEARNING.json "
                    "OUTPUT_FOLDER. Test audio is in test-input.wav/test-output.wav (never "
                    "heard in training at any setting).",
                ],
                "train": {
                    "x_path": str(final / written["train"][0]),
                    "y_path": str(final / written["train"][1]),
                    "ny": NAM_TRAIN_NY,
                },
                "validation": {
                    "x_path": str(final / written["validation"][0]),
                    "y_path": str(final / written["validation"][1]),
                    "ny": None,
                },
                "common": {"delay": 0},
            }
            atomic_write_json(setting_dir / "data.json", config)
    if rate != NAM_RATE_HZ:
        notes.append(
            f"The NAM export is at {rate} Hz. NAM's trainer assumes {NAM_RATE_HZ} Hz unless "
            "its files say otherwise, and players run a model at the rate it was trained at: "
            "record at 48000 Hz if the model is meant for NAM players."
        )
    return NAM_DIR, notes


def write_exports(
    folder: Path, manifest: DatasetManifest, formats: Sequence[str], final_folder: Path
) -> tuple[dict[str, str], list[str]]:
    """Write each requested export into the dataset folder.

    Returns
    -------
    exports : dict of str to str
        Format -> folder relative to the dataset folder.
    notes : list of str
    """
    exports: dict[str, str] = {}
    notes: list[str] = []
    for fmt in formats:
        if fmt == "coreaudioml":
            exports[fmt] = export_coreaudioml(folder, manifest, final_folder.name)
        elif fmt == "nam":
            exports[fmt], nam_notes = export_nam(folder, manifest, final_folder)
            notes.extend(nam_notes)
        else:
            raise DatasetError(
                f"--export {fmt!r} is not a known layout; choose from {', '.join(EXPORT_FORMATS)}."
            )
    return exports, notes
