"""The one family of errors ampcap raises for problems a user can fix.

Every message names the bad value, says what was expected and what to do. The CLI turns any
:class:`AmpcapError` into a one-paragraph message and exit status 2; anything else is a bug and
shows a traceback only with ``AMPCAP_DEBUG=1``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class AmpcapError(Exception):
    """Base class of errors caused by input, configuration or the environment, not by a bug."""

    exit_code = 2


class UsageError(AmpcapError):
    """A command-line value that cannot be used (bad range, bad knob assignment...)."""


class RigError(AmpcapError):
    """A rig file that cannot be read, has unknown keys or impossible values."""


class DeviceError(AmpcapError):
    """An audio device that is missing, ambiguous, or cannot run the rig's settings."""


class CaptureError(AmpcapError):
    """A take that could not be recorded (dropout, over-level program, write error...)."""


class AudioFileError(AmpcapError):
    """An audio file that is missing, corrupt, truncated, silent or has the wrong layout."""


class SessionError(AmpcapError):
    """A capture session folder that is missing, damaged, or belongs to another session."""


class AlignmentError(AmpcapError):
    """Recordings that cannot be aligned (unrelated signals, silence, mismatched rates...)."""


class DatasetError(AmpcapError):
    """A split that cannot be built, or a dataset folder that cannot be read."""


class TrainingError(AmpcapError):
    """Training that cannot start or go on (bad run folder, diverged loss, refused resume...)."""


class ModelFormatError(AmpcapError):
    """A model file that cannot be written or read in the requested format."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would raise KeyboardInterrupt, so it cleans up the same way.

    The CLI exits with status 143 (128 + SIGTERM) instead of Ctrl-C's 130.
    """

    exit_code = 143


def write_error(path: object, exc: OSError, kept: str) -> AmpcapError:
    """The one error for a file or folder that could not be written, saying why and what to do.

    A read-only disk, a denied permission, a folder on the path that is really a file, a file
    where a folder is needed, a full disk: each gets its own sentence naming ``path``. ``kept``
    says what the user still has, e.g. "files written before this one are intact".
    """
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return AmpcapError(
            f"The disk is full: could not write {path}. Free some space and run the command "
            f"again; {kept}."
        )
    if code == errno.EROFS:
        reason = "it is on a read-only file system"
        advice = "Give an output on a writable disk (or remount that one read-write)"
    elif code in (errno.EACCES, errno.EPERM):
        reason = "permission denied"
        advice = "Give an output folder you may write to, or change that folder's permissions"
    elif code in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        blocker = _not_a_folder(Path(os.fspath(path)))  # type: ignore[call-overload]
        if blocker is not None:
            reason = f"{blocker} is a file, not a folder"
        elif code == errno.EISDIR:
            reason = "it is a folder, not a file"
        else:
            reason = exc.strerror or str(exc)
        advice = "Give another output path"
    else:
        reason = exc.strerror or str(exc)
        advice = "Check the folder exists and is writable"
    return AmpcapError(
        f"Could not write {path}: {reason}. {advice}, then run the command again; {kept}."
    )


def _not_a_folder(path: Path) -> Path | None:
    """The first of ``path``'s folders (or ``path`` itself) that exists and is not a folder."""
    for candidate in reversed((path, *path.parents)):
        if candidate.exists() and not candidate.is_dir():
            return candidate
        if not candidate.exists():
            return None
    return None
