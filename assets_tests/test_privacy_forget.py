"""`lakehouse privacy forget`: a customer's personal data leaves every layer, and the old files go too.

A customer is created and changed in PostgreSQL, captured by Debezium, landed and applied (raw change log
and silver hold the clear values); then forgotten. Nothing the tables read holds the values afterwards, no
file that held them is left in the tables' folders, the source is anonymized, a second request changes
nothing more, and an unknown customer is a no-op with a report.
"""

import json
import uuid

import pytest
from deltalake import DeltaTable
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.cdc.pipeline import apply_table, change_log_table, land_changes, wait_for_capture
from lakehouse.cdc.workload import connect
from lakehouse.resources import KafkaResource, LakeResource, PostgresResource
from lakehouse.security import privacy

pytestmark = pytest.mark.stack


@given(st.dictionaries(st.sampled_from(["email", "phone", "customer_id", "country"]),
                       st.one_of(st.none(), st.text(max_size=20), st.integers())),  # fmt: skip
       st.sampled_from([True, False]), st.sampled_from(["before", "after"]))  # fmt: skip
def test_scrub_record_replaces_only_the_pii_of_both_images(image, wrapped, side):
    replacement = {"email": "forgotten", "phone": None}
    message = {"op": "u", side: image, "source": {"lsn": 1}}
    raw = json.dumps({"payload": message} if wrapped else message).encode()
    out = json.loads(privacy.scrub_record(raw, replacement))
    body = out["payload"] if wrapped else out
    for k, v in image.items():
        assert body[side][k] == replacement.get(k, v)
    assert body["source"] == {"lsn": 1}
    assert privacy.scrub_record(b"{not json", replacement) is None  # cannot tell it from personal data


def _table_files(s, lake: LakeResource, layer: str, table: str) -> set[str]:
    """Every Parquet object under the table's folder in the object store."""
    from lakehouse.resources.lake import s3_client

    bucket, _, prefix = lake.table_uri(layer, table).removeprefix("s3://").partition("/")
    keys = set()
    for page in s3_client(s).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        keys |= {
            o["Key"].removeprefix(prefix + "/")
            for o in page.get("Contents", [])
            if o["Key"].endswith(".parquet")
        }
    return keys


def _text_of(dt: DeltaTable) -> str:
    return str(dt.to_pyarrow_table().to_pylist())


@pytest.fixture
def customer(namespace):
    """A new customer with distinctive personal data, changed once, captured, landed and applied."""
    s = namespace.settings
    tag = uuid.uuid4().hex[:10]
    email, phone, name = f"ada-{tag}@example.com", f"+44-{int(tag, 16) % 10**9}", f"Ada {tag[:6]}"
    with connect(s) as conn:
        cid = conn.execute("SELECT COALESCE(max(customer_id), 0) + 1 FROM customers").fetchone()[0]
        conn.execute("INSERT INTO customers (customer_id, email, phone, full_name, country) VALUES (%s, %s, %s, %s, 'GB')",
                     (cid, email, phone, name))  # fmt: skip
        conn.execute("UPDATE customers SET country = 'IE' WHERE customer_id = %s", (cid,))
    wait_for_capture(s)
    kafka, lake = KafkaResource.from_settings(s), LakeResource.from_settings(s)
    land_changes(kafka, lake, "customers", log=lambda *_: None)
    apply_table(kafka, lake, "customers", log=lambda *_: None, postgres=PostgresResource.from_settings(s))
    yield cid, (email, phone, name)
    with connect(s) as conn:  # the shared source as it was (the workload picks ids after the largest)
        conn.execute("DELETE FROM customers WHERE customer_id = %s", (cid,))


def test_forget_removes_the_customer_s_personal_data_from_every_layer(namespace, customer):
    s = namespace.settings
    cid, values = customer
    lake = LakeResource.from_settings(s)
    raw = DeltaTable(
        lake.table_uri("raw", change_log_table("customers")), storage_options=lake.storage_options
    )
    silver = DeltaTable(lake.table_uri("silver", "customers"), storage_options=lake.storage_options)
    assert all(v in _text_of(raw) for v in values) and values[0] in _text_of(silver)  # held in clear before

    report = privacy.forget(s, cid, log=lambda *_: None)

    with connect(s) as conn:
        row = conn.execute("SELECT email, phone, full_name, country FROM customers WHERE customer_id = %s",
                           (cid,)).fetchone()  # fmt: skip
    assert row == ("forgotten", None, "forgotten", "IE")  # the source: non-PII columns kept
    for layer, table in (("raw", change_log_table("customers")), ("silver", "customers")):
        dt = DeltaTable(lake.table_uri(layer, table), storage_options=lake.storage_options)
        text = _text_of(dt)
        assert not [v for v in values if v in text], (layer, table)  # nothing the table reads holds them
        live = {u.split(lake.table_uri(layer, table) + "/", 1)[-1] for u in dt.file_uris()}
        assert _table_files(s, lake, layer, table) == live, (layer, table)  # every older file vacuumed
    mine = [r for r in DeltaTable(lake.table_uri("silver", "customers"), storage_options=lake.storage_options)
            .to_pyarrow_table().to_pylist() if r["customer_id"] == cid]  # fmt: skip
    assert (
        mine and mine[0]["email"] == "forgotten" and mine[0]["phone"] is None and mine[0]["country"] == "IE"
    )
    assert any("raw.cdc_customers" in c and "rewritten" in c for c in report.changed)
    assert any(
        "Kafka topic" in r for r in report.remaining
    )  # said plainly: the topic holds it until retention

    again = privacy.forget(s, cid, log=lambda *_: None)  # a second request: nothing new to rewrite in clear
    assert not [v for v in values if v in _text_of(DeltaTable(lake.table_uri("raw", change_log_table("customers")),
                                                              storage_options=lake.storage_options))]  # fmt: skip
    assert again.customer_id == cid


def test_forgetting_an_unknown_customer_changes_nothing_and_says_so(namespace):
    report = privacy.forget(namespace.settings, 1_999_999_999, log=lambda *_: None)
    assert any("no row customer_id=1999999999" in c for c in report.changed)
