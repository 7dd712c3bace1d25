"""Dagster operated as in production, in a namespace of its own: the daemon killed at the sensor's crash
windows loses no cursor and launches nothing twice; a sensor that raises reports the error in its tick and
keeps its cursor; then the UI, tried in a real browser (Debian's chromium through Playwright): lineage,
an asset's page, the sensor's ticks, a materialization launched from the UI.

The namespace has its topic and schemas, its Dagster instance (a database of its own in the stack's
PostgreSQL, the stack's production shape: queued runs, pools, monitoring), its code server and webserver,
and the daemon the tests start, wrapped with the lakehouse's fault points (daemon_with_fault_points.py),
with only the clickstream sensor on. Screenshots go to `<LAKEHOUSE_HOME>/test-artifacts/dagster-*.png`."""

from __future__ import annotations

import contextlib
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from conftest import wait_until
from dagster_namespace import Instance

from lakehouse.dagster_errors import summary
from lakehouse.faults import FAULT_ENV, FAULT_MARKER_ENV, fired
from lakehouse.generator.clickstream import GeneratorConfig, encode, generate_events, produce
from lakehouse.resources import LakeResource
from lakehouse.stack.dagster_services import LOCATION

pytestmark = pytest.mark.stack
SENSOR = "clickstream_kafka_sensor"
RAW = dg.AssetKey(["raw", "clickstream_events"])
END = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def ns_dagster(namespace, tmp_path_factory):
    inst = Instance(namespace, tmp_path_factory.mktemp("dagster"))
    try:
        yield inst
    finally:
        inst.close()


def _sensor_runs(instance) -> list:
    return list(instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": SENSOR})))


def _cursor(instance, sensor) -> dict | None:
    state = instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id)
    cursor = state.instigator_data.cursor if state and state.instigator_data else None
    return json.loads(cursor) if cursor else None


def _killed_at(inst: Instance, tmp: Path, point: str) -> None:
    marker = tmp / "fault.marker"
    before = fired(marker)
    proc = inst.daemon(tmp / "daemon.log", **{FAULT_ENV: point, FAULT_MARKER_ENV: str(marker)})
    try:
        proc.wait(300)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the daemon was not killed at {point} within 5 minutes: see {tmp / 'daemon.log'}")
    assert proc.returncode == -9 and fired(marker) == [*before, point], (proc.returncode, fired(marker))


def test_a_daemon_killed_between_run_and_cursor_launches_nothing_twice_and_a_raising_sensor_keeps_its_cursor(
    namespace, ns_dagster, tmp_path
):
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )
    from dagster._core.scheduler.instigation import TickStatus

    from lakehouse.security import kafka_access

    s, inst = namespace.settings, ns_dagster
    sensor = inst.only_on([SENSOR])[SENSOR]
    produce(
        s,
        s.events_topic,
        encode(generate_events(GeneratorConfig(events=300, seed=11, end=END))),
        progress=False,
    )

    # 1. killed once the tick's run is stored, before it is submitted and before the cursor is saved
    _killed_at(inst, tmp_path, "dagster-sensor.run_created")
    with inst.instance() as instance:
        runs = _sensor_runs(instance)
        assert [r.status for r in runs] == [dg.DagsterRunStatus.NOT_STARTED] and _cursor(
            instance, sensor
        ) is None
        first = runs[0]
    # 2. restarted: the interrupted tick resumes and submits that same run; killed once it is submitted
    _killed_at(inst, tmp_path, "dagster-sensor.run_launched")
    with inst.instance() as instance:
        runs = _sensor_runs(instance)
        assert [r.run_id for r in runs] == [first.run_id] and runs[
            0
        ].status != dg.DagsterRunStatus.NOT_STARTED
    # 3. restarted without faults: no second run for those offsets, the cursor saved, the run lands them all
    daemon = inst.daemon(tmp_path / "daemon.log")
    with inst.instance() as instance:
        wait_until(
            lambda: instance.get_run_by_id(first.run_id).is_finished, 600, "the sensor's run to finish", 2
        )
        assert instance.get_run_by_id(first.run_id).status == dg.DagsterRunStatus.SUCCESS
        wait_until(lambda: _cursor(instance, sensor) is not None, 120, "the sensor's cursor to be saved", 1)
        cursor = _cursor(instance, sensor)
        assert sum(cursor.values()) == 300 and [r.run_id for r in _sensor_runs(instance)] == [first.run_id]
    lake = LakeResource.from_settings(s)
    assert lake.read("raw", "clickstream_events", columns=["offset"]).num_rows == 300

    # 4. Kafka refuses the landing principal the topic: the tick fails with the reason, the cursor stays
    admin = AdminClient(kafka_access.client_config(s, "admin", mechanism="PLAIN"))
    acl = AclBindingFilter(ResourceType.TOPIC, s.events_topic, ResourcePatternType.PREFIXED,
                           f"User:{s.kafka_landing_user}", None, AclOperation.ANY, AclPermissionType.ANY)  # fmt: skip
    for future in admin.delete_acls([acl]).values():
        assert future.result(30), "the landing principal had no ACL on the namespace's topic to revoke"
    produce(
        s,
        s.events_topic,
        encode(generate_events(GeneratorConfig(events=40, seed=12, end=END))),
        progress=False,
    )
    with inst.instance() as instance:

        def failed_tick():
            tick = next(
                iter(instance.get_ticks(sensor.get_remote_origin_id(), sensor.selector_id, limit=1)), None
            )
            return tick if tick and tick.status == TickStatus.FAILURE else None

        wait_until(failed_tick, 120, "a failed tick of the sensor", 1)
        error = summary(failed_tick().error)  # the tick's error, down to the sensor's own exception
        assert "KafkaForbidden" in error and "may not read topic" in error, error
        assert _cursor(instance, sensor) == cursor and len(_sensor_runs(instance)) == 1
        # granted again: the next tick requests a run for the 40 new records, and only for them
        kafka_access.install(s, log=lambda *_: None)
        wait_until(lambda: len(_sensor_runs(instance)) == 2, 180, "the sensor's next run", 1)
        second = _sensor_runs(instance)[0]
        wait_until(
            lambda: instance.get_run_by_id(second.run_id).is_finished, 600, "the second run to finish", 2
        )
        assert instance.get_run_by_id(second.run_id).status == dg.DagsterRunStatus.SUCCESS
        keys = [r.tags["dagster/run_key"] for r in _sensor_runs(instance)]
        assert len(set(keys)) == 2, keys
    daemon.terminate()
    daemon.wait(30)
    assert lake.read("raw", "clickstream_events", columns=["offset"]).num_rows == 340  # each record once


GROUPS = ("raw", "bronze", "silver", "gold", "realtime", "pinot", "bi", "lifecycle")


def test_the_ui_as_a_person_uses_it(namespace, ns_dagster, tmp_path):
    """After the daemon test (its runs and ticks are in the instance): lineage, an asset's page, the sensor's
    ticks and the schedules, then a materialization launched with the UI's button."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    from lakehouse.bi.browser import chromium
    from lakehouse.definitions import defs

    s, inst = namespace.settings, ns_dagster
    groups = {node.group_name for node in defs.resolve_asset_graph().asset_nodes}
    assert groups == set(GROUPS), groups  # every group is on the lineage below
    url = inst.webserver(tmp_path / "webserver.log")
    inst.only_on([])  # the launch below is the UI's alone
    shots = s.home / "test-artifacts"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            # the global lineage: every group, raw to gold, real time and BI
            page.goto(f"{url}/asset-groups")
            with contextlib.suppress(
                PlaywrightTimeout
            ):  # the community sign-up, in the versions that have it
                page.get_by_role("button", name="Skip").click(timeout=15_000)
            for group in GROUPS:
                expect(page.get_by_text(group, exact=True).first).to_be_visible()
            page.wait_for_timeout(1500)
            page.screenshot(path=shots / "dagster-lineage.png")

            # an asset's page: its checks, its freshness policy, its last materialization's metadata
            page.goto(f"{url}/assets/raw/clickstream_events")
            expect(page.get_by_text("Latest materialization").first).to_be_visible()
            expect(page.get_by_text("Freshness policy").first).to_be_visible()
            expect(
                page.get_by_text("Fails if more than 2 hours since last materialization").first
            ).to_be_visible()
            expect(page.get_by_text("rows_landed").first).to_be_visible()  # the metadata of the daemon's run
            expect(page.get_by_text("table_version").first).to_be_visible()
            page.screenshot(path=shots / "dagster-asset.png")
            page.get_by_role("tab", name="Checks").click()
            for check in ("raw_offsets_contiguous", "raw_ingest_lag"):
                expect(page.get_by_text(check).first).to_be_visible()

            # the sensor's ticks (a failed one among them: the test before revoked its ACL) and the schedules
            page.goto(f"{url}/locations/{LOCATION}/sensors/{SENSOR}")
            expect(page.get_by_text("Failure").first).to_be_visible()
            page.screenshot(path=shots / "dagster-sensor.png")
            page.goto(f"{url}/automation")
            for name in (
                "intraday_batch_schedule",
                "daily_batch_schedule",
                "run_failure_alerts",
                "freshness_alerts",
            ):
                expect(page.get_by_text(name, exact=True).first).to_be_visible()

            # a materialization launched from the UI, queued, dequeued by the daemon, completed
            produce(s, s.events_topic, encode(generate_events(GeneratorConfig(events=25, seed=13, end=END))),
                    progress=False)  # fmt: skip
            with inst.instance() as instance:
                before = {r.run_id for r in instance.get_runs()}
            daemon = inst.daemon(tmp_path / "daemon.log")
            page.goto(f"{url}/assets/raw/clickstream_events")
            page.locator("button:has-text('Materialize')").first.click()
            page.wait_for_timeout(3000)
            page.screenshot(
                path=shots / "dagster-materialize.png"
            )  # what the click led to, if no run appears
            with inst.instance() as instance:
                wait_until(lambda: {r.run_id for r in instance.get_runs()} - before, 60, "the UI's run", 1)
                (run_id,) = {r.run_id for r in instance.get_runs()} - before
                wait_until(
                    lambda: instance.get_run_by_id(run_id).is_finished, 600, "the UI's run to finish", 2
                )
                run = instance.get_run_by_id(run_id)
            assert run.status == dg.DagsterRunStatus.SUCCESS and run.asset_selection == {RAW}, run
            page.goto(f"{url}/runs/{run_id}")
            expect(page.get_by_text("Success").first).to_be_visible()
            page.screenshot(path=shots / "dagster-run.png")
            daemon.terminate()
            daemon.wait(30)
        finally:
            browser.close()
    assert LakeResource.from_settings(s).read("raw", "clickstream_events", columns=["offset"]).num_rows == 365
