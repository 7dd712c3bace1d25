"""With its services down, every data subcommand of the CLI ends with `error: ...` and `  fix: ...` and a
non-zero exit within seconds, never a traceback (unit: every service is pointed at a closed local port,
so nothing real is touched)."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from lakehouse import cli
from lakehouse.settings import get_settings

LAKEHOUSE = Path(sys.executable).parent / "lakehouse"
TIMEOUT = 30.0  # seconds a command may take to give up on its services

# The setting of each service and the LAKEHOUSE_ variable it is read from.
SERVICE_VARIABLES = {
    "objectstore": "LAKEHOUSE_S3_ENDPOINT",
    "kafka": "LAKEHOUSE_KAFKA_BOOTSTRAP",
    "postgres": "LAKEHOUSE_POSTGRES_PORT",
    "connect": "LAKEHOUSE_CONNECT_PORT",
    "trino": "LAKEHOUSE_TRINO_PORT",
    "pinot_controller": "LAKEHOUSE_PINOT_CONTROLLER_PORT",
    "pinot_broker": "LAKEHOUSE_PINOT_BROKER_PORT",
    "pinot_server": "LAKEHOUSE_PINOT_SERVER_PORT",
    "pinot_server_admin": "LAKEHOUSE_PINOT_SERVER_ADMIN_PORT",
    "zookeeper": "LAKEHOUSE_ZOOKEEPER_PORT",
}


def closed_ports(count: int) -> list[int]:
    """Ports nothing listens on: bound together (so they differ), then closed."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


@pytest.fixture(scope="module")
def down(tmp_path_factory) -> tuple[dict[str, str], dict[str, int]]:
    """An environment whose every service is a closed port, with a home and a schema prefix of its own."""
    ports = dict(zip(SERVICE_VARIABLES, closed_ports(len(SERVICE_VARIABLES)), strict=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    for service, variable in SERVICE_VARIABLES.items():
        env[variable] = str(ports[service])
    env["LAKEHOUSE_S3_ENDPOINT"] = f"http://127.0.0.1:{ports['objectstore']}"
    env["LAKEHOUSE_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{ports['kafka']}"
    env["LAKEHOUSE_HOME"] = str(tmp_path_factory.mktemp("home"))
    env["LAKEHOUSE_SCHEMA_PREFIX"] = f"clidown{os.getpid()}_"
    return env, ports


def run(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [str(LAKEHOUSE), *args], env=env, capture_output=True, text=True, timeout=TIMEOUT * 3
    )
    return proc, time.monotonic() - started


@pytest.fixture(scope="module")
def outcome(down):
    """Each command run once with every service down (several tests read the same run)."""
    env, _ = down
    runs: dict[str, tuple[subprocess.CompletedProcess, float]] = {}

    def of(command: str) -> tuple[subprocess.CompletedProcess, float]:
        if command not in runs:
            runs[command] = run(command.split(), env)
        return runs[command]

    return of


def error_lines(stderr: str) -> tuple[list[str], list[str]]:
    lines = stderr.splitlines()
    return [x for x in lines if x.startswith("error: ")], [x for x in lines if x.startswith("  fix: ")]


@pytest.mark.parametrize(
    ("command", "service", "exit_code"),
    [
        ("generate events --events 10", "kafka", 2),
        ("generate changes --operations 5", "postgres", 2),
        ("ingest events", "objectstore", 2),
        ("ingest events --bronze", "objectstore", 2),
        ("cdc apply", "kafka", 2),
        ("cdc status", "connect", 1),  # a report: each problem with its fix, then exit 1
        ("cdc resnapshot", "connect", 2),
        ("stream status", None, 1),  # the stream jobs are the services here
        ("lake as-of silver orders --version 0", "objectstore", 2),
        ("lifecycle archive bronze/clickstream_events --expired", "objectstore", 2),
        ("lifecycle restore bronze/clickstream_events --from 2026-01-01", "objectstore", 2),
        ("lifecycle backup postgres", "objectstore", 2),
        ("lifecycle drill --no-postgres", "objectstore", 2),
        ("status", "postgres", 2),  # Dagster's storage
    ],
)
def test_a_data_command_names_the_service_that_is_down(down, outcome, command, service, exit_code):
    _, ports = down
    proc, elapsed = outcome(command)
    errors, fixes = error_lines(proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == exit_code, proc.stderr
    assert errors and fixes, proc.stderr
    if service is not None:
        assert f"127.0.0.1:{ports[service]}" in errors[0], errors
    assert elapsed < TIMEOUT, f"{command} took {elapsed:.0f}s"


def test_cdc_status_reports_each_service_it_checks(down, outcome):
    _, ports = down
    proc, _ = outcome("cdc status")
    errors, fixes = error_lines(proc.stderr)
    assert len(errors) == len(fixes) == 3, proc.stderr
    for service in ("connect", "postgres", "kafka"):
        assert any(f":{ports[service]}" in line for line in errors), (service, errors)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("LAKEHOUSE_EVENTS_PARTITIONS", "0"), ("LAKEHOUSE_S3_ENDPOINT", "127.0.0.1:8333")],
)
def test_refused_settings_end_the_command_with_the_variable_and_the_fix(down, variable, value):
    env, _ = down
    proc, _ = run(["stream", "status"], {**env, variable: value})
    errors, fixes = error_lines(proc.stderr)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert errors[0].startswith(f"error: {variable}=") and fixes[0].startswith(f"  fix: set {variable} to")


# --- in this process: the services no subcommand above reaches, the escape hatch, bugs -----------------


@pytest.fixture
def settings_down(down, monkeypatch):
    """The closed-port environment in this process (the settings cache follows it, and is cleared after)."""
    env, ports = down
    for name in [n for n in os.environ if n.startswith("LAKEHOUSE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("LAKEHOUSE_"):
            monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield ports
    get_settings.cache_clear()


def test_trino_down_is_named_with_its_variable(settings_down):
    from lakehouse.resources.trino import TrinoResource

    with pytest.raises(Exception) as err:
        TrinoResource.from_settings(get_settings()).query("SELECT 1")
    problem, fix = cli.explain(err.value)
    assert problem.startswith(f"Trino at 127.0.0.1:{settings_down['trino']} did not answer")
    assert "lakehouse stack up trino" in fix and "LAKEHOUSE_TRINO_HOST/_PORT" in fix


@pytest.mark.parametrize(("service", "url"), [("pinot_broker", "pinot_broker_url"),
                                              ("pinot_controller", "pinot_controller_url")])  # fmt: skip
def test_pinot_down_is_named_with_its_variable(settings_down, service, url):
    with pytest.raises(requests.ConnectionError) as err:
        requests.get(f"{getattr(get_settings(), url)}/health", timeout=5)
    problem, fix = cli.explain(err.value)
    assert f":{settings_down[service]}" in problem
    assert f"LAKEHOUSE_{service.upper()}_PORT" in fix and "lakehouse stack up pinot" in fix


def test_a_connection_error_without_an_address_still_gets_a_fix():
    problem, fix = cli.explain(ConnectionRefusedError(111, "Connection refused"))
    assert problem.startswith("a service did not answer") and "lakehouse stack status" in fix


def test_an_error_caused_by_a_connection_failure_is_explained():
    try:
        try:
            raise TimeoutError("timed out waiting for 127.0.0.1:5")
        except TimeoutError as exc:
            raise RuntimeError("could not refresh the table") from exc
    except RuntimeError as exc:
        assert cli.explain(exc) is not None


@pytest.mark.parametrize("bug", [ValueError("bug"), KeyError("column"), FileNotFoundError("x.json")])
def test_bugs_keep_their_traceback(settings_down, monkeypatch, bug):
    def broken(args):
        raise bug

    monkeypatch.setattr(cli, "_cdc_resnapshot", broken)
    assert cli.explain(bug) is None
    with pytest.raises(type(bug)):
        cli.main(["cdc", "resnapshot"])


def test_lakehouse_debug_reraises_with_the_traceback(settings_down, monkeypatch, capsys):
    assert cli.main(["cdc", "resnapshot"]) == 2
    assert capsys.readouterr().err.startswith(f"error: Kafka Connect at 127.0.0.1:{settings_down['connect']}")
    monkeypatch.setenv("LAKEHOUSE_DEBUG", "1")
    with pytest.raises(requests.ConnectionError):
        cli.main(["cdc", "resnapshot"])


def test_generate_events_takes_the_partitions_of_a_new_topic(settings_down, monkeypatch):
    from lakehouse.generator import clickstream

    seen = []

    def produce_events(s, config, topic, delivery, rate):
        seen.append(s.events_partitions)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(clickstream, "produce_events", produce_events)
    assert cli.main(["generate", "events", "--events", "10", "--partitions", "3"]) == 2
    assert cli.main(["generate", "events", "--events", "10"]) == 2
    assert seen == [3, get_settings().events_partitions]
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["generate", "events", "--partitions", "0"])
    assert exit_.value.code == 2


def subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every command path of the parser: (), ('stack',), ('generate', 'events'), ..."""
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from subcommands(sub, (*path, name))


@pytest.mark.parametrize("path", list(subcommands(cli.build_parser())), ids=" ".join)
def test_help_of_every_subcommand(path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*path, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: lakehouse")


def test_help_of_the_installed_command(down):
    env, _ = down
    proc, _ = run(["--help"], env)
    assert proc.returncode == 0 and "generate" in proc.stdout
