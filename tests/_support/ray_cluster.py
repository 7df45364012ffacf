"""A real Ray cluster on this machine for the Ray engine's tests and benchmarks: ``ray start`` processes,
each node its own process group, stopped (only they) at the end; drivers connect through 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest


def require_ray() -> None:
    """Skip when Ray (instab[ray]) is missing, except under CI, which must run these tests."""
    try:
        import ray.data  # noqa: F401 - optional dependency (instab[ray]): the check is the import
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("Ray is missing: CI installs instab[test], which includes instab[ray]")
        pytest.skip("Ray is not installed (pip install 'instab[ray]')")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A head node and ``workers`` more nodes of ``cpus`` CPUs each, started with ``ray start --block``.

    The nodes start in the background; :meth:`ready` waits for them (do other work in between).
    """

    def __init__(self, workers: int = 1, cpus: int = 1) -> None:
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        # short: Ray's socket paths live under it and must stay under 108 bytes
        self.temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
        self.nodes: list[subprocess.Popen] = []
        self._ready = False
        # No token authentication: the drivers of these tests connect without one (Ray enables it on its own
        # once ~/.ray/auth_token exists, and then refuses drivers that do not send it)
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        ray = str(Path(sys.executable).with_name("ray"))
        common = ["--block", f"--num-cpus={cpus}", "--num-gpus=0", "--disable-usage-stats"]
        self._start([ray, "start", "--head", f"--port={self.port}", "--include-dashboard=false",
                     f"--temp-dir={self.temp}", *common], env)
        for _ in range(workers):  # they retry until the head is up
            self._start([ray, "start", f"--address={self.address}", *common], env)

    def _start(self, command: list[str], env: dict[str, str]) -> None:
        log = (self.temp / f"node{len(self.nodes)}.log").open("w")
        self.nodes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))

    def ready(self, timeout: float = 120) -> Cluster:
        """Wait until every node says it runs (its raylet registered with the head)."""
        deadline = time.monotonic() + timeout
        logs = sorted(self.temp.glob("node*.log"))
        while not self._ready and time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.nodes):
                break
            self._ready = all("Ray runtime started" in log.read_text() for log in logs)
            time.sleep(0.2)
        if not self._ready:
            text = "\n".join(log.read_text()[-2000:] for log in logs)
            self.stop()
            raise RuntimeError(f"the Ray cluster did not come up:\n{text}")
        return self

    def pids(self, name: str = "") -> list[int]:
        """Processes of this cluster (in the sessions of its nodes) whose command line holds ``name``; Ray
        titles a worker ``ray::<what it runs>``."""
        sessions = {p.pid for p in self.nodes}
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if name in title and os.getsid(int(entry.name)) in sessions:
                    found.append(int(entry.name))
            except (OSError, ProcessLookupError):
                continue  # gone meanwhile
        return found

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of this cluster's processes so far, with that of the workers they reaped."""
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile (its parent counts it once reaped)
            total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """Stop every node (``ray start --block`` stops its processes on SIGTERM), then kill what is left of
        their sessions."""
        for p in self.nodes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(p.poll() is None for p in self.nodes):
            time.sleep(0.1)
        for pid in self.pids():  # processes of the nodes' sessions only
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.nodes:
            p.wait()
        shutil.rmtree(self.temp, ignore_errors=True)


__all__ = ["Cluster", "require_ray"]
