"""Policy servers as subprocesses: start, wait for the ``listening`` line, freeze, kill, stop."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROBOPOLICY = (sys.executable, "-m", "robopolicy")
"""The ``robopolicy`` command of this interpreter (its entry points name ``serve`` and
``control``)."""


class ServerProcess:
    """A policy server subprocess and the address it printed; stderr goes to a temp file."""

    def __init__(
        self, argv: Sequence[str], *, timeout: float = 60.0, env: dict | None = None
    ) -> None:
        self.argv = list(argv)
        # append mode: the child shares the file's offset, which stderr() moves
        self.log = tempfile.TemporaryFile(mode="a+")  # noqa: SIM115  (read by stderr())
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if not line:
            self.stop()
            raise RuntimeError(f"policy server did not start: {self.stderr()[-2000:]}")
        event = json.loads(line)
        self.host, self.port, self.pid = event["host"], int(event["port"]), int(event["pid"])

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def alive(self) -> bool:
        return self.proc.poll() is None

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        self._close()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (after SIGCONT, in case it is frozen) and wait; the exit code."""
        if self.alive():
            self.thaw()
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()
        return int(self.proc.returncode)

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def _close(self) -> None:
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()


def fake_server(
    center: Sequence[float], *args: str, control: Path | None = None, port: int = 0
) -> ServerProcess:
    """The torch-free wave policy (:mod:`hardware.testing.policy_server`) on ``port`` (0: a
    free one)."""
    argv = [sys.executable, "-m", "hardware.testing.policy_server", "--port", str(port)]
    argv += ["--center", ",".join(f"{c:.6f}" for c in center)]
    if control is not None:
        argv += ["--control", str(control)]
    return ServerProcess([*argv, *args])


def policy_server(checkpoint: str | Path, *args: str) -> ServerProcess:
    """``robopolicy serve CHECKPOINT --port 0 --threads 1 ...`` (the real server)."""
    argv = [*ROBOPOLICY, "serve", str(checkpoint), "--port", "0", "--threads", "1"]
    return ServerProcess([*argv, *args])


class DaemonProcess:
    """``robopolicy control ARGS`` (or another ``command``) in a subprocess (``env``: its
    environment, default this one's; ``stdin``: a file descriptor, default this one's); stdout
    and stderr go to temp files (a full pipe would stall the loop). :meth:`event` waits for one
    of the JSON event lines it prints on stderr."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        command: str = "control",
        stdin: int | None = None,
    ) -> None:
        # append mode: the child shares the files' offsets, which stdout() and stderr() move
        self.out = tempfile.TemporaryFile(mode="a+")  # noqa: SIM115  (read by stdout())
        self.err = tempfile.TemporaryFile(mode="a+")  # noqa: SIM115  (read by stderr())
        argv = [*ROBOPOLICY, command, *args]
        self.proc = subprocess.Popen(
            argv, stdin=stdin, stdout=self.out, stderr=self.err, text=True, env=env
        )

    def event(self, name: str, timeout: float = 60.0) -> dict:
        """The first stderr line ``{"event": name, ...}``, once printed."""
        deadline = time.monotonic() + timeout
        while True:
            exited = self.proc.poll() is not None
            for line in self.stderr().splitlines():
                if line.startswith("{") and f'"event": "{name}"' in line:
                    return json.loads(line)
            if exited:
                raise RuntimeError(f"the daemon exited early: {self.stderr()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the daemon did not print {name!r}: {self.stderr()[-2000:]}")
            time.sleep(0.05)

    def wait_running(self, timeout: float = 60.0) -> None:
        """Wait until the loop runs (its ``running`` event)."""
        self.event("running", timeout)

    def wait(self, timeout: float = 60.0) -> int:
        return int(self.proc.wait(timeout))

    def stdout(self) -> str:
        self.out.seek(0)
        return self.out.read()

    def stderr(self) -> str:
        self.err.seek(0)
        return self.err.read()

    def resources(self) -> tuple[float, int, int]:
        """Resident memory (MB), open file descriptors and threads of the daemon process."""
        pid = self.proc.pid
        status = Path(f"/proc/{pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return rss / 1024, fds, len(os.listdir(f"/proc/{pid}/task"))
