"""A Dagster deployment of a namespace's own (a schema prefix and topic set by LAKEHOUSE_SCHEMA_PREFIX and
LAKEHOUSE_EVENTS_TOPIC): its instance, a database of its own in the stack's PostgreSQL with the stack's
dagster.yaml (queued runs, pools, monitoring, retries), and the code server, daemon and webserver started
for it as child processes, each in a process group of its own and bound to 127.0.0.1.

The tests and `make bench-freshness` run a namespace's automation with it, beside the stack's own Dagster
and without touching its runs, cursors or freshness records. `close()` stops the processes and drops the
database."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from lakehouse.executables import env_executable
from lakehouse.settings import LakehouseSettings
from lakehouse.stack.dagster_services import (
    LOCATION,
    STORAGE_PASSWORD,
    DagsterCode,
    DagsterWebserver,
    ensure_instance,
    ensure_storage,
)
from lakehouse.stack.process import stop_process_group, wait_for

REPO_ROOT = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class NamespaceDagster:
    """The namespace's Dagster. `settings` are the namespace's; `env` the namespace's environment (what a
    `dagster` command needs to record into this instance is `self.env`); `code_env` goes to the code
    server alone (a faster LAKEHOUSE_INTRADAY_CRON, say)."""

    def __init__(self, settings: LakehouseSettings, env: dict[str, str], workdir: Path, **code_env: str):
        self.s = settings.model_copy(update={"dagster_db": f"{settings.schema_prefix}dagster",
                                             "dagster_code_port": free_port()})  # fmt: skip
        self.home, self.workdir = workdir / "dagster", workdir
        self.procs: list[tuple[int, float]] = []
        ensure_storage(self.s, log=lambda *_: None)
        try:
            ensure_instance(self.s, self.home)
            self.launch = DagsterCode().launch(self.s)
        except BaseException:
            self.close()  # the database just created is dropped
            raise
        self.env = {**env, **self.launch.env, "DAGSTER_HOME": str(self.home)}
        self.code_env = code_env
        self.code: subprocess.Popen | None = None

    def code_server(self) -> None:
        """Start the namespace's code server once (the daemon and the webserver load the code from it)."""
        if self.code is None:
            self.code = self.start(self.launch.cmd, self.workdir / "code.log", **self.code_env)
            wait_for(lambda: DagsterCode().health(self.s) is None, 240, "the namespace's code server")
            error = DagsterCode().load_error(self.s)
            if error is not None:
                raise RuntimeError(f"the namespace's code location does not load: {error}")

    def start(self, cmd: list[str], log: Path, **env: str) -> subprocess.Popen:
        """A child process in a group of its own, with the namespace's environment, its output in `log`."""
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, env={**self.env, **env}, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=REPO_ROOT)  # fmt: skip
        self.procs.append((proc.pid, psutil.Process(proc.pid).create_time()))
        return proc

    def webserver(self, log: Path) -> str:
        self.code_server()
        web = DagsterWebserver()
        at = self.s.model_copy(update={"dagster_port": free_port()})
        self.start([env_executable("dagster-webserver"), "-h", "127.0.0.1", "-p", str(at.dagster_port),
                    "-w", str(self.home / "workspace.yaml")], log)  # fmt: skip
        wait_for(lambda: web.health(at) is None, 180, "the namespace's Dagster webserver")
        return web.url(at)

    def daemon_command(self) -> list[str]:
        return [env_executable("dagster-daemon"), "run", "-w", str(self.home / "workspace.yaml")]

    def daemon(self, log: Path, **env: str) -> subprocess.Popen:
        self.code_server()
        return self.start(self.daemon_command(), log, **env)

    @contextmanager
    def instance(self) -> Iterator:
        """The namespace's DagsterInstance, with its home and storage password in the environment meanwhile."""
        import dagster as dg

        keys = ("DAGSTER_HOME", STORAGE_PASSWORD)
        saved = {k: os.environ.get(k) for k in keys}
        os.environ.update({k: self.env[k] for k in keys})
        try:
            with dg.DagsterInstance.from_config(str(self.home)) as instance:
                yield instance
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)

    def only_on(self, names: Iterable[str]) -> dict:
        """Stop every sensor and schedule but those named (each is on by default, as in production), start
        those; returns the remote ones kept on, by name. An unknown name raises."""
        from dagster._core.workspace.context import WorkspaceProcessContext
        from dagster._core.workspace.load_target import WorkspaceFileTarget

        self.code_server()
        names, kept = set(names), {}
        with (
            self.instance() as instance,
            WorkspaceProcessContext(
                instance, WorkspaceFileTarget([str(self.home / "workspace.yaml")])
            ) as ctx,
        ):
            location = ctx.create_request_context().get_code_location(LOCATION)
            (repo,) = location.get_repositories().values()
            known = {i.name for i in [*repo.get_sensors(), *repo.get_schedules()]}
            if names - known:  # before anything is switched
                raise ValueError(f"no sensor or schedule named {sorted(names - known)}")
            kinds = ((repo.get_sensors(), instance.start_sensor, instance.stop_sensor),
                     (repo.get_schedules(), instance.start_schedule, instance.stop_schedule))  # fmt: skip
            for instigators, start, stop in kinds:
                for instigator in instigators:
                    if instigator.name in names:
                        start(instigator)
                        kept[instigator.name] = instigator
                    else:
                        stop(instigator.get_remote_origin_id(), instigator.selector_id, instigator)
        return kept

    def stop_processes(self) -> None:
        for pid, created in reversed(self.procs):
            stop_process_group(pid, created, timeout=20)
        self.procs.clear()
        self.code = None

    def close(self) -> None:
        """Stop the processes and drop the namespace's Dagster database."""
        from psycopg import sql

        from lakehouse.stack.services import Postgres

        self.stop_processes()
        with Postgres()._connect(self.s) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(self.s.dagster_db))
            )
