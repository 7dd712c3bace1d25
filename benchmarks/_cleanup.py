"""What a benchmark started is stopped when it ends, whatever happens; and the proof that nothing is left.

Every benchmark runs its body inside a `Teardown`:

    with Teardown(tag, home=s.home) as td:
        td.watch_stream_jobs(namespace)        # the namespace's Flink jobs are stopped at the end
        td.watch_pinot_tables(client, prefix)  # the Pinot tables created in the namespace are dropped
        proc = td.run([...])                   # a subprocess in a process group of its own
        td.on_exit("Spark", stop_spark)        # anything else to undo
        ...

At the end (a normal return, an exception, or SIGTERM, SIGINT or SIGHUP, which become an exception
here so that the `finally` blocks of the benchmark run too), in this order:
1. the `on_exit` callbacks, newest first;
2. the process groups of the subprocesses started with `popen`/`run`;
3. the stream jobs of the watched namespaces (their pid records under `<home>/run/flink/`);
4. the Pinot tables of the watched prefixes;
5. a sweep: any process still running that descends from this one, or whose command line holds the
   tag (a stream job whose pid record was never written, say), is stopped too.
A process group is stopped with `os.killpg`: SIGTERM, a wait, then SIGKILL for what is left. A
process that shares this process's own group (the Spark JVM that pyspark starts, for one) cannot be
stopped that way without stopping the benchmark itself: it gets the same signals one by one.
Processes of the local stack (pid records under `<home>/run/*.json`) are never touched: the stack is
shared and `lakehouse stack down` stops it.

Then the last line of the benchmark's output: `leftover_processes=N`, the processes still running
that carry the tag in their command line or descend from this process, checked with psutil. N > 0
fails the benchmark (exit status 1) and lists them on stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
TERM_TIMEOUT = 30.0  # seconds between SIGTERM and SIGKILL
KILL_TIMEOUT = 10.0  # seconds to wait for SIGKILL to take effect


def log(message: str) -> None:
    print(f"cleanup: {message}", file=sys.stderr, flush=True)


class Interrupted(BaseException):
    """A termination signal arrived (a BaseException, so that `except Exception` does not swallow it)."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


@dataclass
class Group:
    """A process group to stop: its id (the pid of the process that leads it) and, to recognise a
    reused pid, the leader's start time."""

    pgid: int
    create_time: float | None
    what: str


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reap(pid: int) -> None:
    """Collect the exit status of a child of this process that has ended (no zombie is left)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _group_members() -> dict[int, list[psutil.Process]]:
    """Live processes by process group; this process's own ended children are reaped on the way."""
    me = os.getpid()
    groups: dict[int, list[psutil.Process]] = {}
    for proc in psutil.process_iter(["ppid", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            if proc.info["ppid"] == me:
                _reap(proc.pid)
            continue
        try:
            groups.setdefault(os.getpgid(proc.pid), []).append(proc)
        except OSError:
            continue
    return groups


def _leader_is_ours(group: Group) -> bool:
    """False when the group's id now belongs to another program: a live process with that pid
    started at another time. (While any member of the original group is alive, Linux does not hand
    its id out again, so a group whose leader is gone but whose members remain is still ours.)"""
    try:
        leader = psutil.Process(group.pgid)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
    if group.create_time is None:
        return False
    try:
        return abs(leader.create_time() - group.create_time) < 1.0
    except psutil.Error:
        return True  # it ended while we looked


def stop(
    groups: Iterable[Group] = (), procs: Iterable[psutil.Process] = (), timeout: float = TERM_TIMEOUT
) -> list[psutil.Process]:
    """Stop process groups (os.killpg) and single processes with their descendants: SIGTERM, wait
    up to `timeout`, SIGKILL what is left, wait again. Returns every process that was signalled."""
    own_group = os.getpgrp()
    targets = [g for g in groups if g.pgid > 1 and g.pgid != own_group and _leader_is_ours(g)]
    singles: dict[int, psutil.Process] = {}
    for proc in procs:
        if proc.pid == os.getpid() or not _alive(proc):
            continue
        singles[proc.pid] = proc
        with contextlib.suppress(psutil.Error):
            for child in proc.children(recursive=True):
                singles.setdefault(child.pid, child)
    members = _group_members()
    signalled = [p for g in targets for p in members.get(g.pgid, [])] + list(singles.values())
    if not signalled:
        return []
    for g in targets:
        if g.pgid in members:
            log(f"{g.what}: SIGTERM to process group {g.pgid} ({len(members[g.pgid])} processes)")
    for proc in singles.values():
        log(f"SIGTERM to pid {proc.pid} ({_describe(proc)})")
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, KILL_TIMEOUT)):
        for g in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(g.pgid, sig)
        for proc in singles.values():
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        deadline = time.monotonic() + wait
        while True:
            members = _group_members()
            left_groups = [g for g in targets if g.pgid in members]
            left_singles = [p for p in singles.values() if _alive(p)]
            for proc in singles.values():
                if not _alive(proc):
                    _reap(proc.pid)
            if not left_groups and not left_singles:
                return signalled
            if time.monotonic() > deadline:
                break
            time.sleep(0.25)
        if sig == signal.SIGTERM:
            for g in left_groups:
                log(
                    f"{g.what}: process group {g.pgid} still running {wait:.0f}s after SIGTERM, sending SIGKILL"
                )
            for proc in left_singles:
                log(f"pid {proc.pid} still running {wait:.0f}s after SIGTERM, sending SIGKILL")
        targets, singles = left_groups, {p.pid: p for p in left_singles}
    for g in targets:
        log(f"{g.what}: process group {g.pgid} survived SIGKILL")
    return signalled


def _describe(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:200] or proc.name()
    except psutil.Error:
        return "?"


def _records(run_dir: Path, prefix: str = "") -> dict[Path, dict]:
    """The pid records (`<name>.json`: pid, create_time, ...) in a folder, read without changing them."""
    found = {}
    for path in sorted(run_dir.glob(f"{prefix}*.json")):
        try:
            record = json.loads(path.read_text())
            found[path] = {"pid": int(record["pid"]), "create_time": float(record["create_time"])}
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def stack_processes(home: Path | None) -> set[int]:
    """Pids of the local stack's services (their records under `<home>/run/`) and their descendants."""
    if home is None:
        return set()
    pids: set[int] = set()
    for record in _records(home / "run").values():
        try:
            proc = psutil.Process(record["pid"])
            if abs(proc.create_time() - record["create_time"]) >= 1.0:
                continue
            pids |= {proc.pid, *(c.pid for c in proc.children(recursive=True))}
        except psutil.Error:
            continue
    return pids


def stop_stream_jobs(home: Path, namespace: str, timeout: float = TERM_TIMEOUT) -> list[psutil.Process]:
    """Stop the Flink stream jobs of one namespace by their process groups (each job is launched in a
    session of its own, see lakehouse.stack.process.launch, so its group holds its JVM too), and drop
    their pid records as `lakehouse.realtime.flink.stop_all` does. Returns the processes signalled."""
    run_dir = home / "run" / "flink"
    records = _records(run_dir, prefix=f"{namespace}.")
    groups = [Group(r["pid"], r["create_time"], f"stream job {path.stem}") for path, r in records.items()]
    signalled = stop(groups, timeout=timeout)
    for path in records:
        path.unlink(missing_ok=True)
    return signalled


def stop_spark(timeout: float = TERM_TIMEOUT) -> None:
    """Stop the PySpark session of this process and the JVM behind it (see stop_local_spark)."""
    from lakehouse.resources.spark import stop_local_spark

    stop_local_spark(timeout)


class Teardown:
    """Stops what the benchmark started when the `with` block ends, then prints `leftover_processes=N`.

    `tag`: the benchmark's namespace tag, found in the command lines of what it started (None: only
    the processes descending from this one are looked for); `home`: the stack's home, where the pid
    records of the stream jobs and of the stack's own services are."""

    def __init__(self, tag: str | None, home: Path | None = None):
        self.tag, self.home = tag, home
        self._callbacks: list[tuple[str, Callable[[], object]]] = []
        self._procs: list[tuple[subprocess.Popen, float | None, str]] = []
        self._namespaces: list[str] = []
        self._pinot: list[tuple[object, str]] = []
        self._signalled: list[psutil.Process] = []  # checked again at the end
        self._closing = False
        self._saved: dict = {}

    # -- what to stop -------------------------------------------------------------------------

    def on_exit(self, what: str, callback: Callable[[], object]) -> None:
        self._callbacks.append((what, callback))

    def popen(self, cmd: list[str], what: str | None = None, **kwargs) -> subprocess.Popen:
        """subprocess.Popen in a session (so a process group) of its own, stopped at the end."""
        proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            create_time = None
        self._procs.append((proc, create_time, what or os.path.basename(cmd[0])))
        return proc

    def run(self, cmd: list[str], what: str | None = None, **kwargs) -> subprocess.CompletedProcess:
        """Like subprocess.run(capture_output=True, text=True), in a process group of its own; if the
        benchmark is interrupted meanwhile, the whole group is stopped (and so is anything left in
        it when the command is done)."""
        proc = self.popen(cmd, what, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
        stdout, stderr = proc.communicate()
        return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)

    def watch_stream_jobs(self, namespace: str) -> None:
        """Stop the namespace's Flink jobs at the end (needs `home`)."""
        if self.home is None:
            raise ValueError("Teardown(home=...) is needed to find the stream jobs' pid records")
        self._namespaces.append(namespace)

    def stop_stream_jobs(self) -> None:
        """Stop the watched namespaces' Flink jobs now (the end does it again, in case any restarted)."""
        for namespace in self._namespaces:
            signalled = stop_stream_jobs(self.home, namespace)
            if signalled:
                log(f"stopped the stream jobs of namespace {namespace} ({len(signalled)} processes)")
            self._signalled += signalled

    def watch_pinot_tables(self, client, prefix: str) -> None:
        """Drop the Pinot tables `<prefix><name>` at the end (`client`: a PinotClient)."""
        if not prefix:
            raise ValueError("refusing to drop the Pinot tables of the main namespace (empty prefix)")
        self._pinot.append((client, prefix))

    def drop_pinot_tables(self) -> None:
        for client, prefix in self._pinot:
            try:
                client.drop_tables(prefix)
            except Exception as exc:  # noqa: BLE001 - reported; the rest of the cleanup goes on
                log(f"could not drop the Pinot tables {prefix}*: {exc}")

    # -- the end ------------------------------------------------------------------------------

    def _on_signal(self, signum, _frame) -> None:
        if self._closing:
            log(f"{signal.Signals(signum).name} received while cleaning up: the cleanup goes on")
            return
        raise Interrupted(signum)

    def __enter__(self) -> Teardown:
        for sig in SIGNALS:
            self._saved[sig] = signal.signal(sig, self._on_signal)
        return self

    def close(self) -> None:
        """Stop everything (each step on its own: one failing does not skip the others)."""
        self._closing = True
        steps: list[tuple[str, Callable[[], object]]] = list(reversed(self._callbacks))
        steps.append(("subprocesses", self._stop_procs))
        steps.append(("stream jobs", self.stop_stream_jobs))
        steps.append(("Pinot tables", self.drop_pinot_tables))
        steps.append(("sweep", self._sweep))
        for what, step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - reported; the rest of the cleanup goes on
                log(f"{what}: {exc.__class__.__name__}: {exc}")

    def _stop_procs(self) -> None:
        groups = [Group(proc.pid, create_time, what) for proc, create_time, what in self._procs]
        self._signalled += stop(groups)
        for proc, _, _ in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)

    def _candidates(self) -> list[psutil.Process]:
        """Live processes that descend from this one or carry the tag in their command line (never
        this process, its ancestors, or the stack's services), and those stopped before."""
        me = psutil.Process()
        skip = {me.pid, *(p.pid for p in me.parents())} | stack_processes(self.home)
        found: dict[int, psutil.Process] = {}
        with contextlib.suppress(psutil.Error):
            for child in me.children(recursive=True):
                found[child.pid] = child
        if self.tag:
            for proc in psutil.process_iter(["cmdline"]):
                if self.tag in " ".join(proc.info["cmdline"] or ()):
                    found.setdefault(proc.pid, proc)
        for proc in self._signalled:
            found.setdefault(proc.pid, proc)
        return [p for pid, p in sorted(found.items()) if pid not in skip and _alive(p)]

    def _sweep(self) -> None:
        groups, singles = [], []
        for proc in self._candidates():
            try:
                leads_session = os.getsid(proc.pid) == proc.pid
                create_time = proc.create_time()
            except (OSError, psutil.Error):
                continue
            if leads_session:  # started in a session of its own: stop its whole group
                groups.append(Group(proc.pid, create_time, f"left-over pid {proc.pid} ({_describe(proc)})"))
            else:
                singles.append(proc)
        self._signalled += stop(groups, singles)

    def leftovers(self) -> list[psutil.Process]:
        return self._candidates()

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._closing = True  # from here on, a signal no longer interrupts (the cleanup is bounded)
        left: list[psutil.Process] = []
        try:
            if isinstance(exc, Interrupted):
                log(f"{exc}: stopping what the benchmark started")
            self.close()
            left = self.leftovers()
            print(f"leftover_processes={len(left)}", flush=True)
            for proc in left:
                print(f"left over: pid {proc.pid}: {_describe(proc)}", file=sys.stderr, flush=True)
        finally:
            for sig, handler in self._saved.items():
                signal.signal(sig, handler)
        if isinstance(exc, Interrupted):
            raise SystemExit(128 + exc.signum) from None
        if left and exc is None:
            raise SystemExit(1)
        return False
