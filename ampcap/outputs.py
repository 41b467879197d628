"""Where ampcap writes: one guard, one way of writing a file, one lock per folder.

Every command that writes goes through here, so that whatever the user types:

- nothing ampcap reads or made is written over by mistake (:func:`check_output_file`,
  :func:`check_output_folder`): an input, a model, a checkpoint, a manifest, a take;
- a file is replaced whole or not at all (:func:`atomic_output`): a unique temporary file in the
  same folder, flushed to disk, renamed over the target;
- a folder that cannot be written (read-only, not permitted, a file on the path, a full disk)
  is a clear message naming it (:func:`ampcap.errors.write_error`), found before any slow work;
- two commands never write one folder at once (:func:`folder_lock`): the second is refused,
  naming the folder and the first one's process id.

Shared vocabulary: it imports no stage.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from ampcap.errors import AmpcapError, UsageError, write_error

#: The lock file a writing command holds inside the folder it writes.
LOCK_NAME = ".ampcap.lock"
#: Files of a session, a dataset or a run that no output may replace.
PROTECTED_NAMES = frozenset(
    {"session.json", "manifest.json", "run.json", "alignment.json", "metrics.json", "program.wav"}
)
#: Exported models (``.nam``; Proteus and AIDA-X are ``.json``, as are manifests): only
#: ``ampcap export`` writes them. Checkpoints (``.pt``) are never an output's target.
MODEL_SUFFIXES = frozenset({".nam", ".json"})
#: The file that marks each kind of ampcap folder.
FOLDER_MARKERS = {"session.json": "session", "manifest.json": "dataset", "run.json": "run"}
#: Sub-folders whose files belong to the folder's kind: takes, checkpoints, splits, exports.
_OWNED_SUBFOLDERS = {
    "session": {"takes", "aligned"},
    "run": {"checkpoints", "exports"},
    "dataset": {"train", "val", "test"},
}


class OutputRefused(UsageError):
    """An output that would write over something ampcap must keep, or a folder in use."""


def holds_files(folder: Path) -> bool:
    """Whether ``folder`` holds anything besides a writer's lock file."""
    return any(entry.name != LOCK_NAME for entry in folder.iterdir())


def ampcap_folder(path: Path) -> tuple[Path, str] | None:
    """The session, dataset or run folder that ``path`` lies in (itself, its folder, or the
    one above), resolved, with its kind; None when it lies in none."""
    path = Path(path).resolve()
    for folder in (path, path.parent, path.parent.parent):
        for marker, kind in FOLDER_MARKERS.items():
            if (folder / marker).is_file():
                return folder, kind
    return None


def _same(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _protected_reason(path: Path, models_ok: bool) -> str | None:
    if path.suffix == ".pt":
        return "it is a model checkpoint (.pt)"
    if path.suffix in MODEL_SUFFIXES and not models_ok:
        return f"{path.suffix} is a model's or a manifest's suffix, and this command writes audio"
    owner = ampcap_folder(path.parent)
    if owner is None:
        return None
    folder, kind = owner
    parts = path.resolve().relative_to(folder).parts
    if len(parts) == 1 and path.name in PROTECTED_NAMES:
        return f"{path.name} is part of the {kind} {folder}"
    if len(parts) > 1 and parts[0] in _OWNED_SUBFOLDERS[kind]:
        if not (models_ok and parts[0] == "exports"):
            return f"it lies in {parts[0]}/ of the {kind} {folder}, which ampcap writes itself"
    return None


def check_output_file(
    path: Path, inputs: Iterable[Path | None] = (), *, option: str, models_ok: bool = False
) -> None:
    """Refuse an output file that would destroy something, and find an unwritable folder now.

    Parameters
    ----------
    path : Path
        The file the command will write (replaced if it exists).
    inputs : iterable of Path or None
        Files the command reads; the output may be none of them (same path, link or inode).
    option : str
        How the user named the output (``"--out"``, ``"OUT.wav"``), quoted in messages.
    models_ok : bool, default False
        True for ``ampcap export``, which replaces an earlier export (``.nam``, ``exports/``).

    Raises
    ------
    OutputRefused
        The output is an input, a folder, or a file ampcap must keep (a model, a checkpoint,
        a manifest, a take, a split).
    ampcap.errors.AmpcapError
        Its folder cannot be written (see :func:`ampcap.errors.write_error`).
    """
    path = Path(path)
    for source in inputs:
        if source is not None and _same(path, Path(source)):
            raise OutputRefused(
                f"{option} {path} would overwrite {source}, an input of this command. Give "
                "another file name; nothing was changed."
            )
    if path.is_dir():
        raise OutputRefused(f"{option} {path} is a folder; give the name of a file to write.")
    reason = _protected_reason(path, models_ok)
    if reason is not None:
        raise OutputRefused(
            f"{option} {path} would overwrite a file ampcap must keep: {reason}. Give another "
            "file name; nothing was changed."
        )
    probe_folder(path.parent, shown=path)


def check_output_folder(folder: Path, inputs: Iterable[Path], *, option: str) -> None:
    """Refuse an output folder that is, or holds, one of the command's input folders."""
    folder = Path(folder)
    for source in inputs:
        source = Path(source)
        if _same(folder, source) or folder.resolve() in source.resolve().parents:
            raise OutputRefused(
                f"{option} {folder} is {'' if _same(folder, source) else 'a folder above '}"
                f"the input {source}; writing it would destroy that input. Give another "
                f"{option} folder. Nothing was changed."
            )


def probe_folder(
    folder: Path, kept: str = "nothing was changed", shown: Path | None = None
) -> None:
    """Prove a file can be made in ``folder`` (created for the test, then removed), or raise
    the clear :func:`ampcap.errors.write_error` message now, before any slow work. The message
    names ``shown`` (the file to be written) when given, else the folder."""
    folder = Path(folder)
    missing = [f for f in (folder, *folder.parents) if not os.path.lexists(f)]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".ampcap-probe.", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise write_error(shown or folder, exc, kept) from exc
    finally:
        # The writer makes them again when it writes: a refused command leaves no empty folder.
        for made in missing:
            _remove_if_empty(made)


@contextmanager
def atomic_output(path: Path, kept: str = "nothing was changed") -> Iterator[Path]:
    """Write a file whole or not at all: yields a temporary path to write, then renames it.

    The temporary file is unique (a random name, created exclusively) and in ``path``'s folder, keeps
    ``path``'s suffix (for writers that pick a format by it), is flushed to disk and gets the
    mode a plain ``open()`` would give before it replaces ``path``. If the block raises, it is
    removed and ``path`` is untouched; an :class:`OSError` becomes the message of
    :func:`ampcap.errors.write_error`.

    Parameters
    ----------
    path : Path
        The file to write.
    kept : str
        What the user still has if writing fails, for the message.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Named before it is created (mkstemp names it only once it exists), so a Ctrl-C or
        # SIGTERM at any point leaves nothing behind: the `finally` knows what to remove.
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            tmp = None  # another writer's file: never remove it
            raise
        yield Path(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise write_error(path, exc, kept) from exc
    except AmpcapError as exc:
        # A writer that reported its own OSError named the temporary file: name the real one.
        if isinstance(exc.__cause__, OSError):
            raise write_error(path, exc.__cause__, kept) from exc.__cause__
        raise
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _holder(handle: int) -> str:
    """Who holds the lock, from what the lock file says: "ampcap split (PID 1234)"."""
    try:
        words = os.pread(handle, 200, 0).decode("utf-8", "replace").split()
    except OSError:
        words = []
    if not words:
        return "another ampcap process"
    return " ".join(["another ampcap", *words[1:], f"(PID {words[0]})"])


@contextmanager
def folder_lock(folder: Path, command: str) -> Iterator[None]:
    """Hold ``folder``'s writer lock for the block; a second writer is refused at once.

    The lock is ``fcntl.flock`` on ``folder/.ampcap.lock``, which holds the process id and
    ``command``. The kernel drops it when the process ends however it ends, so a lock left by
    a killed process never blocks anyone. The folder is created if needed (and removed again
    if it is still empty at the end); a folder that cannot be written fails here, first.

    Raises
    ------
    OutputRefused
        Another process holds the lock: the message names the folder and its process id.
    ampcap.errors.AmpcapError
        ``folder`` cannot be created or written.
    """
    folder = Path(folder)
    created = not folder.exists()
    lock = folder / LOCK_NAME
    handle = -1
    try:
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(handle)
                os.close(handle)
                handle = -1
                raise OutputRefused(
                    f"{folder} is being written by {holder}. Wait for it to finish, or give "
                    "another folder; nothing was changed. (A lock left by a process that has "
                    "ended is released by itself.)"
                ) from None
            # The last holder may have removed the file between our open and our lock: then
            # this lock guards nothing, take the one at the path now.
            if _is_file_at(handle, lock):
                break
            os.close(handle)
            handle = -1
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()} {command}\n".encode(), 0)
    except OSError as exc:
        if handle >= 0:
            os.close(handle)
        if created:
            _remove_if_empty(folder)
        raise write_error(folder, exc, "nothing was changed") from exc
    try:
        yield
    finally:
        # Removed while still locked, so nobody can be holding this file's lock after us.
        if _is_file_at(handle, lock):
            try:
                os.unlink(lock)
            except OSError:
                pass
        os.close(handle)
        if created:
            _remove_if_empty(folder)


def _is_file_at(handle: int, path: Path) -> bool:
    """Whether the open file ``handle`` is the file at ``path`` now."""
    try:
        mine, there = os.fstat(handle), os.stat(path)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def output_lock(path: Path, command: str) -> AbstractContextManager[None]:
    """The :func:`folder_lock` of the session, dataset or run that the file ``path`` lies in
    (none for a file elsewhere), for commands that write one file."""
    owner = ampcap_folder(Path(path).absolute().parent)
    return folder_lock(owner[0], command) if owner is not None else nullcontext()


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
