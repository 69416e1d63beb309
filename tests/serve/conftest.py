"""A policy server in a subprocess (``robopolicy serve`` on a stored fixture checkpoint)."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from robopolicy.serve.commands import LAUNCH

FIXTURES = Path(__file__).resolve().parents[1] / "policies" / "fixtures"


class ServerProcess:
    """A running ``robopolicy serve`` subprocess and the address it printed."""

    def __init__(self, *args: str, timeout: float = 60.0) -> None:
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  (kept for stderr())
        command = [sys.executable, "-c", LAUNCH, "serve", *args]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise RuntimeError(f"server did not start: {self.stderr()}")
        event = json.loads(line)
        assert event["event"] == "listening"
        self.host, self.port, self.pid = event["host"], event["port"], event["pid"]

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait; the exit code (the process is killed if it hangs)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """The diffusion fixture served on a free loopback port with one torch thread."""
    proc = ServerProcess(str(FIXTURES / "diffusion_mlp"), "--port", "0", "--threads", "1")
    yield proc
    proc.stop()
