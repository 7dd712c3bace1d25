"""Nothing a test started is still running once the tests are done (this module runs after every other).

A leftover is a live process started during this session: a child of pytest at any depth, a process with
a test namespace's tag in its command line (a stream job, say), or one started with this session's
environment, which orphans keep. Not leftovers: the stack's services (shared by every test, recorded under
`<home>/run`), and the in-process Spark session's JVM, which the session stops at its very end, where
conftest checks once more. The first two tests show that the check finds what it claims to find.
"""

import subprocess
import sys
import time

import psutil
from conftest import (
    NAMESPACES,
    describe_leftovers,
    find_leftovers,
    in_process_spark_pids,
    stop_process_group,
    stop_processes,
    wait_until,
)

RUNS_LAST = True  # conftest orders this module after every other


def _found(pid: int) -> list:
    leftovers = find_leftovers(exclude=in_process_spark_pids())
    return [leftover for leftover in leftovers if leftover.process.pid == pid]


def test_an_orphan_a_test_left_behind_is_found():
    """A process whose parent exited (so it is no child of pytest any more) is still found."""
    shell = subprocess.Popen(["sh", "-c", "sleep 300 & echo $!"], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)  # fmt: skip
    orphan = psutil.Process(int(shell.stdout.readline()))
    shell.wait(10)
    shell.stdout.close()
    try:
        wait_until(lambda: orphan.ppid() != shell.pid, 10, "the sleep to be an orphan")
        (leftover,) = _found(orphan.pid)
        assert leftover.why == "started with this test session's environment"
        assert "sleep 300" in leftover.cmdline and f"pid {orphan.pid}" in describe_leftovers([leftover])
    finally:
        stop_processes([orphan])
    assert not orphan.is_running()


def test_a_process_of_a_test_namespace_is_named_with_it(monkeypatch):
    tag = f"t{time.time_ns()}"[:16]
    monkeypatch.setitem(NAMESPACES, tag, "test_no_leftovers")
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)", tag], start_new_session=True
    )
    created = psutil.Process(proc.pid).create_time()
    try:
        (leftover,) = _found(proc.pid)
        assert leftover.why == "a child of pytest"
        assert leftover.namespace == f"{tag} (test_no_leftovers)"
        assert f"namespace {tag} (test_no_leftovers)" in describe_leftovers([leftover])
    finally:
        stopped = stop_process_group(proc.pid, created, timeout=10)
        proc.wait(10)
    assert stopped == [f"pid {proc.pid}: {sys.executable} -c import time; time.sleep(300) {tag}"]
    assert not _found(proc.pid)


def test_nothing_a_test_started_is_still_running():
    leftovers = find_leftovers(exclude=in_process_spark_pids())
    stop_processes(leftover.process for leftover in leftovers)  # the next run starts on a clean machine
    assert not leftovers, describe_leftovers(leftovers)
