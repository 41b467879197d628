"""ampcap from Python: the pipeline's steps as functions, doing what the commands do.

Each function takes the same options as its command (``ampcap record``, ``align``, ``split``,
``plan``, ``train``, ``export``, ``render``, ``report``), holds the same folder lock while it
writes, writes the same files and returns the result as a frozen dataclass instead of printing
it. ``record``, ``align``, ``split``, ``plan``, ``train`` and ``export`` are thin shells over
these functions, so a notebook and a terminal get byte-identical sessions, alignments, datasets and models from the same options and seeds.
Errors are :class:`ampcap.errors.AmpcapError` subclasses with a message that says what to do.

Example, the built-in virtual rig end to end::

    from ampcap import api

    api.record("virtual", "captures/demo", knobs=["isf"], steps=5, di_seconds=60)
    api.align("captures/demo")
    api.split(["captures/demo"], "data/demo", seed=0)
    result = api.train("data/demo", "runs/demo", hidden=32, minutes=8)
    print(result.outcome.message, [str(p) for p in result.exports])
    api.export("runs/demo", "nam", knobs={"isf": 5.0})

Heavy modules load inside the functions: importing ``ampcap.api`` does not load torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ampcap.errors import UsageError
from ampcap.training import train_model as train

if TYPE_CHECKING:
    from ampcap.capture.session import RecordRequest, SessionResult
    from ampcap.dataset.pairs import FileAlignment
    from ampcap.dataset.split_write import SplitResult
    from ampcap.schema.alignment import AlignmentManifest
    from ampcap.train.export import ExportResult
    from ampcap.train.render import RenderResult

__all__ = [
    "add_takes",
    "align",
    "align_files",
    "export",
    "plan",
    "record",
    "record_request",
    "render",
    "report",
    "split",
    "train",
]

Progress = Callable[[int, int], None]


def record_request(
    rig: str,
    out: str | Path,
    *,
    knobs: Sequence[str] = (),
    steps: int | None = None,
    ranges: Sequence[str] = (),
    plan: str = "grid",
    takes: int | None = None,
    di: Sequence[str] = (),
    di_seconds: float = 60.0,
    device: str | None = None,
    seed: int = 0,
    retake: bool = False,
    assume_yes: bool = True,
) -> RecordRequest:
    """What :func:`record` will do, checked, without recording: the rig, knobs and plan.

    Parameters
    ----------
    rig : str
        A shipped rig's name (``"virtual"``, ``"motu"``...) or the path of a rig ``.toml``.
    out : str or Path
        The session folder; running the same call again resumes it.
    knobs : sequence of str
        Knobs to step through (several make a grid); default the rig's only knob.
    steps : int, optional
        Settings per knob for the grid plan (default 5).
    ranges : sequence of str
        ``"MIN:MAX"`` per knob in order, or ``"NAME=MIN:MAX"``; default the rig's dial.
    plan : {"grid", "lhs"}
        Every combination, or a Latin hypercube of ``takes`` settings.
    takes : int, optional
        Number of settings for ``plan="lhs"``.
    di : sequence of str
        DI files (``[KIND:]PATH``); empty plays the built-in DI.
    di_seconds : float, default 60
        Length of the built-in DI, seconds.
    device : str, optional
        An audio device name substring instead of the rig's.
    seed : int, default 0
        Seed of the built-in DI and of the LHS plan.
    retake : bool, default False
        Record complete takes again.
    assume_yes : bool, default True
        Never wait for a person (knobs set by hand are announced, then recorded).
    """
    from ampcap.capture.plan import knob_ranges, make_plan
    from ampcap.capture.rig import load_rig
    from ampcap.capture.session import RecordRequest

    loaded = load_rig(rig).with_device(device)
    if not knobs:
        if len(loaded.knobs) != 1:
            known = f" (the rig knows {', '.join(loaded.knobs)})" if loaded.knobs else ""
            raise UsageError(
                f"Missing --knob NAME: which knob to step through{known}. For "
                "example --knob isf --steps 5."
            )
        knobs = tuple(loaded.knobs)
    ranged = knob_ranges(loaded, tuple(knobs), tuple(ranges))
    return RecordRequest(
        rig=loaded,
        knobs=ranged,
        plan=make_plan(ranged, plan, steps, takes, seed),
        out=Path(out),
        di_specs=list(di),
        di_seconds=di_seconds,
        seed=seed,
        retake=retake,
        assume_yes=assume_yes,
        device_override=device,
    )


def record(
    rig: str,
    out: str | Path,
    *,
    monitor: Any = None,
    say: Callable[[str], None] = print,
    **options: Any,
) -> SessionResult:
    """Record a device at each knob setting into the session folder ``out`` (``ampcap record``).

    Parameters
    ----------
    rig, out, **options
        As for :func:`record_request`: ``knobs``, ``steps``, ``ranges``, ``plan``, ``takes``,
        ``di``, ``di_seconds``, ``device``, ``seed``, ``retake``, ``assume_yes``.
    monitor : object, optional
        Live meter callbacks (:class:`ampcap.capture.session.Monitor`).
    say : callable, default print
        Receives each line of instructions and notices.
    """
    from ampcap.capture.session import record_session
    from ampcap.outputs import folder_lock

    request = record_request(rig, out, **options)
    with folder_lock(request.out, "record"):
        return record_session(request, monitor=monitor, say=say)


def add_takes(
    rig: str,
    out: str | Path,
    settings: Sequence[Mapping[str, float]],
    *,
    device: str | None = None,
    assume_yes: bool = True,
    monitor: Any = None,
    say: Callable[[str], None] = print,
) -> SessionResult:
    """Record takes at ``settings`` into the existing session ``out``, playing its program
    (``ampcap record --add-settings`` / ``--plan-file``). Settings name every knob."""
    from ampcap.capture.extend import add_to_session
    from ampcap.capture.rig import load_rig
    from ampcap.outputs import folder_lock

    out = Path(out)
    with folder_lock(out, "record"):
        return add_to_session(
            load_rig(rig).with_device(device), out, [dict(s) for s in settings],
            assume_yes=assume_yes, device_override=device, monitor=monitor, say=say,
        )  # fmt: skip


def align(
    session: str | Path,
    *,
    max_latency_seconds: float | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> AlignmentManifest:
    """Align every complete take of ``session`` and write ``aligned/`` (``ampcap align``).

    ``max_latency_seconds`` is the largest latency searched (default 1 s); ``on_progress`` is
    called as ``(takes done, takes in all, take name)``.
    """
    from ampcap.dataset.align import align_session
    from ampcap.outputs import folder_lock

    options = {} if max_latency_seconds is None else {"max_latency_seconds": max_latency_seconds}
    with folder_lock(Path(session), "align"):
        return align_session(session, progress=on_progress, **options)


def align_files(
    input: str | Path,
    output: str | Path,
    *,
    loopback: str | Path | None = None,
    out: str | Path | None = None,
    max_latency_seconds: float | None = None,
) -> FileAlignment:
    """Align a recording made elsewhere to its DI (``ampcap align --input --output``); with
    ``out`` the aligned pair ``[input, target]`` is written there."""
    from ampcap.dataset.pairs import align_files as align_pair
    from ampcap.outputs import output_lock

    options = {} if max_latency_seconds is None else {"max_latency_seconds": max_latency_seconds}
    # The pair is written beside the output unless ``out`` says where.
    with output_lock(Path(out if out is not None else output), "align"):
        return align_pair(input, output, loopback, out_path=out, **options)


def split(
    sessions: Sequence[str | Path],
    out: str | Path,
    *,
    val: float | None = None,
    test: float | None = None,
    block_seconds: float | None = None,
    guard_ms: float | None = None,
    holdout: Sequence[str | tuple[str, float]] = (),
    seed: int | None = None,
    allow_warnings: bool = False,
    exports: Sequence[str] = (),
    on_progress: Progress | None = None,
) -> SplitResult:
    """Cut aligned sessions into a leak-free dataset at ``out`` (``ampcap split``).

    Options left at ``None`` take :class:`ampcap.dataset.split_write.SplitOptions`' defaults
    (val 0.15, test 0.15, 2 s blocks, 50 ms guards, seed 0). ``holdout`` settings are
    ``"isf=5"`` or ``("isf", 5.0)``; ``exports`` may hold ``"coreaudioml"`` and ``"nam"``.
    """
    from dataclasses import replace

    from ampcap.dataset.split_inputs import parse_holdout
    from ampcap.dataset.split_write import SplitOptions, build_dataset
    from ampcap.outputs import check_output_folder, folder_lock

    given = {
        "val": val,
        "test": test,
        "block_seconds": block_seconds,
        "guard_ms": guard_ms,
        "seed": seed,
    }
    options = replace(
        SplitOptions(),
        **{k: v for k, v in given.items() if v is not None},
        holdout=tuple(parse_holdout(h) if isinstance(h, str) else h for h in holdout),
        allow_warnings=allow_warnings,
        exports=tuple(dict.fromkeys(exports)),
    )
    out = Path(out)
    check_output_folder(out, [Path(s) for s in sessions], option="--out")
    with folder_lock(out, "split"):
        return build_dataset(sessions, out, options, progress=on_progress)


def plan(
    folders: str | Path | Sequence[str | Path], add: int, *, on_progress: Progress | None = None
) -> Any:
    """The ``add`` knob settings worth recording next (``ampcap plan``).

    ``folders`` is one aligned session (the gaps where the device's output changes most) or two
    or more runs of one dataset trained with different seeds (where the models disagree most).
    Returns a :class:`ampcap.dataset.plan.Plan` or :class:`ampcap.train.disagreement.RunPlan`;
    its ``to_dict()`` is the plan file ``record --plan-file`` reads.
    """
    paths = [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]
    runs = all((p / "run.json").exists() for p in paths)
    if not runs and len(paths) > 1:
        strays = ", ".join(str(p) for p in paths if not (p / "run.json").exists())
        raise UsageError(
            "Give one capture session, or two or more training runs (folders with run.json); "
            f"{strays} is not a run."
        )
    if runs:
        from ampcap.train.disagreement import plan_from_runs

        return plan_from_runs(paths, add, on_step=on_progress)
    from ampcap.dataset.plan import plan_session

    return plan_session(paths[0], add, on_take=on_progress)


def export(
    run: str | Path,
    fmt: str,
    *,
    knobs: Mapping[str, float] | None = None,
    out: str | Path | None = None,
    name: str | None = None,
    modeled_by: str | None = None,
    gear_make: str | None = None,
    gear_model: str | None = None,
    gear_type: str | None = None,
    tone_type: str | None = None,
) -> ExportResult:
    """Write the model of a run (or a ``.pt`` checkpoint) for a player (``ampcap export``).

    Parameters
    ----------
    run : str or Path
        A run folder (its ``model.pt``) or a checkpoint file.
    fmt : {"nam", "proteus", "aidax"}
        The player's format.
    knobs : mapping, optional
        Dial values to fold into the model (every knob for ``nam``).
    out : str or Path, optional
        The file to write; default ``RUN/exports/<run>[-<setting>].<ext>``.
    name, modeled_by, gear_make, gear_model, gear_type, tone_type : str, optional
        Metadata a ``.nam`` file carries (``name`` defaults to the run and setting).
    """
    from ampcap.labels import knob_label
    from ampcap.outputs import check_output_file, output_lock
    from ampcap.schema.run import BEST_MODEL, EXPORTS_DIR
    from ampcap.train.checkpoint import load_model
    from ampcap.train.export import default_file_name, export_model
    from ampcap.train.nam import NamMetadata

    run = Path(run)
    values = dict(knobs or {})
    if run.is_dir():
        checkpoint_path = run / BEST_MODEL
        if not checkpoint_path.is_file():
            raise UsageError(
                f"{run} has no {BEST_MODEL}; give a run folder made by `ampcap train` (or a .pt "
                "checkpoint)."
            )
    elif run.is_file():
        checkpoint_path = run
    else:
        raise UsageError(f"{run} does not exist; give a run folder made by `ampcap train`.")
    base = run if run.is_dir() else checkpoint_path.parent
    stem = base.resolve().name
    out = (
        Path(out) if out is not None else base / EXPORTS_DIR / default_file_name(stem, fmt, values)
    )
    check_output_file(out, (checkpoint_path,), option="--out", models_ok=True)
    model, checkpoint = load_model(checkpoint_path)
    metadata = NamMetadata(
        name=name or f"{stem} {knob_label(values)}".strip(),
        modeled_by=modeled_by,
        gear_make=gear_make,
        gear_model=gear_model,
        gear_type=gear_type,
        tone_type=tone_type,
    )
    with output_lock(out, "export"):
        return export_model(model, checkpoint, fmt, out, values, metadata)


def render(
    model: str | Path,
    input: str | Path,
    out: str | Path,
    *,
    knobs: Mapping[str, float] | None = None,
    **options: Any,
) -> RenderResult:
    """Play a mono audio file through a model (a run, checkpoint or exported file) and write
    the result (``ampcap render``). ``options`` are those of
    :func:`ampcap.train.render.render_file` (``resample``, ``workers``, ``warmup_seconds``...)."""
    from ampcap.outputs import output_lock
    from ampcap.train.render import render_file

    with output_lock(Path(out), "render"):
        return render_file(model, input, out, knobs, **options)


def report(folder: str | Path) -> Path:
    """Write the HTML report of a session or a run (``ampcap report``); returns its path."""
    from ampcap.outputs import folder_lock

    folder = Path(folder)
    if (folder / "session.json").exists():
        from ampcap.report_session import report_session_html

        with folder_lock(folder, "report"):
            return report_session_html(folder)
    if (folder / "run.json").exists():
        from ampcap.report_run import write_run_report

        with folder_lock(folder, "report"):
            return write_run_report(folder)
    raise UsageError(
        f"{folder} is neither a capture session (no session.json) nor a training run "
        "(no run.json). Give the folder `ampcap record --out` or `ampcap train --out` made."
    )
