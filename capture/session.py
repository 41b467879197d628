"""The recording loop: a session folder, its program, and one take per knob setting.

``record_session`` is what ``ampcap record`` runs. It

1. builds the program (built-in DI or ``--di`` files) and checks its level (nothing plays yet);
2. checks the ``--out`` folder: empty or missing starts a new session; a folder holding the
   same session (same resolved rig, program hash and knob plan) resumes it; anything else is
   refused with :class:`~ampcap.errors.SessionError` and left untouched;
3. opens the engine (the virtual rig, or ``ampcap.capture.audio.open_engine``), checks that the
   knobs can be set, writes ``program.wav`` and ``session.json``;
4. per take in plan order (a :class:`Recorder`): sets the knobs, records the program through
   the engine into ``takes/<knob>=<value>.wav`` (streamed by :class:`~ampcap.capture.engine.TakeWriter`) and
   rewrites ``session.json`` atomically. A take with any under/overflow is recorded again, up to
   :data:`MAX_ATTEMPTS` times. A complete take is skipped, or replaced only with ``retake``.

Ctrl-C or SIGTERM during a take stops the engine, keeps the frames recorded so far, marks the
take ``partial``, writes the manifest and raises :class:`RecordingInterrupted`; running the same
command again resumes at the first take that is not complete. A write error stops the same way
with a :class:`~ampcap.errors.CaptureError` that says what was kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ampcap import __version__
from ampcap.capture.di import BUILTIN_PEAK_DBFS, DiStream, builtin_di_streams, di_file_streams
from ampcap.capture.engine import AudioEngine, TakeResult, TakeWriter
from ampcap.capture.knobs import QUIT, REDO, KnobController, knob_settings
from ampcap.capture.plan import KnobRange
from ampcap.capture.program import BuiltProgram, ProgramFile, build_program_file
from ampcap.capture.rig import Rig
from ampcap.errors import (
    AmpcapError,
    AudioFileError,
    CaptureError,
    SessionError,
    Terminated,
    UsageError,
)
from ampcap.files import audio_info, read_audio
from ampcap.levels import FLOOR_DB, dbfs
from ampcap.outputs import atomic_output, holds_files
from ampcap.schema.session import (
    MANIFEST_NAME,
    PROGRAM_NAME,
    SCHEMA_VERSION,
    TAKE_CHANNELS,
    Knob,
    SessionManifest,
    Take,
    load_session,
    save_session,
    take_file_name,
)

#: Recordings of one take before a session stops on repeated dropouts.
MAX_ATTEMPTS = 3


class RecordingInterrupted(CaptureError):
    """Ctrl-C or SIGTERM stopped a take; what was recorded is on disk and in the manifest."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number


class Monitor(Protocol):
    """What the CLI's live meter implements; every method is called from the main thread."""

    def take_started(self, take: Take, step: int, total: int, frames: int) -> None: ...

    def take_progress(self, frames_done: int, block: np.ndarray) -> None: ...

    def take_finished(self, take: Take) -> None: ...


class _NoMonitor:
    def take_started(self, take: Take, step: int, total: int, frames: int) -> None:
        pass

    def take_progress(self, frames_done: int, block: np.ndarray) -> None:
        pass

    def take_finished(self, take: Take) -> None:
        pass


@dataclass(frozen=True)
class RecordRequest:
    """Everything ``ampcap record`` was asked to do.

    Attributes
    ----------
    rig : Rig
        The rig, ``--device`` already applied (see :meth:`Rig.with_device`).
    knobs : list of KnobRange
        The knobs in plan order and the range each plan covers.
    plan : list of dict
        The knob settings, one per take, in recording order.
    out : Path
        The session folder.
    di_specs : list of str
        ``--di`` files (``[KIND:]PATH``); empty for the built-in DI.
    di_seconds : float
        Length of the built-in DI, seconds.
    seed : int
        Seed of the built-in DI.
    retake : bool
        Record complete takes again too.
    assume_yes : bool
        Never wait for a person (``--yes``).
    device_override : str, optional
        ``--device`` as given, passed on to the audio engine.
    """

    rig: Rig
    knobs: list[KnobRange]
    plan: list[dict[str, float]]
    out: Path
    di_specs: list[str] = field(default_factory=list)
    di_seconds: float = 60.0
    seed: int = 0
    retake: bool = False
    assume_yes: bool = False
    device_override: str | None = None


@dataclass(frozen=True)
class SessionResult:
    """What a run of :func:`record_session` did.

    ``recorded`` are the take files recorded in this run, ``skipped`` the complete ones left
    alone; ``stopped`` is True when the person pressed ``q``; ``resumed`` when the folder already
    held this session.
    """

    folder: Path
    manifest: SessionManifest
    recorded: tuple[str, ...]
    skipped: tuple[str, ...]
    stopped: bool
    resumed: bool
    notices: tuple[str, ...]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- the program and the folder ---------------------------------------------------------------


def prepare_program(
    rig: Rig, di_specs: list[str], di_seconds: float, seed: int, workdir: Path
) -> tuple[ProgramFile, list[str]]:
    """The session's program, written to ``workdir``, and the notices about its DI (resampled or
    down-mixed files).

    The built-in DI plays at -3 dBFS peak, or 1 dB under the rig's limit when that is lower.
    The program is made a block at a time (its memory does not grow with its length); the
    working files, the program's ``program.wav`` among them, stay in ``workdir`` for the caller
    to move or remove. An over-level program is refused here, before anything plays.
    """
    notices: list[str] = []
    streams: list[DiStream]
    if di_specs:
        streams, notices = di_file_streams(di_specs, rig.sample_rate_hz, workdir)
    else:
        peak = min(BUILTIN_PEAK_DBFS, rig.safety.max_output_dbfs - 1.0)
        streams = builtin_di_streams(di_seconds, rig.sample_rate_hz, workdir, seed, peak)
    built = build_program_file(
        streams, rig.sample_rate_hz, rig.safety, workdir / PROGRAM_NAME, rig.name
    )
    return built, notices


def session_knobs(rig: Rig, knobs: list[KnobRange]) -> tuple[Knob, ...]:
    """The manifest's knobs: the dial range of the rig's table, or the plan's range when the rig
    has no table for the knob (0..10 when the plan has one setting). A plan range outside the
    rig's dial is refused."""
    result = []
    for knob in knobs:
        if knob.name in rig.knobs:
            dial = knob_settings(rig, knob.name)
            if knob.minimum < dial.minimum or knob.maximum > dial.maximum:
                raise UsageError(
                    f"--range {knob.minimum:g}:{knob.maximum:g} for {knob.name} is "
                    f"outside its dial {dial.minimum:g}:{dial.maximum:g} in rig "
                    f"{rig.name}."
                )
            result.append(Knob(knob.name, dial.minimum, dial.maximum))
        else:
            low, high = knob.minimum, knob.maximum
            if low == high:  # one setting: normalise over the default dial, 0..10
                low, high = min(low, 0.0), max(high, 10.0)
            result.append(Knob(knob.name, low, high))
    return tuple(result)


def new_manifest(
    rig: Rig,
    devices: dict[str, str],
    program: BuiltProgram | ProgramFile,
    knobs: tuple[Knob, ...],
    plan: list[dict[str, float]],
) -> SessionManifest:
    """A fresh manifest with every take pending."""
    return SessionManifest(
        schema_version=SCHEMA_VERSION,
        ampcap_version=__version__,
        created_at=_now(),
        rig=rig.to_dict(),
        devices=dict(devices),
        sample_rate_hz=rig.sample_rate_hz,
        channels=TAKE_CHANNELS,
        program=program.program,
        knobs=knobs,
        takes=tuple(Take(knobs=dict(s), file=take_file_name(s)) for s in plan),
    )


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def session_differences(existing: SessionManifest, wanted: SessionManifest) -> list[str]:
    """How ``wanted`` differs from the session already in a folder (empty: the same session).

    Compared: the resolved rig (not where its file was), the sample rate, the program's hash,
    the knobs and the knob plan.
    """
    differences = []
    old_rig = {k: v for k, v in existing.rig.items() if k != "source"}
    new_rig = {k: v for k, v in wanted.rig.items() if k != "source"}
    if _canonical(old_rig) != _canonical(new_rig):
        changed = sorted(
            k
            for k in set(old_rig) | set(new_rig)
            if _canonical(old_rig.get(k)) != _canonical(new_rig.get(k))
        )
        differences.append(
            f"rig {existing.rig.get('name')!r} vs {wanted.rig.get('name')!r} "
            f"(differs in {', '.join(changed)})"
        )
    if existing.sample_rate_hz != wanted.sample_rate_hz:
        differences.append(f"sample rate {existing.sample_rate_hz} vs {wanted.sample_rate_hz} Hz")
    if existing.program.sha256 != wanted.program.sha256:
        differences.append("program (other DI files, --di-seconds or --seed)")
    if existing.knobs != wanted.knobs or [t.knobs for t in existing.takes] != [
        t.knobs for t in wanted.takes
    ]:
        old = ", ".join(t.file.split("/")[-1][:-4] for t in existing.takes[:6])
        new = ", ".join(t.file.split("/")[-1][:-4] for t in wanted.takes[:6])
        differences.append(
            f"knob plan ({len(existing.takes)} takes: {old}... vs "
            f"{len(wanted.takes)} takes: {new}...)"
        )
    return differences


def open_folder(out: Path, wanted: SessionManifest) -> SessionManifest | None:
    """The manifest to resume, or None for a new session; refuses a different session.

    Raises
    ------
    SessionError
        ``out`` is a file, a non-empty folder that is not a session, a damaged session, or a
        different session. Nothing in ``out`` is changed.
    """
    if out.exists() and not out.is_dir():
        raise SessionError(f"--out {out} is a file, not a folder. Give a folder for the session.")
    if not out.exists() or not holds_files(out):
        return None
    if not (out / MANIFEST_NAME).exists():
        raise SessionError(
            f"--out {out} already holds files and no {MANIFEST_NAME}, so it is "
            "not an ampcap session; nothing was changed. Give an empty or new "
            "folder."
        )
    try:
        existing = load_session(out)
    except AmpcapError as exc:
        raise SessionError(
            f"--out {out} holds a session ampcap cannot read ({exc}); nothing was "
            "changed. Give another folder."
        ) from exc
    differences = session_differences(existing, wanted)
    if differences:
        raise SessionError(
            f"--out {out} already holds a different session: {'; '.join(differences)}. Nothing "
            "was changed. Give another --out folder, or repeat the exact command that made this "
            "session to resume it."
        )
    return existing


def _program_hash(path: Path, frames: int) -> str | None:
    """sha256 of a mono program file's float32 samples, read a block at a time; None when the
    file is damaged or has another shape."""
    try:
        info = audio_info(path)
        if info.channels != 1 or info.frames != frames:
            return None
        digest = hashlib.sha256()
        for start in range(0, frames, 1 << 17):
            samples, _ = read_audio(
                path, channels=1, allow_silence=True, start=start, frames=1 << 17
            )
            digest.update(np.ascontiguousarray(samples[:, 0], dtype="<f4").tobytes())
        return digest.hexdigest()
    except AudioFileError:
        return None


def _write_program(folder: Path, program: ProgramFile) -> None:
    """Move the built program.wav into ``folder`` unless an identical one is there (a resumed
    session). It is copied beside its final name first when the two are on different disks,
    then renamed, so ``folder`` never holds a half-written program.wav."""
    path = folder / PROGRAM_NAME
    if path.exists() and _program_hash(path, program.program.length) == program.program.sha256:
        return
    try:
        os.replace(program.path, path)
    except OSError:
        kept = "nothing was played; free some disk space and run the same command again to resume"
        with atomic_output(path, kept) as partial:
            shutil.copyfile(program.path, partial)


def program_samples(path: Path, frames: int) -> np.ndarray:
    """The float32 samples of a mono ``program.wav`` as a read-only memory map, shape (frames,).

    scipy maps the ``data`` chunk of an IEEE-float WAV (plain, or WAVE_FORMAT_EXTENSIBLE with a
    float subtype), as :func:`ampcap.files.write_audio` writes it; any other layout is read into
    memory instead.
    """
    from scipy.io import wavfile

    try:
        with warnings.catch_warnings():
            # Chunks scipy does not know (libsndfile's PEAK, LIST) are skipped with a warning.
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            _, mapped = wavfile.read(path, mmap=True)
    except ValueError:  # scipy cannot map it (24-bit samples, a data chunk past the end)
        mapped = None
    if (
        isinstance(mapped, np.memmap)
        and mapped.dtype == np.dtype("<f4")
        and mapped.ndim == 1
        and len(mapped) >= frames
    ):
        # scipy maps copy-on-write; nothing may write to the program while it plays.
        mapped.flags.writeable = False
        return mapped[:frames]
    samples, _ = read_audio(path, channels=1, allow_silence=True)
    return samples[:frames, 0]


def open_engine(rig: Rig, device_override: str | None = None) -> AudioEngine:
    """The engine for ``rig``: the virtual rig's, or the sounddevice engine of an audio rig."""
    if rig.kind == "virtual":
        from ampcap.capture.virtual import engine_for

        assert rig.virtual is not None
        return engine_for(rig.virtual)
    from ampcap.capture.audio import open_engine as open_audio_engine

    return open_audio_engine(rig, device_override)


# --- one take -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _stop_on_signals(engine: AudioEngine) -> Iterator[list[int]]:
    """While inside, SIGINT and SIGTERM ask the engine to stop; yields the signals caught."""
    caught: list[int] = []

    def handler(signum: int, frame: object) -> None:
        caught.append(signum)
        engine.stop()

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: Ctrl-C then arrives as KeyboardInterrupt
            pass
    try:
        yield caught
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _signal_of(exc: KeyboardInterrupt) -> int:
    """The signal a KeyboardInterrupt stands for: SIGTERM for :class:`Terminated`, else SIGINT."""
    return signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT


@dataclass
class _Attempt:
    """One recording of a take: what the engine said, what reached the file, what stopped it."""

    result: TakeResult
    frames: int
    peaks: np.ndarray
    signal_number: int | None
    error: AmpcapError | None
    sha256: str = ""

    @property
    def dropout(self) -> bool:
        return bool(self.result.underflows or self.result.overflows)

    def stopped(self, expected_frames: int) -> bool:
        """True when a signal, an error or the engine ended the take before its last frame
        (a take with dropouts is recorded again instead)."""
        return (
            self.error is not None
            or self.signal_number is not None
            or (not self.dropout and (self.result.interrupted or self.frames < expected_frames))
        )

    def reason(self) -> str:
        if self.signal_number is not None:
            return "interrupted"
        return str(self.error) if self.error else "stopped early"


@dataclass(frozen=True)
class _Queue:
    """Which takes a run records, which it leaves alone, and the take a first REDO repeats."""

    indices: list[int]
    skipped: tuple[str, ...]
    last_index: int | None

    @classmethod
    def plan(cls, manifest: SessionManifest, retake: bool) -> _Queue:
        takes = manifest.takes
        queue = [i for i, t in enumerate(takes) if retake or t.status != "complete"]
        skipped = tuple(t.file for i, t in enumerate(takes) if i not in queue)
        last_index = max(
            (
                i
                for i, t in enumerate(takes)
                if t.status == "complete" and (not queue or i < queue[0])
            ),
            default=None,
        )
        return cls(queue, skipped, last_index)


class Recorder:
    """Records the takes of one session into its folder.

    Holds what every take needs (the folder, the program, the engine, the knob controller, the
    monitor) and the manifest as last saved, so the retries after a dropout and what is kept
    when a take stops early are decided in one place. Every change of a take is saved to
    ``session.json`` before the next step, so a stop at any point leaves a resumable folder.

    Parameters
    ----------
    folder : Path
        The session folder; ``session.json`` and ``program.wav`` are already in it.
    manifest : SessionManifest
        The session as saved in ``folder``.
    program : numpy.ndarray, float32, shape (frames,)
        What every take plays (a read-only memory map of ``program.wav``).
    engine : AudioEngine
    controller : KnobController
        Bound to ``engine``.
    monitor : Monitor, optional
        Live meter callbacks; none by default.
    say : callable
        Prints one line for the user.
    """

    def __init__(
        self,
        folder: Path,
        manifest: SessionManifest,
        program: np.ndarray,
        engine: AudioEngine,
        controller: KnobController,
        monitor: Monitor | None,
        say: Callable[[str], None],
    ) -> None:
        self.folder = folder
        self.manifest = manifest
        self.program = program
        self.engine = engine
        self.controller = controller
        self.monitor = monitor or _NoMonitor()
        self.say = say

    def result(self, retake: bool, resumed: bool, notices: Sequence[str]) -> SessionResult:
        """:meth:`run`, told as a :class:`SessionResult` (``resumed``: the folder held the
        session before this run; ``notices``: what was said about it)."""
        recorded, skipped, stopped = self.run(retake)
        return SessionResult(
            folder=self.folder,
            manifest=self.manifest,
            recorded=recorded,
            skipped=skipped,
            stopped=stopped,
            resumed=resumed,
            notices=tuple(notices),
        )

    def run(self, retake: bool) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
        """Record every take that is not complete (every take with ``retake``), in plan order.

        Returns
        -------
        recorded, skipped : tuple of str
            Take files recorded in this run (a redone take once per recording), and the
            complete ones left alone.
        stopped : bool
            The person pressed ``q``.
        """
        plan = _Queue.plan(self.manifest, retake)
        queue, last_index = list(plan.indices), plan.last_index
        recorded: list[str] = []
        previous: dict[str, float] | None = None
        redo = False
        position = 0
        while position < len(queue):
            index = queue[position]
            target = self.manifest.takes[index].knobs
            action = self._set_knobs(index, previous, redo)
            redo = False
            if action == QUIT:
                return tuple(recorded), plan.skipped, True
            if action == REDO:
                if last_index is None:
                    self.say("There is no earlier take to redo.")
                    continue
                queue.insert(position, last_index)
                previous = target
                redo = True
                continue
            self.record_take(index)
            recorded.append(self.manifest.takes[index].file)
            previous = dict(target)
            last_index = index
            position += 1
        return tuple(recorded), plan.skipped, False

    def _set_knobs(self, index: int, previous: dict[str, float] | None, redo: bool) -> str:
        """Ask for (or announce) the knobs of take ``index``; a Ctrl-C here stops the session."""
        take = self.manifest.takes[index]
        try:
            return self.controller.apply(
                take.knobs, previous, index + 1, len(self.manifest.takes), redo=redo
            )
        except KeyboardInterrupt as exc:
            number = _signal_of(exc)
            raise RecordingInterrupted(
                f"Stopped by {'SIGTERM' if number == signal.SIGTERM else 'Ctrl-C'} before "
                f"{take.file}. Kept in {self.folder}: {self.kept()}. Run the same command "
                "again to resume at the first take that is not complete.",
                number,
            ) from None

    def record_take(self, index: int) -> None:
        """Record take ``index``, again after a dropout up to :data:`MAX_ATTEMPTS` times.

        A complete take being replaced (``retake``) stays on disk until its replacement is
        complete; its replacement records beside it under a hidden name.

        Raises
        ------
        CaptureError
            Dropouts in every attempt, a write error, or the engine stopped early.
        RecordingInterrupted
            Ctrl-C or SIGTERM during the take.
        """
        take = self.manifest.takes[index]
        final = self.folder / take.file
        replacing = take.status == "complete" and final.exists()
        path = final.with_name(f".{final.name}.recording.wav") if replacing else final
        for _ in range(MAX_ATTEMPTS):
            self._start(index, replacing)
            attempt = self._play(path)
            flags = self._flags(attempt)
            if attempt.stopped(len(self.program)):
                self._stop(index, attempt, flags, replacing, path)
            if not attempt.dropout:
                self._keep(index, attempt, flags, replacing, path, final)
                return
            self._drop(index, attempt, flags, replacing)
        if replacing and path.exists():
            path.unlink()
        take = self.manifest.takes[index]
        raise CaptureError(
            f"Take {take.file} had dropouts in {MAX_ATTEMPTS} attempts in a row "
            f"({take.message}); the session stopped. Dropouts mean the computer "
            'did not keep up: raise blocksize (or latency = "high") in the rig, close other '
            f"programs, then run the same command again to resume. Kept: {self.kept()}."
        )

    def kept(self) -> str:
        """What the folder holds, for a message: the complete takes and the partial ones."""
        takes = self.manifest.takes
        complete = [t.file for t in takes if t.status == "complete"]
        partial = [f"{t.file} ({t.frames} frames)" for t in takes if t.status == "partial"]
        parts = [
            f"{len(complete)} complete take(s)" + (f" ({', '.join(complete)})" if complete else "")
        ]
        if partial:
            parts.append(f"partial: {', '.join(partial)}")
        return "; ".join(parts)

    def _update(self, index: int, **changes: Any) -> None:
        self.manifest = self.manifest.with_take(index, **changes)

    def _save_or_note(self) -> str:
        """Save the manifest; on failure return a sentence for the error message instead."""
        try:
            save_session(self.folder, self.manifest)
        except AmpcapError as exc:
            return f" The manifest could not be updated either ({exc})."
        return ""

    def _start(self, index: int, replacing: bool) -> None:
        """Set the automatic knobs and save the take as started (``partial`` unless it replaces
        a complete take), then tell the monitor."""
        take = self.manifest.takes[index]
        self.controller.set_automatic(take.knobs)
        changes: dict[str, Any] = dict(
            attempts=take.attempts + 1, started_at=_now(), finished_at=None, message=None
        )
        if not replacing:
            changes.update(
                status="partial", frames=0, underflows=0, overflows=0, peaks_dbfs={}, sha256=""
            )
        self._update(index, **changes)
        save_session(self.folder, self.manifest)
        self.monitor.take_started(
            self.manifest.takes[index], index + 1, len(self.manifest.takes), len(self.program)
        )

    def _play(self, path: Path) -> _Attempt:
        """Play the program once, streaming what comes back into ``path``.

        Ctrl-C and SIGTERM stop the engine and are returned, not raised, so the caller can
        save what was recorded first; so are the engine's and the writer's errors.
        """
        engine, monitor = self.engine, self.monitor
        peaks = np.zeros(len(TAKE_CHANNELS))
        write_failed = False

        def sink(block: np.ndarray) -> None:
            # Runs in the audio callback: a queue put and a max over one block, nothing more.
            writer.put(block)
            np.maximum(peaks, np.max(np.abs(block), axis=0, initial=0.0), out=peaks)

        def progress(frames_done: int, block: np.ndarray) -> None:
            nonlocal write_failed
            try:
                writer.check()
            except CaptureError:
                write_failed = True
                engine.stop()
            monitor.take_progress(frames_done, block)

        result = TakeResult(frames=0, interrupted=True)
        error: AmpcapError | None = None
        writer = TakeWriter(path, self.manifest.sample_rate_hz)
        with _stop_on_signals(engine) as caught:
            try:
                with writer:
                    try:
                        result = engine.run_take(self.program, sink, progress)
                    except KeyboardInterrupt as exc:
                        engine.stop()
                        caught.append(_signal_of(exc))
            except CaptureError as exc:  # the writer's disk error, raised when it closes
                error = exc
            except AmpcapError as exc:  # the engine's device errors
                error = exc
            if write_failed and error is None:
                try:
                    writer.check()
                except CaptureError as exc:
                    error = exc
        return _Attempt(
            result=result,
            frames=writer.frames_written,
            peaks=peaks,
            signal_number=caught[0] if caught else None,
            error=error,
            sha256=writer.sha256,
        )

    @staticmethod
    def _flags(attempt: _Attempt) -> dict[str, Any]:
        """The manifest fields an attempt sets whatever became of it."""
        peaks = {
            name: round(dbfs(float(p), FLOOR_DB), 3)
            for name, p in zip(TAKE_CHANNELS, attempt.peaks, strict=True)
        }
        return dict(
            frames=attempt.frames,
            underflows=attempt.result.underflows,
            overflows=attempt.result.overflows,
            peaks_dbfs=peaks,
            finished_at=_now(),
        )

    def _keep(
        self,
        index: int,
        attempt: _Attempt,
        flags: dict[str, Any],
        replacing: bool,
        path: Path,
        final: Path,
    ) -> None:
        """A clean take: put it in place, mark it complete and save the manifest."""
        if replacing:
            os.replace(path, final)
        self._update(index, status="complete", sha256=attempt.sha256, **flags)
        note = self._save_or_note()
        if note:
            raise CaptureError(
                f"Take {self.manifest.takes[index].file} was recorded but{note} Run the same "
                "command again once the disk is fixed."
            )
        self.monitor.take_finished(self.manifest.takes[index])

    def _drop(self, index: int, attempt: _Attempt, flags: dict[str, Any], replacing: bool) -> None:
        """A take with dropouts is incomplete data: mark it failed (a replaced complete take
        stays complete) and keep its file for inspection; the caller records it again."""
        result = attempt.result
        message = (
            f"dropout: {result.underflows} output underflow(s), {result.overflows} input "
            f"overflow(s)"
        )
        self._update(
            index,
            status="failed" if not replacing else "complete",
            message=message,
            **({} if replacing else flags),
        )
        save_session(self.folder, self.manifest)
        self.monitor.take_finished(self.manifest.takes[index])
        self.say(f"Take {self.manifest.takes[index].file}: {message}; recording it again.")

    def _stop(
        self, index: int, attempt: _Attempt, flags: dict[str, Any], replacing: bool, path: Path
    ) -> None:
        """Mark an interrupted or failed take, save the manifest, and raise what stopped it."""
        take = self.manifest.takes[index]
        if replacing:
            # The earlier complete take stays; the unfinished replacement is dropped.
            if path.exists():
                path.unlink()
            kept_this = f"the earlier complete {take.file} is kept"
            self._update(index, message="a retake was stopped; the earlier take is kept")
        else:
            kept_this = f"the first {attempt.frames} frames of {take.file} are kept (partial)"
            self._update(index, status="partial", message=attempt.reason(), **flags)
        note = self._save_or_note()
        self.monitor.take_finished(self.manifest.takes[index])
        kept = f"Kept in {self.folder}: {self.kept()}.{note}"
        resume = "Run the same command again to resume at the first take that is not complete."
        if attempt.signal_number is not None:
            name = signal.Signals(attempt.signal_number).name
            raise RecordingInterrupted(
                f"Recording stopped by {name} during {take.file}: {kept_this}. {kept} {resume}",
                attempt.signal_number,
            )
        if attempt.error is not None:
            # The engine's or writer's message says what happened to this take; add the session.
            raise type(attempt.error)(f"{attempt.error} {kept}")
        raise CaptureError(
            f"The engine stopped {take.file} early after {attempt.frames} of "
            f"{len(self.program)} frames: {kept_this}. {kept} {resume}"
        )


# --- the session --------------------------------------------------------------------------------


def record_session(
    request: RecordRequest,
    *,
    monitor: Monitor | None = None,
    say: Callable[[str], None] = print,
    engine_factory: Callable[[Rig, str | None], AudioEngine] = open_engine,
    ask: Callable[[str], str] | None = None,
    interactive: bool | None = None,
) -> SessionResult:
    """Record (or resume) the session ``request`` describes. See the module docstring.

    Parameters
    ----------
    request : RecordRequest
    monitor : Monitor, optional
        Live meter callbacks.
    say : callable
        Prints one line for the user (knob instructions, retries, notices).
    engine_factory : callable
        ``(rig, device_override) -> AudioEngine``; tests pass their own.
    ask, interactive
        Passed to :class:`~ampcap.capture.knobs.KnobController`.

    Returns
    -------
    SessionResult

    Raises
    ------
    SessionError
        The folder holds something else (nothing changed).
    CaptureError
        Over-level program (nothing played), repeated dropouts, write errors; the message says
        what was kept.
    RecordingInterrupted
        Ctrl-C / SIGTERM during a take (exit status 128 + signal).
    """
    rig = request.rig
    # Cheap checks first: nothing is built, opened or written before the request makes sense.
    knobs = session_knobs(rig, request.knobs)
    controller = _knob_controller(request, say, ask, interactive)
    engine: AudioEngine | None = None
    # The program and the DI's working files are made here, outside --out, so that a refused
    # or failed build leaves nothing behind; the folder goes whatever happens.
    # Named before it is made (mkdtemp names it only once it exists), so a Ctrl-C or SIGTERM
    # at any point leaves nothing in the temporary folder.
    workdir = Path(tempfile.gettempdir()) / f"ampcap-program-{secrets.token_hex(8)}"
    try:
        workdir.mkdir(mode=0o700)
        controller.check_ready()
        program, notices = prepare_program(
            rig, request.di_specs, request.di_seconds, request.seed, workdir
        )
        for notice in notices:
            say(notice)
        existing = open_folder(request.out, new_manifest(rig, {}, program, knobs, request.plan))
        engine = engine_factory(rig, request.device_override)
        controller.bind(engine)
        manifest, samples = _start_session(request, existing, engine, program, knobs, say)
        # The DI's working files are not needed for recording: free their disk space now.
        shutil.rmtree(workdir, ignore_errors=True)
        recorder = Recorder(request.out, manifest, samples, engine, controller, monitor, say)
        return recorder.result(request.retake, existing is not None, notices)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        release(controller, engine)


def release(controller: KnobController, engine: AudioEngine | None) -> None:
    """Close the knob controller and the engine (if it was opened and can be closed)."""
    controller.close()
    if engine is not None and callable(close := getattr(engine, "close", None)):
        close()


def _knob_controller(
    request: RecordRequest,
    say: Callable[[str], None],
    ask: Callable[[str], str] | None,
    interactive: bool | None,
) -> KnobController:
    """The controller that sets the plan's knobs, once the virtual amp has accepted the plan."""
    if request.rig.kind == "virtual":
        from ampcap.capture.virtual import check_amp_knobs

        check_amp_knobs(request.plan)
    return KnobController(
        request.rig,
        [k.name for k in request.knobs],
        assume_yes=request.assume_yes,
        say=say,
        ask=ask,
        interactive=interactive,
    )


def _start_session(
    request: RecordRequest,
    existing: SessionManifest | None,
    engine: AudioEngine,
    program: ProgramFile,
    knobs: tuple[Knob, ...],
    say: Callable[[str], None],
) -> tuple[SessionManifest, np.ndarray]:
    """Make the folder of a new session (or say what a resumed one holds), then write its
    ``session.json`` and ``program.wav``.

    Returns the manifest written and the program's samples, a read-only memory map of
    ``program.wav``.
    """
    out = request.out
    if existing is None:
        manifest = new_manifest(request.rig, engine.device_names, program, knobs, request.plan)
        out.mkdir(parents=True, exist_ok=True)
    else:
        manifest = existing
        done = sum(t.status == "complete" for t in manifest.takes)
        say(f"Resuming the session in {out}: {done} of {len(manifest.takes)} take(s) complete.")
    # The manifest first: a folder with session.json is resumable even if ampcap stops
    # before program.wav is complete (it is written again, it is deterministic).
    save_session(out, manifest)
    _write_program(out, program)
    # Takes play program.wav through a read-only memory map, so the process does not hold
    # the whole program in memory while recording, however long it is.
    return manifest, program_samples(out / PROGRAM_NAME, program.program.length)
