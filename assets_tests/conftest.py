"""Shared fixtures: the live local stack (started once per session) and a private namespace in it.

Nothing a test starts may outlive it. The session marks every process it starts (a variable of its own in
the environment, which children and orphans inherit) and, at its end, fails if a process it started is
still running: a child of pytest at any depth, a process with a test namespace's tag in its command line,
or one started with this session's environment. The stack's services (recorded under `<home>/run`) are
shared by every test and are not leftovers.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import psutil
import pytest

from lakehouse.settings import LakehouseSettings, get_settings
from lakehouse.stack.process import group_members, stop_process_group  # noqa: F401 - the tests' too

SESSION_ENV = "ASSETS_TESTS_SESSION"
SESSION_TOKEN = f"{os.getpid()}-{time.time_ns()}"
os.environ[SESSION_ENV] = SESSION_TOKEN  # inherited by every process a test starts, orphans included
NAMESPACES: dict[str, str] = {}  # tag of each test namespace of this session -> the module that made it
_FIRST_SEEN: dict[tuple[int, float], str] = {}  # (pid, create time) -> the test after which it was first seen
# Helpers of the pytest process itself, which end with it and hold nothing of a test's.
_OWN_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def pytest_collection_modifyitems(items):
    """Tests that stop and restart the stack run last, after everything that uses it; then a module that
    sets RUNS_LAST (the check that nothing is left running), after them all."""
    items.sort(
        key=lambda item: (
            bool(getattr(getattr(item, "module", None), "RUNS_LAST", False)),
            item.get_closest_marker("restarts_stack") is not None,
        )
    )


@pytest.fixture(scope="session")
def stack() -> Iterator[LakehouseSettings]:
    """The local stack, up and healthy (a no-op when `make test` already started it)."""
    from lakehouse.stack import manager

    settings = get_settings()
    manager.up(settings)
    paused = False
    if "dagster-daemon" in manager.left_out(settings):
        # automation would write the main namespace under the tests' feet: a user's daemon pauses for the session
        from lakehouse.stack import process

        paused = process.read_record(settings.home / "run", "dagster-daemon") is not None
        manager.down(settings, ["dagster-daemon"], log=lambda _: None)
    yield settings
    if paused:  # and runs again after it
        manager.up(settings, ["dagster-daemon"], log=lambda _: None)


@dataclass(frozen=True)
class Namespace:
    """Settings of a test's own corner of the stack: its topic and its schemas."""

    settings: LakehouseSettings
    env: dict[str, str]


@pytest.fixture(scope="module")
def namespace(stack: LakehouseSettings, request) -> Iterator[Namespace]:
    """A fresh topic and schema prefix for the tests of one module (the environment is restored after)."""
    tag = f"t{datetime.now(UTC):%m%d%H%M%S%f}"[:16]
    NAMESPACES[tag] = request.module.__name__
    env = {"LAKEHOUSE_SCHEMA_PREFIX": f"{tag}_", "LAKEHOUSE_EVENTS_TOPIC": f"{tag}.clickstream.events"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    from lakehouse.security import kafka_access

    # the namespace's topics for its principals, as `stack up` grants the main ones
    kafka_access.install(get_settings(), log=lambda *_: None)
    try:
        yield Namespace(settings=get_settings(), env={**os.environ, **env})
    finally:
        try:
            survivors = _stop_stream_jobs(stack, tag)  # stream jobs a test started in its namespace
            from lakehouse.realtime.pinot import PinotClient

            PinotClient.from_settings(stack).drop_tables(f"{tag}_")  # each would keep consuming Kafka
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            get_settings.cache_clear()
        assert not survivors, (
            f"flink.stop_all left processes of namespace {tag}'s stream jobs running (stopped now by their "
            "process group):\n" + "\n".join(survivors)
        )


def _stop_stream_jobs(stack: LakehouseSettings, tag: str) -> list[str]:
    """Stop the namespace's stream jobs with flink.stop_all (which signals each job's process tree and
    waits), then make sure each job's process group is empty: process.launch starts every job in a session
    and group of its own, so a member left there (a worker whose parent died first, for instance) is one
    stop_all missed. Such members are stopped by the group here and returned."""
    from lakehouse.realtime.flink import stop_all
    from lakehouse.stack import process

    run_dir = stack.home / "run" / "flink"
    records = [process.read_record(run_dir, path.stem) for path in sorted(run_dir.glob(f"{tag}.*.json"))]
    stop_all(stack.home, only_namespace=tag)
    return [line for r in records if r for line in stop_process_group(r.pid, r.create_time, timeout=30)]


@pytest.fixture
def clean_env(monkeypatch):
    """No LAKEHOUSE_* variable from the caller's environment: the settings' own defaults."""
    for name in list(os.environ):
        if name.startswith("LAKEHOUSE_"):
            monkeypatch.delenv(name)


def report_hostile_kinds(tried, kinds: set[str], what: str) -> None:
    """Print how many hostile inputs of each kind a property test tried, and check that it tried them all."""
    if tried:
        print(f"\nhostile {what} tried (all dead letters with their reason): "
              + ", ".join(f"{k}: {n}" for k, n in sorted(tried.items())))  # fmt: skip
        assert set(tried) == kinds, "every hostile kind should have been generated"


def wait_until(predicate, timeout: float, what: str, interval: float = 0.5):
    """process.wait_for, failing the test (AssertionError) on a timeout."""
    from lakehouse.stack.process import wait_for

    try:
        return wait_for(predicate, timeout, what, interval)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


def assert_checks_passed(result, checks) -> None:
    """Every asset check of the definitions `checks` was evaluated in the run `result` and passed (unlike
    `all(e.passed for e in ...)`, a run that evaluated none of them fails)."""
    wanted = {key for check in checks for key in check.check_keys}
    evaluations = {e.asset_check_key: e for e in result.get_asset_check_evaluations()}
    not_run = sorted(k.to_user_string() for k in wanted - set(evaluations))
    failed = {
        k.to_user_string(): e.description for k, e in evaluations.items() if k in wanted and not e.passed
    }
    assert wanted, "no asset check given"
    assert not not_run, f"asset checks not evaluated: {not_run}"
    assert not failed, f"asset checks failed: {failed}"


# --- stopping what a test started ------------------------------------------------------------------


def stop_processes(procs: Iterable[psutil.Process], timeout: float = 20.0) -> None:
    """SIGTERM, wait, SIGKILL what is left, wait."""
    procs = list(procs)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=10)


def in_process_spark_pids() -> set[int]:
    """The py4j JVM of the in-process Spark session (and its children), if one runs: dagster-pyspark
    starts it for an in-process run and keeps it, so later in-process runs of the session share it."""
    if "pyspark" not in sys.modules:
        return set()
    from pyspark import SparkContext

    proc = getattr(SparkContext._gateway, "proc", None)
    if proc is None or proc.poll() is not None:
        return set()
    try:
        root = psutil.Process(proc.pid)
        return {root.pid, *(c.pid for c in root.children(recursive=True))}
    except psutil.Error:
        return set()


def stop_in_process_spark(timeout: float = 60.0) -> None:
    from lakehouse.resources.spark import stop_local_spark

    stop_local_spark(timeout)


# --- what the session left running -----------------------------------------------------------------


@dataclass(frozen=True)
class Leftover:
    process: psutil.Process
    cmdline: str
    why: str
    namespace: str
    first_seen: str | None  # the test after which it was first seen running

    def __str__(self) -> str:
        seen = (
            f"first seen after {self.first_seen}" if self.first_seen else "seen after no test: a teardown's?"
        )
        return (
            f"pid {self.process.pid} ({self.why}; namespace {self.namespace}; {seen}): {self.cmdline[:400]}"
        )


def _stack_roots() -> set[int]:
    """The pids of the stack's running services (recorded under <home>/run): shared by every test, they and
    what they start (a database's backends, say) are not leftovers, even when a test restarted them."""
    from lakehouse.stack import process
    from lakehouse.stack.registry import SERVICES

    run_dir = get_settings().home / "run"
    records = [process.read_record(run_dir, svc.name) for svc in SERVICES]
    return {r.pid for r in records if r and r.is_alive()}


def _namespace_of(cmdline: str, environ: dict[str, str]) -> str | None:
    prefix = environ.get("LAKEHOUSE_SCHEMA_PREFIX", "")
    for tag, module in NAMESPACES.items():
        if tag in cmdline or prefix.startswith(tag):
            return f"{tag} ({module})"
    return None


def _started_here(exclude: set[int]) -> list[tuple[psutil.Process, str, str, str | None]]:
    """(process, command line, why it is ours, namespace) of every live process this session started, but
    those in `exclude` or under one of its pids."""
    me = psutil.Process()
    since = me.create_time()
    children = {c.pid: c for c in me.children(recursive=True)}
    found = []
    for proc in psutil.process_iter(["ppid", "create_time", "cmdline", "status"]):
        info = proc.info
        if proc.pid in exclude or proc.pid == me.pid or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if info["create_time"] is None or info["create_time"] < since:
            continue
        cmdline = " ".join(info["cmdline"] or [])
        if info["ppid"] == me.pid and any(helper in cmdline for helper in _OWN_HELPERS):
            continue
        try:
            environ = proc.environ()
        except psutil.Error:
            environ = {}
        if proc.pid in children:
            why = "a child of pytest"
        elif any(tag in cmdline for tag in NAMESPACES):
            why = "a test namespace in its command line"
        elif environ.get(SESSION_ENV) == SESSION_TOKEN:
            why = "started with this test session's environment"
        else:
            continue
        with contextlib.suppress(psutil.Error):
            if exclude & {p.pid for p in proc.parents()}:
                continue
        found.append((proc, cmdline, why, _namespace_of(cmdline, environ)))
    return found


def find_leftovers(exclude: Iterable[int] = ()) -> list[Leftover]:
    """Processes this test session started that are still running, except the stack's services."""
    leftovers = []
    for proc, cmdline, why, namespace in _started_here({*exclude, *_stack_roots()}):
        try:
            first_seen = _FIRST_SEEN.get((proc.pid, proc.create_time()))
        except psutil.Error:
            continue  # gone meanwhile
        leftovers.append(Leftover(proc, cmdline, why, namespace or "-", first_seen))
    return leftovers


def describe_leftovers(leftovers: list[Leftover]) -> str:
    return (
        f"{len(leftovers)} process(es) started by the tests are still running (stopped now):\n"
        + "\n".join(f"  {leftover}" for leftover in leftovers)
    )


@pytest.fixture(autouse=True)
def _note_new_processes(request) -> Iterator[None]:
    """Remember after which test each process this session started was first seen (for the report)."""
    yield
    for proc, _, _, _ in _started_here(set()):
        with contextlib.suppress(psutil.Error):
            _FIRST_SEEN.setdefault((proc.pid, proc.create_time()), request.node.nodeid)


@pytest.fixture(scope="session", autouse=True)
def _nothing_left_running() -> Iterator[None]:
    """At the very end (after every module's teardown): the in-process Spark session is stopped, and then
    no process the session started may be running."""
    yield
    stop_in_process_spark()
    leftovers = find_leftovers()
    stop_processes(leftover.process for leftover in leftovers)
    assert not leftovers, describe_leftovers(leftovers)
