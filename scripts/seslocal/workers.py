"""ses-local --processes N: N child processes that accept on one listening socket.

The parent binds the socket, forks the children and then only supervises
them: SIGTERM or SIGINT to the parent is passed to every child, and the
parent exits once all have stopped. A child that exits on its own stops the
others, and the parent then exits with status 1. On Linux each child also
gets SIGTERM if the parent dies without passing the signal on.
"""

import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

from .logs import log_event, logger

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# A child that has not stopped this long after SIGTERM gets SIGKILL.
STOP_TIMEOUT_SECONDS = 10.0
WAIT_POLL_SECONDS = 0.2
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def set_parent_death_signal(signal_number: int) -> None:
    """Ask Linux to send signal_number to this process when its parent exits. Does nothing on other systems."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        log_event(logging.WARNING, "parent_death_signal_failed", error=os.strerror(error))


class WorkerPool:
    """The parent's view of its serving children."""

    def __init__(self, count: int):
        self.count = count
        self.children: dict[int, int] = {}  # PID -> worker index
        self.stop_requested = False

    def request_stop(self, reason: str) -> None:
        if not self.stop_requested:
            log_event(logging.INFO, "stopping", reason=reason, workers=len(self.children))
        self.stop_requested = True
        self.signal_children(signal.SIGTERM)

    def signal_children(self, signal_number: int) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signal_number)
            except ProcessLookupError:
                pass  # exited but not yet reaped

    def start(self, listening_socket, serve_child: Callable[[int], int]) -> None:
        """Fork the children. The stop signals stay blocked in the parent until wait().

        serve_child(index) runs in each child with SIGTERM and SIGINT blocked.
        It must install its own handlers, unblock the signals, serve until
        stopped and return the child's exit status.
        """
        def on_stop_signal(signal_number, frame):
            self.request_stop(signal.Signals(signal_number).name)

        for signal_number in STOP_SIGNALS:
            signal.signal(signal_number, on_stop_signal)
        # Blocked until every child is forked, so that a signal arriving in
        # between reaches the parent's handler with the full list of children.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        parent_pid = os.getpid()
        for index in range(self.count):
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                os._exit(run_child(index, parent_pid, serve_child))
            self.children[pid] = index
            log_event(logging.INFO, "worker_started", worker=index, pid=pid)
        listening_socket.close()  # the parent never accepts

    def pids(self) -> list[int]:
        return sorted(self.children)

    def wait(self) -> int:
        """Unblock the stop signals, wait for every child and return the parent's exit status."""
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return self.wait_for_children()

    def wait_for_children(self) -> int:
        exit_status = 0
        kill_at = None
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                if self.stop_requested and kill_at is None:
                    kill_at = time.monotonic() + STOP_TIMEOUT_SECONDS
                if kill_at is not None and time.monotonic() >= kill_at:
                    log_event(logging.ERROR, "workers_killed", pids=",".join(map(str, self.children)),
                              timeout_seconds=STOP_TIMEOUT_SECONDS)
                    self.signal_children(signal.SIGKILL)
                    kill_at = float("inf")
                    exit_status = 1
                time.sleep(WAIT_POLL_SECONDS)
                continue
            index = self.children.pop(pid, None)
            if index is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if self.stop_requested and code == 0:
                continue
            # A negative code is the number of the signal that ended the child.
            log_event(logging.ERROR, "worker_exited", worker=index, pid=pid, status=code)
            exit_status = 1
            self.request_stop(f"worker {index} exited")
        return exit_status


def run_child(index: int, parent_pid: int, serve_child: Callable[[int], int]) -> int:
    """Serve in a forked child and return its exit status, which the caller passes to os._exit()."""
    status = 1
    try:
        for signal_number in STOP_SIGNALS:
            signal.signal(signal_number, signal.SIG_DFL)
        set_parent_death_signal(signal.SIGTERM)
        if os.getppid() != parent_pid:
            return 1  # the parent died before the death signal was set
        status = serve_child(index)
    except BaseException:
        logger.exception("worker %d failed", index)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return status


def write_pids(path, pids: list[int]) -> None:
    """Write one PID per line, replacing the file in one rename so that readers never see part of it."""
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="ascii") as pids_file:
        pids_file.write("".join(f"{pid}\n" for pid in pids))
    os.replace(temporary, path)
