"""The one family of errors ampcap raises for problems a user can fix.

Every message names the bad value, says what was expected and what to do. The CLI turns any
:class:`AmpcapError` into a one-paragraph message and exit status 2; anything else is a bug and
shows a traceback only with ``AMPCAP_DEBUG=1``.
"""

from __future__ import annotations

import errno


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
    """The error for a file that could not be written: a full disk, or another OS error.

    ``kept`` says what the user still has, e.g. "files written before this one are intact".
    """
    if exc.errno == errno.ENOSPC:
        return AmpcapError(
            f"The disk is full: could not write {path}. Free some space and run the command "
            f"again; {kept}."
        )
    return AmpcapError(
        f"Could not write {path}: {exc.strerror or exc}. Check the folder exists and is "
        f"writable, then run the command again; {kept}."
    )
