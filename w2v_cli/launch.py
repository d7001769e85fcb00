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

No process outlives the job. Any process failing stops the others (ps-lite would make them
wait for it forever, inside a step, deaf to SIGTERM); SIGINT or SIGTERM to the launcher goes
to the workers, then everything left is stopped within ``SIGNAL_GRACE`` seconds; and a local
process whose launcher died anyway (SIGKILL) stops by itself (``watch_launcher``). Rank 0's
workdir lock is an flock, which the kernel drops with its process, however it ends.
The launcher stops the local ssh clients too, but an ssh client does not always take its
remote process with it, so check the hosts after a failure.
The ``worker-i`` log names follow launch order; each worker's rank comes from the
scheduler and is recorded in its ``run.json`` / ``run.rank{r}.json``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from . import interrupt
from .errors import DataError, Interrupted, LaunchError, UsageError

# A server or scheduler imports MXNet and serves until the workers are done (serve()).
SERVE_CODE = "from w2v_cli.launch import serve; serve()"


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


# A lower bound of one local process's own memory: importing MXNet leaves 94 MiB of anonymous
# pages (measured, MXNet 1.9.1 CPU, Python 3.11); a worker's tables and batches come on top.
PROCESS_BYTES = 64 << 20


def check_memory(num_workers: int, num_servers: int, hosts: Optional[list[str]] = None,
                 available: Optional[int] = None) -> None:
    """UsageError when the processes a job starts on this machine (the scheduler, and without
    ``hosts`` every server and worker) need more than ``available`` bytes (default: what the
    system reports; no check if it reports nothing) at PROCESS_BYTES each: refused before the
    first starts, rather than processes started until the machine runs out."""
    from .limits import available_memory, human_bytes

    available = available_memory() if available is None else available
    here = 1 + (0 if hosts else num_servers + num_workers)
    if available is not None and here * PROCESS_BYTES > available:
        raise UsageError(f"{here} processes on this machine need at least "
                         f"{human_bytes(here * PROCESS_BYTES)} of memory (each imports MXNet: "
                         f"{human_bytes(PROCESS_BYTES)} or more), more than the "
                         f"{human_bytes(available)} available; start fewer workers or servers "
                         "(-n, -s), or spread them over hosts (--hostfile)")


def check_root_uri(root_uri: str) -> None:
    """UsageError unless the scheduler, which runs here, can listen on ``root_uri``: an
    address (or a name resolving to one) of this machine. ps-lite's scheduler binds it, and
    would fail with a stack trace while the job waited for it."""
    try:
        infos = socket.getaddrinfo(root_uri, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise UsageError(f"--root-uri {root_uri}: not an address this machine can resolve "
                         f"({getattr(e, 'strerror', None) or e})") from None
    family, _, _, _, address = infos[0]
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((address[0], 0))
    except OSError as e:
        raise UsageError(f"--root-uri {root_uri}: not an address of this machine, where the "
                         f"scheduler runs (cannot listen there: {e.strerror or e})") from None


def ssh_argv(node: Node, cwd: str) -> list[str]:
    """The ssh command that runs ``node`` on its host, in ``cwd``, with its environment."""
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(node.env.items()))
    remote = f"cd {shlex.quote(cwd)} && env {env} {shlex.join(node.argv)}"
    return ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", node.host,
            remote]


def run(nodes: list[Node], timeout: float, log_dir: Optional[Path] = None,
        cwd: Optional[str] = None, stop: Optional[interrupt.StopFlag] = None) -> list[dict]:
    """Start every node, wait for the workers, and stop whatever is left, on success or not.

    Each process gets its own process group, so stopping it stops its children too. Output
    goes to ``log_dir/<name>.log`` when given, else to this process's stdout and stderr.
    Returns each worker's final result line, parsed (``worker_result``), by rank.
    Raises LaunchError when a process fails or the job outlives ``timeout`` seconds, and
    Interrupted on SIGINT / SIGTERM (or ``stop`` set by hand), after passing the signal on
    to the workers and stopping every process within ``SIGNAL_GRACE`` seconds.
    """
    cwd = cwd or os.getcwd()
    job = _Job()
    deadline = time.monotonic() + timeout
    # Local children hold the read end of this pipe: when this process dies, however it
    # dies, the pipe closes and they stop (watch_launcher) instead of serving nobody.
    alive_r, alive_w = os.pipe()
    signum = None
    with interrupt.catch_signals(stop) as stop:
        try:
            for node in nodes:
                job.start(node, cwd, log_dir, alive_r)
                if stop.is_set():
                    break
            _wait_for_workers(job.procs, deadline, stop)
            # With the workers done the servers and scheduler exit by themselves; give them a
            # moment.
            grace = min(deadline, time.monotonic() + 30)
            while time.monotonic() < grace and any(p.poll() is None for _, p in job.procs):
                time.sleep(0.1)
        except Interrupted as e:
            signum = e.signum
            raise
        finally:
            _stop_all(job.procs, signum)
            os.close(alive_w)
            os.close(alive_r)
            job.close()
    return job.results(log_dir)


SIGNAL_GRACE = 8.0  # seconds from a SIGINT / SIGTERM to the last process of the job killed


class _Job:
    """The processes started so far, their log files, and the result lines of the workers
    whose output comes through this process (no log dir)."""

    def __init__(self):
        self.procs: list[tuple[Node, subprocess.Popen]] = []
        self.logs: list = []
        self.tees: list[tuple[Node, threading.Thread, list]] = []

    def start(self, node: Node, cwd: str, log_dir: Optional[Path], alive_fd: int) -> None:
        out = None
        if log_dir is not None:
            try:
                log_dir.mkdir(parents=True, exist_ok=True)
                out = open(log_dir / f"{node.name}.log", "wb")
            except OSError as e:
                raise LaunchError(f"cannot write the log of {node.name} in {log_dir}: "
                                  f"{e.strerror or e}") from None
            self.logs.append(out)
        elif node.role == "worker":
            out = subprocess.PIPE  # passed on line by line, its result line kept (_tee)
        argv = ssh_argv(node, cwd) if node.host else node.argv
        env = None if node.host else {**os.environ, **node.env, ALIVE_FD_VAR: str(alive_fd)}
        try:
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out,
                                    stderr=subprocess.STDOUT if log_dir is not None else None,
                                    start_new_session=True,
                                    pass_fds=() if node.host else (alive_fd,))
        except OSError as e:  # run() stops the nodes already started
            raise LaunchError(f"cannot start {node.name} ({shlex.join(argv)}): "
                              f"{e.strerror or e}") from None
        self.procs.append((node, proc))
        if out is subprocess.PIPE:
            kept: list = []
            thread = threading.Thread(target=_tee, args=(proc.stdout, kept), daemon=True)
            try:
                thread.start()
            except RuntimeError as e:  # "can't start new thread"; run() stops the nodes
                raise LaunchError(f"cannot pass on the output of {node.name}: {e} (too many "
                                  "processes for this machine: start fewer, or use --log-dir)"
                                  ) from None
            self.tees.append((node, thread, kept))

    def results(self, log_dir: Optional[Path]) -> list[dict]:
        found = []
        for node, _ in self.procs:
            if node.role != "worker":
                continue
            lines: list = []
            if log_dir is not None:
                with contextlib.suppress(OSError):
                    lines = (log_dir / f"{node.name}.log").read_text(
                        encoding="utf-8", errors="replace").splitlines()
            else:
                lines = next(kept for n, _, kept in self.tees if n is node)
            parsed = [r for r in map(worker_result, lines) if r]
            if parsed:
                found.append(parsed[-1])
        return sorted(found, key=lambda r: r["rank"])

    def close(self) -> None:
        for _, thread, _ in self.tees:
            thread.join(timeout=5)
        for f in self.logs:
            f.close()


def _tee(pipe, kept: list) -> None:
    """Copy a worker's output to this process's stdout; keep its last result line."""
    out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None
    for raw in iter(pipe.readline, b""):
        if out is not None:
            out.write(raw)
            out.flush()
        line = raw.decode("utf-8", errors="replace")
        if worker_result(line):
            kept[:] = [line]
    pipe.close()


# The last line of `w2v train` as a dist worker (cli.py): "worker 1/2 (4400 tokens): loss
# 1.234, 12571.3 tokens/sec on cpu(0)"
_RESULT = re.compile(r"^worker (\d+)/(\d+) \((\d+) tokens\): loss ([-\d.e+naif]+), "
                     r"([\d.]+) tokens/sec")


def worker_result(line: str) -> Optional[dict]:
    """A worker's result line as {"rank", "num_workers", "tokens", "loss",
    "tokens_per_sec"}, or None for any other line."""
    m = _RESULT.match(line.strip())
    if not m:
        return None
    rank, n, tokens, loss, speed = m.groups()
    return {"rank": int(rank), "num_workers": int(n), "tokens": int(tokens),
            "loss": float(loss), "tokens_per_sec": float(speed)}


def summary(results: list[dict]) -> str:
    """One line: tokens/sec of each worker and of the job."""
    each = ", ".join(f"worker {r['rank']} {r['tokens_per_sec']:,.0f}" for r in results)
    total = sum(r["tokens_per_sec"] for r in results)
    return f"tokens/sec: {each}; total {total:,.0f}"


def _status(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _wait_for_workers(procs, deadline: float, stop: interrupt.StopFlag,
                      grace: float = 30.0) -> None:
    """Wait until every worker exits 0. Any process failing ends the job at once: the others
    would wait for it forever (a worker whose server died hangs inside its step). The
    failure named is the first one seen; a worker's among those seen together (the others
    may be exiting because of it). The scheduler and servers may end a moment before the
    workers (they finish together), but not much sooner."""
    workers = [p for n, p in procs if n.role == "worker"]
    services_done_at = None
    while not all(p.poll() == 0 for p in workers):
        if stop.is_set():
            raise Interrupted(f"interrupted by {stop.name}; stopped the job's {len(procs)} "
                              "processes", stop.signum)
        failed = [(n, p) for n, p in procs if p.poll() not in (None, 0)]
        if failed:
            node, p = sorted(failed, key=lambda e: e[0].role != "worker")[0]
            raise LaunchError(f"{node.name} {_status(p.poll())}; stopped the job")
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


def _stop_all(procs, signum: Optional[int] = None) -> None:
    """Stop every process we started, and its process group, within SIGNAL_GRACE seconds.

    ``signum`` (the launcher was interrupted): the workers get it first, so they can stop
    after their step as `w2v train` does on its own, while the servers they need still run;
    then every process left gets SIGTERM, then SIGKILL. Without it: SIGTERM, then SIGKILL.
    """
    start = time.monotonic()
    if signum is not None:
        _signal([p for n, p in procs if n.role == "worker"], signum)
        _wait([p for n, p in procs if n.role == "worker"], start + SIGNAL_GRACE / 2)
    _signal([p for _, p in procs], signal.SIGTERM)
    _wait([p for _, p in procs], start + SIGNAL_GRACE)
    _signal([p for _, p in procs], signal.SIGKILL)
    _wait([p for _, p in procs], time.monotonic() + 5)


def _signal(procs: list, sig: int) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, sig)


def _wait(procs: list, until: float) -> None:
    while any(p.poll() is None for p in procs) and time.monotonic() < until:
        time.sleep(0.05)


ALIVE_FD_VAR = "W2V_LAUNCHER_FD"


def watch_launcher(role: str) -> None:
    """In a process `w2v launch` started here: exit when the launcher is gone.

    The launcher holds the write end of a pipe whose read end is this process's fd
    ``$W2V_LAUNCHER_FD``; reading it returns only at its end, when the launcher has died.
    ps-lite would otherwise wait for its peers forever, inside C code that no signal
    handler of Python's reaches: the thread ends the process with ``os._exit``.
    """
    fd = os.environ.get(ALIVE_FD_VAR)
    if not fd or not fd.isdigit():
        return

    def watch():
        try:
            while os.read(int(fd), 1):
                pass
        except OSError:
            return  # not our pipe (a stale variable): nothing to watch
        os.write(2, f"Error: {role}: its launcher (w2v launch) is gone; stopping\n".encode())
        os._exit(LaunchError.exit_code)

    threading.Thread(target=watch, name="watch-launcher", daemon=True).start()


def serve() -> None:
    """A server or the scheduler: importing MXNet with that DMLC_ROLE serves until the job
    ends."""
    watch_launcher(os.environ.get("DMLC_ROLE", "server"))
    from .backend import mxnet

    mxnet()
