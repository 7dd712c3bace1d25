"""The lifecycle's pure logic, without the stack: which backups retention keeps, the archive retention
setting, reading a Delta log from its checkpoint, thawing archived objects, the S3 lifecycle rules."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.lifecycle.archive import expired
from lakehouse.lifecycle.cold_tier import LifecycleError, lifecycle_rules, needs_thaw, thaw
from lakehouse.lifecycle.delta_log import live_add_actions, log_state
from lakehouse.lifecycle.retention import kept
from lakehouse.settings import LakehouseSettings, SettingValueError, archive_after_days

stamps = st.lists(st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2026, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)), max_size=60)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(stamps, st.integers(1, 10), st.integers(0, 8))
def test_retention_keeps_the_newest_within_bounds_and_is_stable(times, daily, weekly):
    keep = kept(times, daily, weekly)
    assert keep <= set(times)
    assert len(keep) <= daily + weekly
    if times:
        assert max(times) in keep
    assert kept(keep, daily, weekly) == keep  # running retention again deletes nothing more
    days = {t.date() for t in keep}
    assert len(days) == len(keep)  # at most one backup per day
    newest_days = sorted({t.date() for t in times}, reverse=True)[:daily]
    for d in newest_days:  # the newest of each of the last `daily` days is kept
        assert max(t for t in times if t.date() == d) in keep


def test_retention_keeps_one_per_week_before_the_daily_ones():
    now = datetime(2026, 11, 27, 3, tzinfo=UTC)
    times = [now - timedelta(days=i) for i in range(60)]
    keep = sorted(kept(times, 7, 4), reverse=True)
    assert keep[:7] == times[:7]
    weeks = [t.isocalendar()[:2] for t in keep[7:]]
    assert len(weeks) == 4 and len(set(weeks)) == 4


@given(st.dictionaries(st.tuples(st.from_regex(r"[a-z]{1,8}", fullmatch=True), st.from_regex(r"[a-z_]{1,12}", fullmatch=True)),
                       st.integers(-5, 4000), max_size=6))  # fmt: skip
def test_archive_retention_parses_or_refuses_with_the_variable_named(spec):
    text = ",".join(f"{layer}/{table}={days}" for (layer, table), days in spec.items())
    if any(days < 1 for days in spec.values()):
        with pytest.raises(SettingValueError, match="LAKEHOUSE_ARCHIVE_AFTER_DAYS") as err:
            archive_after_days(text)
        assert "today's partition" in err.value.problem
    else:
        assert archive_after_days(text) == spec


@pytest.mark.parametrize("bad", ["bronze=3", "bronze/events", "bronze/events=soon", "/x=3"])
def test_malformed_archive_retention_is_refused(bad):
    with pytest.raises(SettingValueError, match="LAKEHOUSE_ARCHIVE_AFTER_DAYS"):
        archive_after_days(bad)


def test_a_partition_expires_only_once_older_than_the_retention():
    today = date(2026, 11, 27)
    assert not expired(today, 1, today)
    assert not expired(today - timedelta(days=1), 1, today)
    assert expired(today - timedelta(days=2), 1, today)
    assert not expired(today - timedelta(days=30), 30, today) and expired(
        today - timedelta(days=31), 30, today
    )


def test_the_log_is_read_from_its_checkpoint_with_original_statistics_and_marks(tmp_path):
    from deltalake.transaction import CommitProperties, Transaction

    uri = str(tmp_path / "t")
    for i in range(4):
        write_deltalake(uri, pa.table({"event_date": [f"2026-01-0{i + 1}"], "n": [i]}), mode="append",
                        partition_by=["event_date"],
                        commit_properties=CommitProperties(app_transactions=[Transaction("app:t:0", i)]))  # fmt: skip
    dt = DeltaTable(uri)
    before = live_add_actions(uri, {}, dt.version())
    dt.create_checkpoint()
    dt.delete("event_date = '2026-01-01'")
    state = log_state(uri, {}, DeltaTable(uri).version())
    assert state.files[0].endswith(".checkpoint.parquet") and state.txns == {"app:t:0": 3}
    assert set(state.adds) == set(before) - {
        p for p, a in before.items() if a["partitionValues"]["event_date"] == "2026-01-01"
    }
    for path, add in state.adds.items():  # from the checkpoint: the same values as from the JSON commits
        assert (
            add["stats"] == before[path]["stats"]
            and add["partitionValues"] == before[path]["partitionValues"]
        )


class FakeGlacier:
    """An S3 client's HEAD/RestoreObject for frozen objects that thaw after two polls (pure logic only)."""

    def __init__(self, keys):
        self.polls = dict.fromkeys(keys, 0)
        self.asked: list[str] = []

    def head_object(self, Bucket, Key):  # noqa: N803 - boto3's names
        if Key not in self.asked:
            return {"StorageClass": "GLACIER"}
        self.polls[Key] += 1
        done = self.polls[Key] > 2
        return {"StorageClass": "GLACIER", "Restore": f'ongoing-request="{"false" if done else "true"}"'}

    def restore_object(self, Bucket, Key, RestoreRequest):  # noqa: N803
        assert Key not in self.asked, "a restore must be asked once per object"
        self.asked.append(Key)


def test_thaw_asks_once_per_object_and_waits_with_progress():
    client, lines = FakeGlacier(["a", "b"]), []
    thaw(client, "cold", ["a", "b"], days=1, timeout_s=10, log=lines.append, poll_s=0)
    assert sorted(client.asked) == ["a", "b"] and lines[-1].endswith("2/2 objects readable")
    with pytest.raises(LifecycleError, match="did not finish"):
        thaw(FakeGlacier(["c"]), "cold", ["c"], days=1, timeout_s=0, log=lines.append, poll_s=0)


def test_thaw_only_on_aws_unless_told():
    assert not needs_thaw(LakehouseSettings(s3_endpoint="http://127.0.0.1:8333"))
    assert needs_thaw(LakehouseSettings(s3_endpoint="https://s3.eu-west-1.amazonaws.com"))
    assert needs_thaw(LakehouseSettings(s3_endpoint="http://127.0.0.1:8333", cold_thaw="always"))


def test_lifecycle_rules_never_touch_the_lake_or_shared_backup_files_and_expire_after_retention():
    s = LakehouseSettings()
    rules = lifecycle_rules(s, ["bronze/clickstream_events/"], cold_expire_days=3650)
    assert all("Transitions" not in r and "Expiration" not in r for r in rules[s.bucket]["Rules"])
    backup = {r["ID"]: r for r in rules[s.backup_bucket]["Rules"]}
    assert not any(r["Filter"]["Prefix"].startswith("delta") for r in backup.values())  # GC owns delta/
    assert not any("Transitions" in r for r in backup.values() if r["Filter"]["Prefix"] == "postgres/")
    assert backup["kafka-to-cold"]["Transitions"][0]["StorageClass"] == s.cold_storage_class
    assert backup["postgres-expire"]["Expiration"]["Days"] > s.backup_keep_daily + 7 * s.backup_keep_weekly
    assert any(
        r.get("Filter", {}).get("Prefix") == "bronze/clickstream_events/"
        for r in rules[s.cold_bucket]["Rules"]
    )
