"""Start a parameter-server job: one scheduler, S servers and W workers running a command.

MXNet's own launcher (``mxnet.tools.launch`` / ``dmlc_tracker``) calls ``Thread.isAlive``,
which Python 3.9 removed, so it crashes on the Pythons w2v supports. ps-lite needs nothing
from it beyond five environment variables per process, which this module sets:

    DMLC_ROLE           scheduler | server | worker
    DMLC_PS_ROOT_URI    address of the scheduler (127.0.0.1 on one machine)
    DMLC_PS_ROOT_PORT   its port
    DMLC_NUM_SERVER     how many servers
    DMLC_NUM_WORKER     how many workers

Servers and the scheduler only import MXNet: on import, MXNet sees a non-worker role, serves
until the workers finish, and exits. Workers run the user's command (``w2v train --kvstore
dist_sync ...``). Without hosts every process runs here over loopback; with hosts (an ssh
host file, one host a line) servers and workers go round-robin over them through ``ssh``.

On a cluster:

1. Every host needs the same w2v install at the same path (a shared or identical venv:
   the command runs as written, and servers run this interpreter, ``sys.executable``) and
   the prepared workdir at the same path (a shared filesystem, or ``w2v prepare`` run on
   each host: every worker reads the whole dataset and picks its shard by rank).
2. Passwordless ssh from this machine to each host (``ssh -o BatchMode=yes host true``).
3. ``w2v launch -n 4 -s 2 --hostfile hosts --root-uri <this machine's address> --
   /path/to/venv/bin/w2v train --kvstore dist_sync --workdir /shared/w2v-work``.
   The scheduler runs here; ``--root-uri`` must be reachable from every host, and hosts
   must reach one another on the ports ps-lite picks (set ``DMLC_INTERFACE`` in the
   environment of every process with ``--env DMLC_INTERFACE=eth0`` when a host has several
   interfaces).

Workers may share one workdir (several on one machine, or a shared filesystem): a dist
worker's ``w2v train`` takes no workdir lock until it knows its rank, and then only rank 0
takes it, so the workers never block one another but other w2v commands wait for the job.

The launcher stops the local ssh clients when the job fails or times out; an ssh client
does not always take its remote process with it, so check the hosts after a failure.
The ``worker-i`` log names follow launch order; each worker's rank comes from the
scheduler and is recorded in its ``run.json`` / ``run.rank{r}.json``.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .errors import DataError, LaunchError, UsageError

# A server or scheduler imports MXNet and serves until the workers are done.
SERVE_CODE = "from w2v_cli.backend import mxnet; mxnet()"


@dataclass
class Node:
    """One process of the job: its role, rank among its role, host (None: here) and command."""

    role: str
    rank: int
    argv: list[str]
    env: dict = field(default_factory=dict)
    host: Optional[str] = None

    @property
    def name(self) -> str:
        return f"{self.role}-{self.rank}" if self.role != "scheduler" else "scheduler"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def read_hosts(path: str | Path) -> list[str]:
    """Hosts from an ssh host file: one a line, ``#`` comments and blank lines ignored."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DataError(f"cannot read host file {path}: {e}") from None
    hosts = [line.split("#", 1)[0].strip() for line in lines]
    hosts = [h for h in hosts if h]
    if not hosts:
        raise DataError(f"host file {path} names no host")
    return hosts


def plan(command: list[str], num_workers: int, num_servers: int = 1, port: int = 0,
         root_uri: str = "127.0.0.1", hosts: Optional[list[str]] = None,
         env: Optional[dict] = None) -> list[Node]:
    """The job's processes: the scheduler first (here), then servers, then workers.

    With ``hosts``, server i runs on ``hosts[i % len]`` and worker i on
    ``hosts[(num_servers + i) % len]``; ``root_uri`` must then be an address of this machine
    that every host can reach. ``env``: more variables for every process (DMLC_INTERFACE,
    PS_VERBOSE, ...).
    """
    if num_workers < 1 or num_servers < 1:
        raise UsageError("a job needs at least one worker and one server")
    if not command:
        raise UsageError("no worker command: put it after `--`, e.g. "
                         "`w2v launch -n 2 -- w2v train --kvstore dist_sync`")
    common = {**(env or {}), "DMLC_PS_ROOT_URI": root_uri, "DMLC_PS_ROOT_PORT": str(port or free_port()),
              "DMLC_NUM_SERVER": str(num_servers), "DMLC_NUM_WORKER": str(num_workers)}
    serve = [sys.executable, "-c", SERVE_CODE]
    nodes = [Node("scheduler", 0, serve, {**common, "DMLC_ROLE": "scheduler"})]
    nodes += [Node("server", i, serve, {**common, "DMLC_ROLE": "server"}) for i in range(num_servers)]
    nodes += [Node("worker", i, list(command), {**common, "DMLC_ROLE": "worker"})
              for i in range(num_workers)]
    if hosts:
        for n, node in enumerate(nodes[1:]):
            node.host = hosts[n % len(hosts)]
    return nodes


def ssh_argv(node: Node, cwd: str) -> list[str]:
    """The ssh command that runs ``node`` on its host, in ``cwd``, with its environment."""
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(node.env.items()))
    remote = f"cd {shlex.quote(cwd)} && env {env} {shlex.join(node.argv)}"
    return ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", node.host,
            remote]


def run(nodes: list[Node], timeout: float, log_dir: Optional[Path] = None,
        cwd: Optional[str] = None) -> None:
    """Start every node, wait for the workers, and stop whatever is left, on success or not.

    Each process gets its own process group, so stopping it stops its children too. Output
    goes to ``log_dir/<name>.log`` when given, else to this process's stdout and stderr.
    Raises LaunchError when a process fails or the job outlives ``timeout`` seconds.
    """
    cwd = cwd or os.getcwd()
    procs: list[tuple[Node, subprocess.Popen]] = []
    logs = []
    deadline = time.monotonic() + timeout
    try:
        for node in nodes:
            out = None
            if log_dir is not None:
                try:
                    log_dir.mkdir(parents=True, exist_ok=True)
                    out = open(log_dir / f"{node.name}.log", "wb")
                except OSError as e:
                    raise LaunchError(f"cannot write the log of {node.name} in {log_dir}: "
                                      f"{e.strerror or e}") from None
                logs.append(out)
            argv = ssh_argv(node, cwd) if node.host else node.argv
            env = None if node.host else {**os.environ, **node.env}
            try:
                proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out,
                                        stderr=subprocess.STDOUT if out else None,
                                        start_new_session=True)
            except OSError as e:  # the finally below stops the nodes already started
                raise LaunchError(f"cannot start {node.name} ({shlex.join(argv)}): "
                                  f"{e.strerror or e}") from None
            procs.append((node, proc))
        _wait_for_workers(procs, deadline)
        # With the workers done the servers and scheduler exit by themselves; give them a moment.
        grace = min(deadline, time.monotonic() + 30)
        while time.monotonic() < grace and any(p.poll() is None for _, p in procs):
            time.sleep(0.1)
    finally:
        for _, p in procs:
            _stop(p)
        for f in logs:
            f.close()


def _wait_for_workers(procs, deadline: float, grace: float = 30.0) -> None:
    """Wait until every worker exits 0. Any process failing ends the job at once: the others
    would wait for it forever. The scheduler and servers may end a moment before the workers
    (they finish together), but not much sooner."""
    workers = [p for n, p in procs if n.role == "worker"]
    services_done_at = None
    while not all(p.poll() == 0 for p in workers):
        failed = [(n, p) for n, p in procs if p.poll() not in (None, 0)]
        if failed:
            # The others may be exiting because of it: name a worker's failure first.
            node, p = sorted(failed, key=lambda e: e[0].role != "worker")[0]
            raise LaunchError(f"{node.name} exited with status {p.poll()}")
        if services_done_at is None and any(p.poll() == 0 for n, p in procs
                                            if n.role != "worker"):
            services_done_at = time.monotonic()
        if services_done_at is not None and time.monotonic() > services_done_at + grace:
            running = [n.name for n, p in procs if p.poll() is None]
            raise LaunchError(f"the scheduler or a server ended but {', '.join(running)} "
                              "did not")
        if time.monotonic() > deadline:
            running = [n.name for n, p in procs if p.poll() is None]
            raise LaunchError(f"the job ran out of time; still running: {', '.join(running)}")
        time.sleep(0.1)


def _stop(p: subprocess.Popen) -> None:
    """Stop one process we started, and its process group: TERM, then KILL after 5 s."""
    if p.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
