"""The ``ampcap`` command: one group, commands loaded on demand, one way out with an exit code.

User errors (:class:`ampcap.errors.AmpcapError`) print one paragraph and exit with status 2;
anything else is a bug and prints a traceback only with ``AMPCAP_DEBUG=1``.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

import click
from rich.text import Text

from ampcap import __version__
from ampcap.console import err
from ampcap.errors import AmpcapError, Terminated

# name -> "module:attribute". Command modules import their stage inside the command function,
# so `ampcap record --help` never loads torch.
COMMANDS = {
    "record": "ampcap.commands.record:record",
    "rig": "ampcap.commands.rig:rig",
    "rigs": "ampcap.commands.rig:rigs",
    "align": "ampcap.commands.align:align",
    "split": "ampcap.commands.split:split",
    "plan": "ampcap.commands.plan:plan",
    "train": "ampcap.commands.train:train",
    "export": "ampcap.commands.export:export",
    "render": "ampcap.commands.render:render",
    "report": "ampcap.commands.report:report",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ampcap")
def cli() -> None:
    """Capture a guitar amplifier or pedal into a dataset and a compact neural model of it.

    \b
    The pipeline, each step reading the folder the last one wrote:
      ampcap record --rig virtual --knob isf --steps 5 --out captures/demo
      ampcap align  captures/demo
      ampcap split  captures/demo --out data/demo
      ampcap train  data/demo --out runs/demo
      ampcap report runs/demo
    """


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM: raise :class:`Terminated` once, so every ``finally`` and Ctrl-C handler runs;
    a second SIGTERM during that clean-up is ignored (SIGKILL still stops the process)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


def _interrupted(exc: BaseException | None) -> None:
    """One line and the exit status of the signal: 143 for SIGTERM, 130 for Ctrl-C."""
    if isinstance(exc, Terminated):
        err.print("Stopped by SIGTERM.", style="yellow")
        sys.exit(Terminated.exit_code)
    err.print("Interrupted.", style="yellow")
    sys.exit(130)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI with SIGTERM handled like Ctrl-C, then put the caller's
    SIGTERM handler back (for a program or a test that calls ``main`` in its own process)."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: keep the program's handler
        previous = None
    try:
        _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> None:
    """Run the CLI and turn user errors into a message and exit status 2."""
    debug = os.environ.get("AMPCAP_DEBUG") == "1"
    try:
        # Without standalone mode click returns a command's `Exit(code)` instead of exiting.
        code = cli.main(args=argv, prog_name="ampcap", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except AmpcapError as exc:
        if debug:
            raise
        err.print(Text.assemble(("error:", "bold red"), " ", str(exc)), soft_wrap=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:
        # click turns Ctrl-C (and SIGTERM's Terminated) into Abort; EOF at a prompt too.
        if isinstance(exc.__cause__, KeyboardInterrupt):
            _interrupted(exc.__cause__)
        err.print("Stopped.", style="yellow")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    except Exception:
        if debug:
            raise
        import traceback

        err.print(
            Text.assemble(
                ("ampcap hit an internal error.", "bold red"),
                " This is a bug, not your input. Run again with AMPCAP_DEBUG=1 to see the "
                "traceback and report it.",
            )
        )
        if os.environ.get("AMPCAP_TRACEBACK_FILE"):
            with open(os.environ["AMPCAP_TRACEBACK_FILE"], "w", encoding="utf-8") as handle:
                traceback.print_exc(file=handle)
        sys.exit(1)
    sys.exit(0)
