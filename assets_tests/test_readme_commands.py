"""Every command the README shows is run, exactly as written, in a namespace of its own.

Commands are read from the README's bash blocks (lines starting with `.venv/bin/`). A few cannot run
here as written, each for the reason given in SKIPPED, and the whole-graph materializations are the
very command `lakehouse demo` and test_end_to_end run (one code path); a README command that is
neither run nor listed fails the test, so a new one cannot slip by."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time

import pytest

from lakehouse.demo import materialize_command
from lakehouse.settings import REPO_ROOT

pytestmark = pytest.mark.stack

SKIPPED = {
    ".venv/bin/lakehouse stack down": "stops the shared stack; test_stack_lifecycle runs down/up",
}
# Run as written but long-running by design: stopped with Ctrl-C (SIGINT) after a while.
FOLLOWING = {".venv/bin/lakehouse ingest events --follow --batch-seconds 2"}
# Exit status 1 reports a problem found (documented), not a failure of the command.
STATUS = {".venv/bin/lakehouse cdc status", ".venv/bin/lakehouse stream status"}
WHOLE_GRAPH = re.compile(r"dagster asset materialize -m lakehouse\.definitions --select 'not group:lifecycle' --partition-range "
                         r"(\d{4}-\d\d-\d\d)\.\.\.(\d{4}-\d\d-\d\d)$")  # fmt: skip


def readme_commands() -> list[str]:
    """The `.venv/bin/...` command lines of the README's bash blocks (continuations joined, comments cut)."""
    text = (REPO_ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith(".venv/bin/"):
                commands.append(line)
    return commands


def test_the_readme_shows_commands():
    commands = readme_commands()
    assert ".venv/bin/lakehouse ingest events --bronze" in commands and len(commands) >= 15


def run(command: str, env: dict) -> subprocess.CompletedProcess:
    if command in FOLLOWING:
        # SIGINT at its default, as in a terminal: a runner started in the background (`... &` without job
        # control) passes it on ignored, and Python then never raises KeyboardInterrupt
        proc = subprocess.Popen(shlex.split(command), cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
        time.sleep(20)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return subprocess.run(shlex.split(command), cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=1200)  # fmt: skip


def test_every_readme_command_runs_as_written(namespace):
    env = {**namespace.env, "DAGSTER_HOME": str(REPO_ROOT / ".lakehouse" / "dagster")}
    ran, results = [], {}
    for command in readme_commands():
        if command in SKIPPED:
            continue
        graph = WHOLE_GRAPH.search(command)
        if graph:  # the demo's and test_end_to_end's own command: the same argv, only the dates differ
            from datetime import date

            first, last = (date.fromisoformat(d) for d in graph.groups())
            expected = materialize_command(first, last)
            assert shlex.split(command)[1:] == expected[1:], (command, expected)
            continue
        result = run(command, env)
        ran.append(command)
        results[command] = result
        output = result.stdout + result.stderr
        assert "Traceback" not in output, f"{command}\n{output[-3000:]}"
        if command in FOLLOWING:
            assert result.returncode == 130 and "interrupted" in result.stderr, (command, output[-2000:])
        elif command in STATUS:
            assert result.returncode in (0, 1), (command, output[-2000:])
        else:
            assert result.returncode == 0, f"{command}\n{output[-3000:]}"
    assert (
        ".venv/bin/lakehouse generate events --events 100000 --rate 2000 --duplicates 0.02 --malformed 0.01 --late 0.01"
        in ran
    )
    assert "produced" in results[".venv/bin/lakehouse generate events --events 20000 --days 7"].stdout
    assert "landed" in results[".venv/bin/lakehouse ingest events --bronze"].stdout
    print(f"\nREADME: {len(ran)} commands run as written, {len(SKIPPED)} skipped: {list(SKIPPED)}")
