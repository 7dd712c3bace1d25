"""Trino's identities and least privilege, tried by each principal against tables of its own namespace.

The tables are made by `platform` with the names the pipelines give them (silver.customers with its PII,
gold.merchant_sales_daily with two merchants' rows, a bronze table), so the rules are tried exactly as they
apply to the lake, without waiting for a pipeline run. Each attempt that must fail is asserted to fail with
Trino's own access-denied (or authentication) error, never with any error.
"""

import json
import re

import pytest
import requests
import trino
import trino.auth

from lakehouse.resources.trino import TrinoResource
from lakehouse.security import pii, trino_access
from lakehouse.stack.errors import StackError

DENIED = "PERMISSION_DENIED"


@pytest.fixture(scope="module")
def tables(namespace):
    s = namespace.settings
    platform = TrinoResource.from_settings(s, "platform")
    loc = f"s3://{s.bucket}/{s.schema_prefix}"
    for layer in ("bronze", "silver", "gold"):
        platform.ensure_schema(s.schema(layer), f"{loc}{layer}")
    silver, gold, bronze = (f"{s.trino_catalog}.{s.schema(x)}" for x in ("silver", "gold", "bronze"))
    platform.query(f"CREATE TABLE {silver}.customers AS SELECT * FROM (VALUES "
                   "(1, 'ada@example.com', '+44 20 1234', 'Ada Lovelace', 'GB'), "
                   "(2, 'alan@example.com', NULL, 'Alan Turing', 'GB')) "
                   "AS t(customer_id, email, phone, full_name, country)")  # fmt: skip
    platform.query(f"CREATE TABLE {gold}.merchant_sales_daily AS SELECT * FROM (VALUES "
                   "(DATE '2026-12-01', BIGINT '1', 'one', 10.0), (DATE '2026-12-01', BIGINT '2', 'two', 20.0), "
                   "(DATE '2026-12-02', BIGINT '1', 'one', 5.0)) AS t(order_date, merchant_id, merchant_name, revenue)")  # fmt: skip
    platform.query(f"CREATE TABLE {gold}.daily_kpis AS SELECT DATE '2026-12-01' AS event_date, 3 AS orders")
    platform.query(f"CREATE TABLE {bronze}.clickstream_events AS SELECT 'e1' AS event_id")
    platform.query(f"CREATE TABLE {silver}.cdc_dead_letters AS SELECT 'customers' AS source_table, "
                   "'{\"after\": {\"email\": \"ada@example.com\"}}' AS value")  # fmt: skip
    return {"silver": silver, "gold": gold, "bronze": bronze, "settings": s}


def as_(s, principal: str) -> TrinoResource:
    return TrinoResource.from_settings(s, principal)


def denied(resource: TrinoResource, sql: str) -> str:
    with pytest.raises(trino.exceptions.TrinoUserError) as err:
        resource.query(sql)
    assert err.value.error_name == DENIED, f"{resource.user}: {sql} failed otherwise: {err.value}"
    return err.value.message


def test_platform_reads_everything_in_clear(tables):
    platform = as_(tables["settings"], "platform")
    rows = platform.query(f"SELECT email, full_name FROM {tables['silver']}.customers ORDER BY customer_id")
    assert rows == [("ada@example.com", "Ada Lovelace"), ("alan@example.com", "Alan Turing")]
    assert platform.query(f"SELECT count(*) FROM {tables['bronze']}.clickstream_events") == [(1,)]


def test_analyst_reads_silver_with_pii_masked_and_gold(tables):
    analyst = as_(tables["settings"], "analyst")
    rows = analyst.query(f"SELECT customer_id, email, phone, full_name, country FROM {tables['silver']}.customers "
                         "ORDER BY customer_id")  # fmt: skip
    assert [r[0] for r in rows] == [1, 2] and [r[4] for r in rows] == ["GB", "GB"]  # other columns in clear
    for row in rows:
        assert row[1] == row[3] == pii.MASKED, row
    assert rows[1][2] is None  # a NULL stays NULL
    # the mask applies before any predicate: filtering on the clear value finds nothing
    assert analyst.query(f"SELECT count(*) FROM {tables['silver']}.customers WHERE email LIKE 'ada%'") == [
        (0,)
    ]
    assert analyst.query(f"SELECT sum(revenue) FROM {tables['gold']}.merchant_sales_daily") == [(35.0,)]
    denied(analyst, f"SELECT * FROM {tables['bronze']}.clickstream_events")
    denied(analyst, f"INSERT INTO {tables['gold']}.daily_kpis VALUES (DATE '2026-12-03', 1)")
    denied(analyst, f"DELETE FROM {tables['gold']}.daily_kpis")
    denied(analyst, f"CREATE TABLE {tables['gold']}.mine AS SELECT 1 AS x")
    denied(analyst, f"DROP TABLE {tables['gold']}.daily_kpis")
    # the CDC dead letters are whole change records, PII in clear: not the analyst's to read
    denied(analyst, f"SELECT * FROM {tables['silver']}.cdc_dead_letters")
    with pytest.raises(trino.exceptions.TrinoUserError) as err:  # nor to starve the pipelines
        analyst.query("SET SESSION query_max_memory = '100GB'")
    assert err.value.error_name == DENIED, err.value


def test_bi_reads_gold_only_and_sees_nothing_else(tables):
    s = tables["settings"]
    bi = as_(s, "bi")
    assert bi.query(f"SELECT count(*) FROM {tables['gold']}.daily_kpis") == [(1,)]
    denied(bi, f"SELECT customer_id FROM {tables['silver']}.customers")
    denied(bi, f"INSERT INTO {tables['gold']}.daily_kpis VALUES (DATE '2026-12-03', 1)")
    schemas = {r[0] for r in bi.query(f"SHOW SCHEMAS FROM {s.trino_catalog}")}
    assert s.schema("gold") in schemas and not {s.schema("silver"), s.schema("bronze")} & schemas
    listed = bi.query(f"SELECT table_schema, table_name FROM {s.trino_catalog}.information_schema.tables "
                      f"WHERE table_schema LIKE '{s.schema_prefix}%'")  # fmt: skip
    assert {r[0] for r in listed} == {s.schema("gold")}, listed
    columns = bi.query(f"SELECT column_name FROM {s.trino_catalog}.information_schema.columns "
                       f"WHERE table_schema = '{s.schema('silver')}'")  # fmt: skip
    assert columns == []
    denied(bi, f"SHOW STATS FOR {tables['silver']}.customers")


def test_a_merchant_sees_only_its_own_rows(tables):
    merchant = as_(tables["settings"], "merchant")
    own = int(tables["settings"].trino_merchant_user.rsplit("_", 1)[1])
    rows = merchant.query(
        f"SELECT merchant_id, revenue FROM {tables['gold']}.merchant_sales_daily ORDER BY order_date"
    )
    assert rows == [(own, 10.0), (own, 5.0)]
    assert merchant.query(
        f"SELECT count(*) FROM {tables['gold']}.merchant_sales_daily WHERE merchant_id = 2"
    ) == [(0,)]
    assert merchant.query(f"SELECT sum(revenue) FROM {tables['gold']}.merchant_sales_daily") == [(15.0,)]
    denied(merchant, f"SELECT * FROM {tables['gold']}.daily_kpis")
    denied(merchant, f"SELECT * FROM {tables['silver']}.customers")


def test_pii_is_masked_in_statistics_and_hidden_table_functions_are_denied(tables):
    s = tables["settings"]
    analyst = as_(s, "analyst")
    stats = analyst.query(f"SHOW STATS FOR {tables['silver']}.customers")
    assert not any("ada" in str(v).lower() for row in stats for v in row), (
        stats
    )  # no clear value in statistics
    # statistics would come from every row, past the row filter: Trino keeps none (the catalog's setting)
    merchant_stats = as_(s, "merchant").query(f"SHOW STATS FOR {tables['gold']}.merchant_sales_daily")
    assert not any("20" in str(v) for row in merchant_stats for v in row), merchant_stats
    assert all(row[5] is None and row[6] is None for row in merchant_stats), merchant_stats  # no low, no high
    for principal in ("analyst", "bi", "merchant"):
        denied(as_(s, principal), f"SELECT * FROM TABLE({s.trino_catalog}.system.table_changes("
                                  f"'{s.schema('gold')}', 'daily_kpis', 0))")  # fmt: skip
        denied(as_(s, principal), f"CALL {s.trino_catalog}.system.register_table(schema_name => '{s.schema('gold')}', "
                                  f"table_name => 'stolen', table_location => 's3://{s.bucket}/x')")  # fmt: skip
        denied(as_(s, principal), "SELECT * FROM system.runtime.queries")


def _statement(s, auth=None, user=None, verify=None):
    return requests.post(f"https://{s.trino_host}:{s.trino_port}/v1/statement", data="SELECT 1", auth=auth,
                         headers={"X-Trino-User": user or "platform"}, verify=verify or s.trino_verify, timeout=30)  # fmt: skip


def test_wrong_missing_and_unknown_credentials_are_refused(tables):
    s = tables["settings"]
    assert _statement(s, auth=("platform", s.trino_password)).status_code == 200
    assert _statement(s, auth=("platform", "wrong")).status_code == 401
    assert _statement(s, auth=("analyst", s.trino_password)).status_code == 401  # another's password
    assert _statement(s).status_code == 401  # none
    assert _statement(s, auth=("nobody", "nothing"), user="nobody").status_code == 401
    # authenticated as analyst, asking to run as platform: impersonation is not granted to anyone
    analyst = as_(s, "analyst")
    conn = trino.dbapi.connect(host=s.trino_host, port=s.trino_port, user="platform", http_scheme="https",
                               auth=trino.auth.BasicAuthentication("analyst", s.trino_analyst_password),
                               http_session=analyst.connect()._http_session)  # fmt: skip
    with pytest.raises(trino.exceptions.TrinoUserError) as err:
        conn.cursor().execute("SELECT 1").fetchall()
    assert err.value.error_name == DENIED and "impersonate" in err.value.message, err.value
    with pytest.raises(requests.exceptions.ConnectionError):  # no plain-HTTP port at all
        requests.get(f"http://{s.trino_host}:{s.trino_port}/v1/info", timeout=10)


def test_pii_classification_reaches_the_rules_trino_runs_with(tables):
    s = tables["settings"]
    installed = json.loads((s.home / "trino" / "etc" / "rules.json").read_text())
    masked = {
        c["name"] for r in installed["tables"] if r.get("user") == "analyst" for c in r.get("columns", [])
    }
    assert set(pii.columns("silver", "customers")) <= masked
    # gold has no PII: no column of a gold table is classified, and the marts select none of them
    assert not any(layer == "gold" for layer, _ in pii.classified())


def test_a_refused_rules_file_leaves_the_running_rules_alone(tables, tmp_path):
    s = tables["settings"]
    etc = s.home / "trino" / "etc"
    before = (etc / "rules.json").read_text()
    bad = tmp_path / "rules.json"
    bad.write_text(
        trino_access.RULES.read_text().replace('"privileges": ["SELECT"]}', '"privileges": ["SELECT"]', 1)
    )
    with pytest.raises(StackError) as err:
        trino_access.install(s.model_copy(update={"trino_access_rules": bad}), etc, print)
    assert re.search(r"line \d+ column \d+", err.value.problem) and str(bad) in err.value.problem
    assert (etc / "rules.json").read_text() == before
    assert as_(s, "analyst").query(f"SELECT count(*) FROM {tables['gold']}.daily_kpis") == [(1,)]


def test_every_query_is_audited_in_the_lake_with_who_read_pii(tables):
    """An analyst's query of a PII column lands, through Trino's event listener and the exactly-once
    landing, in raw/trino_audit; the view names the user, the table, the columns and flags the PII."""
    import time

    from lakehouse.resources import KafkaResource, LakeResource
    from lakehouse.security.audit import READS_VIEW, land_audit_log

    s = tables["settings"]
    analyst = as_(s, "analyst")
    conn = analyst.connect()
    cursor = conn.cursor()
    cursor.execute(f"SELECT email, country FROM {tables['silver']}.customers")
    cursor.fetchall()
    query_id = cursor.query_id
    conn.close()
    platform = as_(s, "platform")
    lake = LakeResource.from_settings(s)
    kafka = KafkaResource.from_settings(s)  # the landings' own principal: its ACLs include the audit topic
    view = f"{s.trino_catalog}.{s.schema('raw')}.{READS_VIEW}"
    deadline, reads = time.monotonic() + 90, []
    while time.monotonic() < deadline and not reads:
        land_audit_log(kafka, lake, platform, log=lambda *_: None)
        reads = platform.query(f'SELECT "user", schema_name, table_name, column_name, pii FROM {view} '
                               f"WHERE query_id = '{query_id}' ORDER BY column_name")  # fmt: skip
        if not reads:
            time.sleep(3)
    assert reads == [("analyst", s.schema("silver"), "customers", "country", False),
                     ("analyst", s.schema("silver"), "customers", "email", True)], reads  # fmt: skip
    # a second landing adds nothing twice
    before = platform.query(f"SELECT count(*), count(DISTINCT (\"partition\", \"offset\")) FROM "
                            f"{s.trino_catalog}.{s.schema('raw')}.trino_audit")  # fmt: skip
    assert before[0][0] == before[0][1]
    denied(analyst, f"SELECT * FROM {view}")  # the audit log is the platform's to read
