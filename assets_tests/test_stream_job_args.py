"""The settings Dagster passes to each stream job reach that job's own argument parser (pure)."""

import importlib
import sys

from lakehouse.realtime.flink import FLINK_JOBS, STREAMING_DIR, by_name
from lakehouse.settings import LakehouseSettings

REQUIRED = ["--output-topic", "t", "--group-id", "g", "--state-dir", "d", "--connector-jar", "j"]


def test_each_job_parses_the_settings_it_is_given(clean_env, monkeypatch):
    monkeypatch.syspath_prepend(str(STREAMING_DIR))
    sys.modules.pop("jobs", None)
    common = importlib.import_module("jobs.common")
    s = LakehouseSettings(
        _env_file=None, cart_abandon_minutes=45, suspicious_amount_factor=7.5, suspicious_burst_count=3
    )
    for job in FLINK_JOBS:
        module = importlib.import_module(f"jobs.{job.name}")
        parser = common.parser(module.__doc__)
        if hasattr(module, "add_arguments"):
            module.add_arguments(parser)
        args = parser.parse_args([*REQUIRED, *job.extra_args(s)])
        for flag, field in job.settings_args:
            assert getattr(args, flag.lstrip("-").replace("-", "_")) == getattr(s, field), (job.name, flag)
    assert by_name("cart_abandonment").extra_args(s) == ["--abandon-minutes", "45"]
