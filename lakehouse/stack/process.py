"""Start, find and stop the stack's local processes.

Each started process has a record (`<home>/run/<service>.json`) with its pid and its start time,
so a stale record (the process died, or the pid was reused by another program) is recognised
and `down` stops exactly the processes that `up` started, with their children.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from lakehouse.secrets_store import without_secrets


@dataclass
class ProcessRecord:
    service: str
    pid: int
    create_time: float
    cmdline: list[str]
    log: str

    def is_alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return abs(proc.create_time() - self.create_time) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def _record_path(run_dir: Path, service: str) -> Path:
    return run_dir / f"{service}.json"


def read_record(run_dir: Path, service: str) -> ProcessRecord | None:
    path = _record_path(run_dir, service)
    try:
        return ProcessRecord(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        # An unreadable record cannot name a live process of ours: treat it as stale.
        path.unlink(missing_ok=True)
        return None


def drop_record(run_dir: Path, service: str) -> None:
    _record_path(run_dir, service).unlink(missing_ok=True)


def launch(
    run_dir: Path,
    service: str,
    cmd: list[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> ProcessRecord:
    """Start a process in its own session (so it outlives this command), logging to a file."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**without_secrets(os.environ), **(env or {})},  # each service gets only its own secrets
            cwd=cwd,
            start_new_session=True,
            user=user,
        )
    record = ProcessRecord(
        service=service,
        pid=proc.pid,
        create_time=psutil.Process(proc.pid).create_time(),
        cmdline=cmd,
        log=str(log_path),
    )
    _record_path(run_dir, service).write_text(json.dumps(asdict(record)))
    return record


def terminate(record: ProcessRecord, timeout: float = 60.0) -> None:
    """SIGTERM the process and its children, then SIGKILL whatever is left after `timeout`."""
    try:
        root = psutil.Process(record.pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=10)


def port_owner(port: int) -> str | None:
    """Who listens on a TCP port of this machine (`pid 123 (java)`), or None if it is free."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.Error:
        conns = []
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid:
                try:
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                except psutil.Error:
                    return f"pid {conn.pid}"
            return "another process"
    return None


def listens_on(record: ProcessRecord, port: int) -> bool:
    """Whether the process of `record` (or one of its children) listens on `port`."""
    try:
        root = psutil.Process(record.pid)
        pids = {root.pid, *(c.pid for c in root.children(recursive=True))}
    except psutil.Error:
        return False
    return any(
        c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid in pids
        for c in psutil.net_connections(kind="tcp")
    )


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 1.0):
    """The predicate's first true value, polled every `interval` s; a TimeoutError naming `what` after."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


def _describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid}: {' '.join(proc.cmdline())[:400]}"
    except psutil.Error:
        return f"pid {proc.pid}"


def group_members(pgid: int, leader_created: float) -> list[psutil.Process]:
    """The live (not zombie) processes of process group `pgid`, whose leader started at `leader_created`.
    A group's id is not given to a new process while the group has members, so if a process of another
    start time now has that id as its pid, our group is gone and nothing is returned."""
    with contextlib.suppress(psutil.NoSuchProcess):
        if abs(psutil.Process(pgid).create_time() - leader_created) > 1.0:
            return []
    members = []
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(OSError):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def stop_process_group(pgid: int, leader_created: float, timeout: float = 30.0) -> list[str]:
    """Stop every process of group `pgid` (a process started with start_new_session=True and all it
    started, orphans included): SIGTERM to the group, wait up to `timeout` for the group to be empty,
    then SIGKILL the group and wait until it is. Returns the processes that were running when called."""
    members = group_members(pgid, leader_created)
    if not members:
        return []
    running = [_describe(p) for p in members]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while group_members(pgid, leader_created) and time.monotonic() < deadline:
        time.sleep(0.2)
    if group_members(pgid, leader_created):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        wait_for(lambda: not group_members(pgid, leader_created), 30, f"process group {pgid} to be gone")
    return running
