"""The recorder commands run their work in a forked child in its own session, and turn stop
signals into a clean stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from webrecord.recorder import procs

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_supervised(run: Callable[[], int]) -> int:
    """Run `run` in a child in its own session and forward signals to it; its exit code.

    Why: Ctrl-C in a terminal signals the whole foreground process group, which includes
    Playwright's driver; it would die before we could stop cleanly. In its own session the child
    only sees the signals we forward, and turns them into a clean stop.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.setsid()
            procs.die_with_parent(signal.SIGTERM)  # supervisor killed hard: still stop cleanly
            code = run()
        except KeyboardInterrupt:
            code = 130
        except BaseException:  # noqa: BLE001 - report and exit; never return into the parent's code
            log.exception("recorder crashed")
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    def forward(signum: int, _frame: Any) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    for sig in STOP_SIGNALS:
        signal.signal(sig, forward)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def install_stop_signals(on_signal: Callable[[int], None]) -> None:
    """`on_signal(signum)` in the running loop for SIGINT, SIGTERM and SIGHUP."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
