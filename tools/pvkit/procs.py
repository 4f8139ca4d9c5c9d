"""Child processes that die with pvkit: make, QEMU, mmdebstrap.

Every long-running child is started with `spawn` (or `run`), in a process group of its own, and
is tethered to pvkit twice:

- the kernel sends it SIGKILL when pvkit dies (PR_SET_PDEATHSIG), and
- a small guardian process, started before the child, holds the read end of a pipe whose only
  write end pvkit keeps; when pvkit goes away by any path (exit, exception, SIGHUP, SIGKILL) the
  pipe reaches EOF and the guardian kills the child's whole process group, so grandchildren
  (the compilers make runs, QEMU's helpers) die too.

On a normal end `Child.reap` kills what is left of the group before the group leader is
reaped, so the group id can never be reused by an unrelated process in between. Spawn from the
main thread only: PR_SET_PDEATHSIG fires when the spawning *thread* exits.

`install_signal_handlers` turns SIGTERM and SIGHUP into `Interrupted` (a KeyboardInterrupt), so
every `finally:` and context manager runs on those signals as on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, TypeVar

T = TypeVar("T")

PR_SET_PDEATHSIG = 1

# The guardian: reads the child's process group id, then blocks until its stdin reaches EOF
# (pvkit closed it, or pvkit is gone) and kills that group. It ignores the terminal's signals
# so that it outlives pvkit's own handling of a Ctrl-C or a hang-up.
_GUARDIAN = """\
import os, signal, sys
for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
    signal.signal(s, signal.SIG_IGN)
line = sys.stdin.buffer.readline()
if line.strip():
    sys.stdin.buffer.read()
    try:
        os.killpg(int(line), signal.SIGKILL)
    except (ProcessLookupError, PermissionError, ValueError):
        pass
"""


class Interrupted(KeyboardInterrupt):
    """pvkit received SIGTERM or SIGHUP (SIGINT stays a plain KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP end pvkit like Ctrl-C does: cleanup runs, children are killed.
    SIGINT does so even when pvkit inherited it ignored (a background job of a script: Python
    then installs no handler, and a SIGINT sent to pvkit was lost, seen in CI). SIGUSR1 prints
    every thread's Python stack to the process's stderr (`kill -USR1 PID`: where is pvkit
    stuck?) and pvkit goes on."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if sys.__stderr__ is not None:  # fd 2, also when sys.stderr is replaced (tests, capture)
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # pvkit died before the prctl: do not run at all
        os._exit(1)


_LIVE: set[Child] = set()  # children not reaped yet (kill_all)
_LIVE_LOCK = threading.Lock()


class Child:
    """A tethered child process (see the module doc)."""

    def __init__(self, argv: Sequence[str], **popen: Any) -> None:
        self._guardian = subprocess.Popen(
            [sys.executable, "-c", _GUARDIAN], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            self.proc = subprocess.Popen(list(argv), start_new_session=True,
                                         preexec_fn=_die_with_parent, **popen)
        except BaseException:
            self._stop_guardian()
            raise
        assert self._guardian.stdin is not None
        self._guardian.stdin.write(f"{self.proc.pid}\n".encode())
        self._guardian.stdin.flush()
        self.returncode: int | None = None
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _stop_guardian(self) -> None:
        if self._guardian.poll() is None:
            self._guardian.kill()
        self._guardian.wait()
        if self._guardian.stdin:
            with contextlib.suppress(OSError):
                self._guardian.stdin.close()

    def finished(self) -> bool:
        """Has the group leader exited? (It stays a zombie until `reap`.)"""
        if self.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def wait_exit(self) -> None:
        """Block until the group leader exits, without reaping it."""
        if self.returncode is None:
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)

    def reap(self) -> int:
        """Kill whatever is left of the process group, stop the guardian, reap the leader."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self._stop_guardian()
            self.returncode = self.proc.wait()
            with _LIVE_LOCK:
                _LIVE.discard(self)
        return self.returncode

    def kill(self) -> None:
        """Kill the process group now (from any thread); `reap` still follows."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def wait(self) -> int:
        """Wait for the child to exit on its own, then reap it and its group."""
        self.wait_exit()
        return self.reap()


def kill_all() -> None:
    """Kill every tethered child still running (an interrupted pvkit stopping its workers)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for child in live:
        child.kill()


def in_threads(jobs: Sequence[Callable[[], T]]) -> list[T]:
    """Run the jobs side by side in threads; their results in order. The first error is
    raised once all have ended; an interrupt (Ctrl-C, SIGTERM, SIGHUP) of the main thread
    kills every tethered child, so the jobs end at once instead of finishing their work."""
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException | None] = [None] * len(jobs)

    def work(i: int) -> None:
        try:
            results[i] = jobs[i]()
        except BaseException as exc:  # reported in the caller's thread
            errors[i] = exc

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(jobs))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except BaseException:
        kill_all()
        for t in threads:
            t.join()
        raise
    for exc in errors:
        if exc is not None:
            raise exc
    return results


def spawn(argv: Sequence[str], **popen: Any) -> Child:
    return Child(argv, **popen)


@contextlib.contextmanager
def tethered(argv: Sequence[str], **popen: Any) -> Iterator[Child]:
    """A child that is killed (with its group) when the block ends, however it ends."""
    child = spawn(argv, **popen)
    try:
        yield child
    finally:
        child.reap()


def run(argv: Sequence[str], *, input: str | bytes | None = None, text: bool = False,
        **popen: Any) -> subprocess.CompletedProcess[Any]:
    """subprocess.run(capture_output=True) for a long command, tethered to pvkit."""
    outputs: dict[str, Any] = {}

    def drain(name: str, stream: IO[Any]) -> None:
        outputs[name] = stream.read()
        stream.close()

    with tethered(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text,
                  **popen) as child:
        proc = child.proc
        assert proc.stdout is not None and proc.stderr is not None
        readers = [threading.Thread(target=drain, args=(n, s), daemon=True)
                   for n, s in (("out", proc.stdout), ("err", proc.stderr))]
        for t in readers:
            t.start()
        if input is not None:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(input)
            proc.stdin.close()
        child.wait_exit()
        rc = child.reap()
        for t in readers:
            t.join()
    return subprocess.CompletedProcess(list(argv), rc, outputs.get("out"), outputs.get("err"))
