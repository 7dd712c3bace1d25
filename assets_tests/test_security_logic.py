"""The pure logic of the security layer: secrets file, certificate, access rules, PII masks, password file."""

import datetime as dt
import json
import multiprocessing
import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse import secrets_store
from lakehouse.security import pii, tls, trino_access
from lakehouse.settings import LakehouseSettings
from lakehouse.stack.errors import StackError


def _env(tmp_path, **extra):
    return {"LAKEHOUSE_SECRETS_FILE": str(tmp_path / "secrets.env"), **extra}


def test_secrets_are_generated_once_private_and_the_environment_wins(tmp_path):
    env = _env(tmp_path, LAKEHOUSE_POSTGRES_PASSWORD="from-the-environment")
    first = secrets_store.load(env)
    path = tmp_path / "secrets.env"
    assert path.stat().st_mode & 0o777 == 0o600
    assert first["LAKEHOUSE_POSTGRES_PASSWORD"] == "from-the-environment"
    assert "from-the-environment" not in path.read_text()  # an environment value is not copied to the file
    assert len({v for k, v in first.items() if k != "LAKEHOUSE_POSTGRES_PASSWORD"}) == len(first) - 1
    assert all(len(v) >= 24 for k, v in first.items() if k != "LAKEHOUSE_POSTGRES_PASSWORD")
    assert secrets_store.load(_env(tmp_path, LAKEHOUSE_POSTGRES_PASSWORD="from-the-environment")) == first


def test_a_secrets_file_others_can_read_or_a_bad_line_is_refused(tmp_path):
    secrets_store.load(_env(tmp_path))
    path = tmp_path / "secrets.env"
    path.chmod(0o644)
    with pytest.raises(StackError) as err:
        secrets_store.load(_env(tmp_path))
    assert "can be read by others" in err.value.problem and f"chmod 600 {path}" in err.value.fix
    path.chmod(0o600)
    path.write_text(path.read_text() + "not a setting\n")
    with pytest.raises(StackError) as err:
        secrets_store.load(_env(tmp_path))
    assert re.search(r"line \d+ is not LAKEHOUSE_NAME=value", err.value.problem)


def _load_in_child(env, queue):
    queue.put(secrets_store.load(env))


def test_concurrent_first_uses_agree_on_the_secrets(tmp_path):
    queue = multiprocessing.get_context("fork").Queue()
    procs = [multiprocessing.get_context("fork").Process(target=_load_in_child, args=(_env(tmp_path), queue))
             for _ in range(4)]  # fmt: skip
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert all(r == results[0] for r in results)


def test_settings_take_their_secrets_from_the_file_and_export_them(tmp_path, clean_env, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_SECRETS_FILE", str(tmp_path / "secrets.env"))
    s = LakehouseSettings()
    stored = secrets_store.parse((tmp_path / "secrets.env").read_text(), tmp_path)
    assert s.trino_password == stored["LAKEHOUSE_TRINO_PASSWORD"] == os.environ["LAKEHOUSE_TRINO_PASSWORD"]
    assert LakehouseSettings(trino_password="given").trino_password == "given"


def test_the_certificate_is_made_anew_when_missing_expired_or_for_other_hosts(tmp_path):
    logged = []
    cert = tls.ensure(tmp_path, logged.append)
    assert "no certificate yet" in logged[0] and tls.problem(cert) is None
    assert cert.key_and_cert.stat().st_mode & 0o777 == 0o600
    assert cert.cert.read_bytes() in cert.trust.read_bytes()
    tls.generate(cert, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=400))
    assert "expired" in tls.problem(cert)
    tls.ensure(tmp_path, logged.append)
    assert "expired" in logged[1] and tls.problem(cert) is None
    cert.cert.write_text("garbage")
    assert "cannot be read" in tls.problem(cert)


RULES_TEXT = trino_access.RULES.read_text()


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda t: t.replace('"allow": "all"}', '"allow": "all"', 1), r"line \d+ column \d+"),
        (lambda t: t.replace('"owner": true', '"owner": true, "ownr": 1', 1), "unknown field 'ownr'"),
        (lambda t: t.replace('"table": "merchant_sales_daily"', '"table": "merchant_(sales"', 1), "not a regular expression"),
        (lambda t: t.replace('"privileges": ["SELECT"]', '"privileges": ["READ"]', 1), "unknown privilege 'READ'"),
        (lambda t: t.replace('"catalogs"', '"catalogz"', 1), "unknown section 'catalogz'"),
        (lambda t: t.replace('{"user": "bi", "catalog": "delta", "schema": "(.+_)?gold", "privileges": ["SELECT"]},', ""),
         "no table rule matches the principal 'bi'"),
    ],
)  # fmt: skip
def test_a_malformed_rules_file_is_refused_with_its_line_and_reason(tmp_path, edit, reason):
    bad = tmp_path / "rules.json"
    bad.write_text(edit(RULES_TEXT))
    assert bad.read_text() != RULES_TEXT
    s = LakehouseSettings(trino_access_rules=bad)
    etc = tmp_path / "etc"
    with pytest.raises(StackError) as err:
        trino_access.install(s, etc, print)
    assert re.search(reason, err.value.problem), err.value.problem
    assert not (etc / "rules.json").exists()


def test_the_rule_lines_point_at_the_bad_rule(tmp_path):
    lines = RULES_TEXT.splitlines()
    target = next(i for i, line in enumerate(lines) if '"user": "bi"' in line and "tables" not in line)
    lines[target] = lines[target].replace('"privileges"', '"privilegez"')
    bad = tmp_path / "rules.json"
    bad.write_text("\n".join(lines))
    with pytest.raises(StackError) as err:
        trino_access.check_rules(bad.read_text(), bad, LakehouseSettings())
    assert f"line {target + 1} " in err.value.problem


def test_masks_go_to_every_non_platform_reader_of_a_pii_table_and_nowhere_else():
    s = LakehouseSettings()
    rules = trino_access.with_masks(json.loads(RULES_TEXT), s)
    masked = [r for r in rules["tables"] if r.get("columns")]
    assert {r["user"] for r in masked} == {"analyst", "bi"}  # the merchant rule reads another table only
    for rule in masked:
        assert {c["name"] for c in rule["columns"]} == set(pii.columns("silver", "customers"))
        assert rule["table"] == "customers"
        broader = rules["tables"][rules["tables"].index(rule) + 1]
        assert broader["user"] == rule["user"] and "table" not in broader  # just before the rule it narrows
    assert not any(r.get("columns") for r in rules["tables"] if r.get("user") == "platform")


def test_masks_reach_catch_all_rules_and_prefixed_schemas():
    """A rule without `user` (whoever reaches it) or naming a prefixed schema still gets the masks."""
    s = LakehouseSettings()
    rules = {"tables": [{"user": "platform", "privileges": ["SELECT", "OWNERSHIP"]},
                        {"schema": "dev_silver", "privileges": ["SELECT"]},
                        {"privileges": ["SELECT"]}]}  # fmt: skip
    masked = [r for r in trino_access.with_masks(rules, s)["tables"] if r.get("columns")]
    assert [r.get("schema") for r in masked] == ["dev_silver", None]


def test_an_empty_variable_is_no_secret(tmp_path, clean_env, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_SECRETS_FILE", str(tmp_path / "secrets.env"))
    monkeypatch.setenv("LAKEHOUSE_TRINO_PASSWORD", "")
    s = LakehouseSettings()
    assert len(s.trino_password) >= 24 and os.environ["LAKEHOUSE_TRINO_PASSWORD"] == s.trino_password


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40))
def test_a_mask_quotes_any_column_name(name):
    expression = pii.mask(name)
    quoted = '"' + name.replace('"', '""') + '"'
    assert expression.count(quoted) == 1
    assert '"' not in expression.replace(quoted, "")  # nothing of the name escapes its quotes


def test_the_password_file_holds_bcrypt_hashes_that_verify_and_are_kept_when_unchanged():
    import bcrypt

    s = LakehouseSettings(trino_password="p1", trino_analyst_password="p2", trino_bi_password="p3",
                          trino_merchant_password="p4")  # fmt: skip
    text = trino_access.password_file(s)
    entries = dict(line.split(":", 1) for line in text.splitlines())
    assert set(entries) == {"platform", "analyst", "bi", s.trino_merchant_user}
    for user, password in zip(entries, ("p1", "p2", "p3", "p4"), strict=True):
        assert entries[user].startswith("$2y$10$")
        assert bcrypt.checkpw(password.encode(), entries[user].replace("$2y$", "$2b$").encode())
    assert trino_access.password_file(s, text) == text
    changed = trino_access.password_file(s.model_copy(update={"trino_bi_password": "new"}), text)
    assert (
        changed.splitlines()[2] != text.splitlines()[2] and changed.splitlines()[:2] == text.splitlines()[:2]
    )


def test_the_pii_classification_shows_in_the_asset_metadata():
    import dagster as dg

    from lakehouse.definitions import defs

    for key in (dg.AssetKey(["silver", "customers"]), dg.AssetKey(["raw", "cdc_customers"])):
        metadata = defs.resolve_assets_def(key).specs_by_key[key].metadata
        assert metadata["pii_columns"].data == pii.columns("silver", "customers") != {}, key
    orders = dg.AssetKey(["silver", "orders"])
    assert "pii_columns" not in defs.resolve_assets_def(orders).specs_by_key[orders].metadata


# Kafka principals (lakehouse/security/kafka_access.py)


def _kafka_settings(**values) -> LakehouseSettings:
    secrets = {f: "s3cret" for f in secrets_store.SECRET_FIELDS}
    return LakehouseSettings(**{**secrets, **values})


_JAAS_VALUE = re.compile(r'password="((?:[^"\\]|\\.)*)";$')


@given(st.text(min_size=1, max_size=40).filter(lambda p: "\n" not in p))
def test_a_jaas_line_carries_any_password_quoted_and_escaped(password):
    from lakehouse.security.kafka_access import jaas

    line = jaas(_kafka_settings(kafka_flink_password=password), "flink")
    quoted = _JAAS_VALUE.search(line).group(1)  # one quoted value to the end: no quote escapes it
    assert re.sub(r"\\(.)", r"\1", quoted) == password


def test_kafka_clients_get_their_own_principal_and_plaintext_none(clean_env):
    from lakehouse.security.kafka_access import CLIENTS, client_config

    s = _kafka_settings()
    users = {client_config(s, c)["sasl.username"] for c in CLIENTS}
    assert len(users) == len(CLIENTS)  # one principal each
    assert client_config(s, "pinot")["security.protocol"] == "SASL_PLAINTEXT"
    assert client_config(s, "admin", mechanism="PLAIN")["sasl.mechanism"] == "PLAIN"
    plain = client_config(_kafka_settings(kafka_security_protocol="PLAINTEXT"), "landing")
    assert plain == {"bootstrap.servers": s.kafka_bootstrap}
    ssl = client_config(
        _kafka_settings(kafka_security_protocol="SASL_SSL", kafka_ssl_ca_file="/ca.pem"), "flink"
    )
    assert ssl["security.protocol"] == "SASL_SSL" and ssl["ssl.ca.location"] == "/ca.pem"
    with pytest.raises(ValueError, match="unknown Kafka client"):
        client_config(s, "nobody")


def test_kafka_grants_stay_inside_each_client_s_namespace(clean_env):
    from lakehouse.security.kafka_access import CLIENTS, grants

    s = _kafka_settings()
    owned = (s.events_topic, f"{s.cdc_topic_prefix}.", s.realtime_topic(""), s.trino_audit_topic, "_connect-",
             "__debezium-heartbeat", s.alerts_topic)  # fmt: skip
    for client, kind, pattern, name, ops in grants(s):
        assert client in CLIENTS and client != "admin"  # the super user needs none
        assert pattern in ("LITERAL", "PREFIXED") and name and name != "*", (client, name)  # no wildcard
        if kind == "TOPIC":
            assert name.startswith(owned), (client, name)
        if "ALL" in ops:
            assert client == "connect" and (name.startswith("_connect-") or name == "lakehouse-connect")
    writes = {
        (c, name, pattern) for c, kind, pattern, name, ops in grants(s) if kind == "TOPIC" and "WRITE" in ops
    }
    assert not {w for w in writes if w[0] == "pinot"}  # the readers write nothing
    assert {w for w in writes if w[0] == "landing"} == {
        ("landing", s.alerts_topic, "LITERAL")
    }  # but the alerts


# Forgetting a customer: the rewrites of the raw change log and the dead letters (local Delta tables)


def test_the_rewrites_leave_no_clear_value_of_the_customer_and_touch_no_other(tmp_path):
    from datetime import UTC, datetime

    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from lakehouse.cdc.changes import CHANGE_LOG_SCHEMA
    from lakehouse.ingest.dead_letters import DEAD_LETTER_SCHEMA
    from lakehouse.security.privacy import scrub_change_log, scrub_dead_letters

    now = datetime.now(UTC)
    replacement = {"email": "forgotten", "phone": None}

    def image(cid):
        return {"customer_id": cid, "email": f"c{cid}@mail.test", "phone": f"+1-{cid}", "country": "GB"}

    rows = []
    for offset, cid in enumerate([7, 17, 7, 70]):
        before, after = image(cid), {**image(cid), "country": "IE"}
        value = json.dumps({"op": "u", "before": before, "after": after}).encode()
        rows.append({"topic": "cdc.m.customers", "partition": 0, "offset": offset, "kafka_timestamp": now,
                     "key": json.dumps({"customer_id": cid}), "op": "u", "before": json.dumps(before),
                     "after": json.dumps(after), "lsn": offset, "tx_id": offset, "source_ts": now,
                     "source_table": "customers", "snapshot": "false", "value": value, "error": None,
                     "ingested_at": now})  # fmt: skip
    write_deltalake(str(tmp_path / "log"), pa.Table.from_pylist(rows, CHANGE_LOG_SCHEMA))
    log = DeltaTable(str(tmp_path / "log"))
    assert scrub_change_log(log, 7, replacement) == 2
    after = {r["offset"]: r for r in DeltaTable(str(tmp_path / "log")).to_pyarrow_table().to_pylist()}
    for offset in (0, 2):
        text = str(after[offset])
        assert "c7@mail.test" not in text and "+1-7" not in text and "IE" in text  # only the PII went
    assert "c17@mail.test" in str(after[1]) and "c70@mail.test" in str(after[3])  # 17 and 70 are not 7

    dead = [{"topic": "cdc.m.customers", "partition": 0, "offset": o, "kafka_timestamp": now, "value": v,
             "error": e, "dead_lettered_at": now}
            for o, v, e in [(9, json.dumps({"after": image(7)}).encode(), "phone is not a string: +1-7"),
                            (10, b'{"customer_id": 7, "email": "c7@mail.test"', "not JSON"),
                            (11, json.dumps({"after": image(8)}).encode(), "other")]]  # fmt: skip
    write_deltalake(str(tmp_path / "dead"), pa.Table.from_pylist(dead, DEAD_LETTER_SCHEMA))
    assert scrub_dead_letters(DeltaTable(str(tmp_path / "dead")), "cdc.m.customers", 7, replacement) == 2
    left = {r["offset"]: r for r in DeltaTable(str(tmp_path / "dead")).to_pyarrow_table().to_pylist()}
    assert "c7@mail.test" not in str(left[9]) and "+1-7" not in str(left[9]) and left[10]["value"] is None
    assert left[11]["value"] == dead[2]["value"] and left[11]["error"] == "other"
