"""`lakehouse stack up|down|status|logs`: the local stack, one service after another.

`up` is idempotent (a healthy service is left alone) and waits for each service's health
check before starting the next one, because two cores do not take a parallel start well.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from pathlib import Path

from lakehouse.settings import LakehouseSettings
from lakehouse.stack import fetch, process
from lakehouse.stack.errors import StackError
from lakehouse.stack.registry import SERVICES, by_name
from lakehouse.stack.services import Service


def _run_dir(s: LakehouseSettings) -> Path:
    return s.home / "run"


def log_path(s: LakehouseSettings, service: str) -> Path:
    return s.home / "logs" / f"{service}.log"


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open(errors="replace") as f:
            return "".join(deque(f, maxlen=lines))
    except FileNotFoundError:
        return f"(no log yet at {path})\n"


def _select(names: list[str] | None) -> list[Service]:
    return [by_name(n) for n in names] if names else list(SERVICES)


def _live_record(s: LakehouseSettings, svc: Service, log) -> process.ProcessRecord | None:
    record = process.read_record(_run_dir(s), svc.name)
    if record and not record.is_alive():
        log(f"  {svc.name}: removing a stale pid record (pid {record.pid} is gone); see {record.log}")
        process.drop_record(_run_dir(s), svc.name)
        return None
    return record


def _check_ports_free(s: LakehouseSettings, svc: Service) -> None:
    for port, purpose in svc.ports(s).items():
        owner = process.port_owner(port)
        if owner:
            raise StackError(
                f"port {port} ({purpose}) that {svc.name} needs is already in use by {owner}",
                fix="stop that process, or move our service to another port with its LAKEHOUSE_* "
                "variable (see `lakehouse stack status` and the README's configuration table)",
            )


def _wait_healthy(s: LakehouseSettings, svc: Service, record: process.ProcessRecord, log) -> None:
    deadline = time.monotonic() + svc.start_timeout
    started = time.monotonic()
    last_report = started
    reason = svc.health(s)
    while reason is not None:
        if not record.is_alive():
            raise StackError(
                f"{svc.name} exited while starting. Last lines of {record.log}:\n"
                + _tail(Path(record.log), 25),
                fix=f"read the log above; `lakehouse stack logs {svc.name}` shows more",
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"{svc.name} was not healthy after {svc.start_timeout:.0f}s ({reason}). Last log lines:\n"
                + _tail(Path(record.log), 25),
                fix=f"check `lakehouse stack logs {svc.name}`; on a slow machine run `up` again",
            )
        if time.monotonic() - last_report > 15:
            log(f"  {svc.name}: waiting ({reason}) {time.monotonic() - started:.0f}s ...")
            last_report = time.monotonic()
        time.sleep(1.0)
        reason = svc.health(s)


# Folders below LAKEHOUSE_HOME that PostgreSQL (run as the `postgres` user when we are root) passes through
# to its own folder: others may traverse them (mode 0711) but not list or read them.
TRAVERSED = ("data", "run", "backups", "restore")


def secure_home(s: LakehouseSettings) -> None:
    """Nothing under LAKEHOUSE_HOME is readable by other users: the data (Kafka's log segments, the object
    store's volumes, checkpoints) holds personal data, and configuration files may name where secrets are.
    The home and the folders PostgreSQL passes through are 0711, every other folder 0700."""
    s.home.mkdir(parents=True, exist_ok=True)
    os.chmod(s.home, 0o711)
    for sub in s.home.iterdir():
        if sub.is_dir() and not sub.is_symlink():
            if sub.name in TRAVERSED:
                os.chmod(sub, 0o711)
                for inner in sub.iterdir():
                    if not inner.is_dir() or inner.is_symlink() or inner.stat().st_uid != os.geteuid():
                        continue  # PostgreSQL's own folders are its to keep private (0700)
                    os.chmod(inner, 0o711 if inner.name == "postgres" else 0o700)
                    if inner.name == "postgres":  # backups/postgres: the base backups' work space, ...
                        for leaf in inner.iterdir():
                            if leaf.is_dir() and leaf.stat().st_uid == os.geteuid():
                                os.chmod(leaf, 0o700)
            else:
                os.chmod(sub, 0o700)


def left_out(s: LakehouseSettings) -> tuple[str, ...]:
    """The services `up` leaves out unless named (LAKEHOUSE_STACK_WITHOUT), each a known name."""
    names = tuple(n.strip() for n in s.stack_without.split(",") if n.strip())
    for name in names:
        by_name(name)  # an unknown name is an error, not silently nothing
    return names


def up(
    s: LakehouseSettings, names: list[str] | None = None, log=print, without: tuple[str, ...] = ()
) -> None:
    """Start the named services (default: all, but those in `without` and LAKEHOUSE_STACK_WITHOUT), one
    after another."""
    from lakehouse.stack.dagster_services import ensure_instance

    ensure_instance(s)
    without = (*without, *(() if names else left_out(s)))
    for folder in TRAVERSED:
        (s.home / folder).mkdir(parents=True, exist_ok=True)
    secure_home(s)
    for name in without:
        by_name(name)  # an unknown name is an error, not silently nothing
    for svc in _select(names):
        if svc.name in without:
            continue
        record = _live_record(s, svc, log)
        t0 = time.monotonic()
        if record and svc.refresh(s, log):
            log(f"{svc.name}: restarting pid {record.pid} to take its new configuration ...")
            process.terminate(record, timeout=svc.stop_timeout)
            process.drop_record(_run_dir(s), svc.name)
            record = None
        if record:
            log(f"{svc.name}: already running (pid {record.pid}), checking health ...")
        elif svc.ports(s) and process.port_owner(next(iter(svc.ports(s)))) and svc.served_elsewhere(s):
            log(f"{svc.name}: served by another process at {svc.url(s)} (e.g. docker compose); using it")
            svc.after_start(s, log)
            continue
        else:
            _check_ports_free(s, svc)
            svc.fetch(s, log)
            launch = svc.prepare(s, log)
            log(f"{svc.name}: starting {svc.description} ...")
            record = process.launch(
                _run_dir(s), svc.name, launch.cmd, log_path(s, svc.name),
                env=launch.env, cwd=launch.cwd, user=launch.user,
            )  # fmt: skip
        _wait_healthy(s, svc, record, log)
        svc.after_start(s, log)
        secure_home(s)  # what the service made (its data, its log) is private from its first moments
        log(f"{svc.name}: healthy at {svc.url(s)} ({time.monotonic() - t0:.1f}s)")


def fetch_all(s: LakehouseSettings, log=print) -> None:
    """Download everything the stack and the Spark runs need, without starting anything."""
    from lakehouse.resources.spark import spark_jars

    for svc in SERVICES:
        svc.fetch(s, log)
    spark_jars(s.cache_dir, log=log)
    fetch.jar_set("flink", s.cache_dir, log=log)  # the stream jobs' Kafka connector


def down(s: LakehouseSettings, names: list[str] | None = None, log=print) -> None:
    if names is None:  # the stream jobs read Kafka and write Kafka: they stop first
        from lakehouse.realtime.flink import stop_all

        stop_all(s.home, log=log)
    for svc in reversed(_select(names)):
        record = _live_record(s, svc, log)
        if not record:
            log(f"{svc.name}: not running")
            continue
        log(f"{svc.name}: stopping pid {record.pid} ...")
        process.terminate(record, timeout=svc.stop_timeout)
        process.drop_record(_run_dir(s), svc.name)
        log(f"{svc.name}: stopped")


def status(s: LakehouseSettings) -> list[dict[str, str]]:
    rows = []
    for svc in SERVICES:
        record = process.read_record(_run_dir(s), svc.name)
        ports = ",".join(str(p) for p in svc.ports(s))
        if record is None:
            state, health, pid = "stopped", "-" if svc.name not in left_out(s) else "left out", "-"
        elif not record.is_alive():
            state, health, pid = "dead (stale pid record)", "-", str(record.pid)
        else:
            reason = svc.health(s)
            state, health, pid = "running", "healthy" if reason is None else reason, str(record.pid)
        rows.append({"service": svc.name, "state": state, "pid": pid, "ports": ports, "health": health,
                     "memory": _memory(record), "url": svc.url(s), "log": str(log_path(s, svc.name))})  # fmt: skip
    return rows


def _memory(record: process.ProcessRecord | None) -> str:
    """Resident memory of a live service with its children, e.g. `412 MB`."""
    import psutil

    if record is None or not record.is_alive():
        return "-"
    try:
        root = psutil.Process(record.pid)
        rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except psutil.Error:
        return "-"
    return f"{rss / 2**20:.0f} MB"


def logs(s: LakehouseSettings, name: str, lines: int = 50) -> str:
    by_name(name)
    return _tail(log_path(s, name), lines)


def our_processes(s: LakehouseSettings) -> list[int]:
    """Pids of live processes recorded by this stack (and their children)."""
    import psutil

    pids = []
    for svc in SERVICES:
        record = process.read_record(_run_dir(s), svc.name)
        if record and record.is_alive():
            pids.append(record.pid)
            with contextlib.suppress(psutil.Error):
                pids.extend(c.pid for c in psutil.Process(record.pid).children(recursive=True))
    return pids
