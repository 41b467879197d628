"""More takes into a session that exists: the settings ``ampcap plan`` suggested, recorded later.

The new takes play the session's own ``program.wav`` (checked against the hash in
``session.json``), through the same rig, with the session's knobs, and are appended to its takes,
so alignment, splits and training use them as if they had been recorded in the first place.
The existing takes are never touched. Running the same command again after an interruption
resumes the added takes that are not complete; a setting already recorded completely is
skipped with a note.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from ampcap.capture.engine import AudioEngine
from ampcap.capture.plan import KnobRange
from ampcap.capture.rig import Rig
from ampcap.capture.session import (
    Monitor,
    Recorder,
    RecordRequest,
    SessionResult,
    _knob_controller,
    _program_hash,
    open_engine,
    program_samples,
    release,
    session_differences,
)
from ampcap.errors import AmpcapError, SessionError, UsageError
from ampcap.labels import describe, knob_label
from ampcap.schema.session import (
    PROGRAM_NAME,
    SessionManifest,
    Take,
    load_session,
    save_session,
    take_file_name,
)
from ampcap.settings import same_setting


def existing_session(out: Path) -> SessionManifest:
    """The session in ``out`` that takes are added to; a clear error where there is none."""
    if not (out / "session.json").exists():
        raise SessionError(
            f"--out {out} holds no session to add takes to. Record the session first "
            "(`ampcap record --rig RIG --knob NAME --steps N --out FOLDER`), then add settings."
        )
    try:
        return load_session(out)
    except AmpcapError as exc:
        raise SessionError(
            f"--out {out} holds a session ampcap cannot read ({exc}); nothing was changed."
        ) from exc


def check_added_settings(
    existing: SessionManifest, settings: Sequence[dict[str, float]]
) -> list[dict[str, float]]:
    """The settings in the session's knob order; refuses other knobs and values off the dial.

    Raises
    ------
    UsageError
        A setting names other knobs than the session's, or a value outside a knob's range.
    """
    names = [k.name for k in existing.knobs]
    ordered = []
    for setting in settings:
        if sorted(setting) != sorted(names):
            raise UsageError(
                f"The setting {describe(setting)} does not name the session's knobs "
                f"({', '.join(names)}); give each of them, for example "
                f"--add-settings {knob_label({k.name: k.minimum for k in existing.knobs})}."
            )
        for knob in existing.knobs:
            value = setting[knob.name]
            if not (knob.minimum <= value <= knob.maximum):
                raise UsageError(
                    f"{knob.name}={value:g} is outside the session's range for {knob.name}, "
                    f"{knob.minimum:g}..{knob.maximum:g}."
                )
        ordered.append({n: float(setting[n]) for n in names})
    return ordered


def extended_manifest(
    existing: SessionManifest, settings: Sequence[dict[str, float]]
) -> tuple[SessionManifest, list[str]]:
    """The manifest with a pending take appended per new setting, and a note per setting the
    session already holds (complete: skipped; not complete: recorded in this run)."""
    takes = list(existing.takes)
    notes = []
    for setting in settings:
        held = next((t for t in existing.takes if same_setting(t.knobs, setting)), None)
        if held is None:
            if not any(same_setting(t.knobs, setting) for t in takes):
                takes.append(Take(knobs=dict(setting), file=take_file_name(setting)))
        elif held.status == "complete":
            notes.append(f"{knob_label(setting)} is already recorded; it is left as it is.")
        else:
            notes.append(
                f"{knob_label(setting)} is in the session but {held.status}; recording it."
            )
    return replace(existing, takes=tuple(takes)), notes


def _check_rig_and_program(out: Path, existing: SessionManifest, rig: Rig) -> None:
    wanted = replace(existing, rig=rig.to_dict(), sample_rate_hz=rig.sample_rate_hz)
    differences = session_differences(existing, wanted)
    if differences:
        raise SessionError(
            f"The session in {out} was recorded through another rig: {'; '.join(differences)}. "
            "Takes added to a session must be recorded the same way; use the session's rig "
            f"({existing.rig.get('name')}), or record a new session. Nothing was changed."
        )
    if _program_hash(out / PROGRAM_NAME, existing.program.length) != existing.program.sha256:
        raise SessionError(
            f"{out / PROGRAM_NAME} is missing or no longer the program the session's takes "
            "played (its hash differs from session.json), so new takes would not match them. "
            "Nothing was changed; restore program.wav or record a new session."
        )


def add_to_session(
    rig: Rig,
    out: Path,
    settings: Sequence[dict[str, float]],
    *,
    assume_yes: bool = False,
    device_override: str | None = None,
    monitor: Monitor | None = None,
    say: Callable[[str], None] = print,
    engine_factory: Callable[[Rig, str | None], AudioEngine] = open_engine,
    ask: Callable[[str], str] | None = None,
    interactive: bool | None = None,
) -> SessionResult:
    """Record takes at ``settings`` into the session in ``out`` (see the module's text).

    Parameters
    ----------
    rig : Rig
        The rig the session was recorded through (``--device`` applied).
    out : Path
        The session folder.
    settings : sequence of dict
        The knob settings to add, each naming every knob of the session.
    assume_yes, device_override, monitor, say, engine_factory, ask, interactive
        As for :func:`ampcap.capture.session.record_session`.

    Raises
    ------
    SessionError
        No session in ``out``, another rig, or a program.wav that is not the session's.
    UsageError
        Settings with other knobs, or values outside the session's ranges.
    """
    existing = existing_session(out)
    ordered = check_added_settings(existing, settings)
    _check_rig_and_program(out, existing, rig)
    manifest, notes = extended_manifest(existing, ordered)
    for note in notes:
        say(note)
    knobs = [KnobRange(k.name, k.minimum, k.maximum) for k in existing.knobs]
    request = RecordRequest(
        rig=rig,
        knobs=knobs,
        plan=ordered,
        out=out,
        assume_yes=assume_yes,
        device_override=device_override,
    )
    controller = _knob_controller(request, say, ask, interactive)
    engine: AudioEngine | None = None
    try:
        controller.check_ready()
        engine = engine_factory(rig, device_override)
        controller.bind(engine)
        save_session(out, manifest)
        samples = program_samples(out / PROGRAM_NAME, manifest.program.length)
        recorder = Recorder(out, manifest, samples, engine, controller, monitor, say)
        return recorder.result(False, True, notes)
    finally:
        release(controller, engine)


def settings_from_plan_file(path: Path) -> list[dict[str, float]]:
    """The settings of an ``ampcap plan --out`` file (its ``add`` list)."""
    from ampcap.files import read_json

    document = read_json(path, "a plan written by `ampcap plan --out`")
    items = document.get("add") if isinstance(document, dict) else None
    if not isinstance(items, list) or not items:
        raise UsageError(
            f'{path} holds no settings to add (no "add" list): give the file '
            "`ampcap plan SESSION --add N --out FILE` wrote."
        )
    settings = []
    for index, item in enumerate(items):
        knobs = item.get("knobs") if isinstance(item, dict) else None
        if not isinstance(knobs, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in knobs.values()
        ):
            raise UsageError(
                f"{path} is damaged: add[{index}].knobs is not a set of knob values. Write it "
                "again with `ampcap plan --out`."
            )
        settings.append({str(k): float(v) for k, v in knobs.items()})
    return settings


def parse_added_settings(texts: Sequence[str]) -> list[dict[str, float]]:
    """``--add-settings isf=3.75`` (or ``isf=3.75,gain=5``) -> settings; a clear error else."""
    from ampcap.labels import parse_label

    settings = []
    for text in texts:
        setting = parse_label(text)
        if setting is None:
            raise UsageError(
                f"--add-settings {text!r} is not KNOB=VALUE[,KNOB=VALUE...], for example "
                "--add-settings isf=3.75."
            )
        settings.append(setting)
    return settings
