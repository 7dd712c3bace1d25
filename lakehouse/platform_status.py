"""`lakehouse status`: each layer's freshness, last materialization, landing lag and failing checks, in one
screen, read from the stack's Dagster instance (what the daemon and the runs recorded)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

LAYERS = ("raw", "bronze", "silver", "gold", "realtime", "pinot", "bi", "lifecycle")
# worst first: a layer shows its worst asset
FRESHNESS_ORDER = ("FAIL", "WARN", "UNKNOWN", "PASS", "NOT_APPLICABLE")


@dataclass
class LayerStatus:
    layer: str
    assets: int
    freshness: Counter = field(default_factory=Counter)  # state -> assets
    last_materialized: float | None = None  # epoch seconds, the layer's newest
    never_materialized: int = 0
    landing_lag_s: float | None = None  # the largest of its assets' latest landings
    checks: int = 0
    failing_checks: list[str] = field(default_factory=list)

    @property
    def worst_freshness(self) -> str:
        states = [s for s in FRESHNESS_ORDER if self.freshness.get(s)]
        return states[0] if states else "-"


def collect(instance, asset_graph) -> list[LayerStatus]:
    """The status of every layer, from the instance's records of the graph's assets and checks."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    nodes = [n for n in asset_graph.asset_nodes if n.group_name in LAYERS]
    keys = [n.key for n in nodes]
    freshness = instance.get_freshness_state_records(keys)
    latest = instance.get_latest_materialization_events(keys)
    check_keys = [ck for n in nodes for ck in n.check_keys]
    executions = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
    by_layer = {layer: LayerStatus(layer, 0) for layer in LAYERS}
    for node in nodes:
        row = by_layer[node.group_name]
        row.assets += 1
        record = freshness.get(node.key)
        if node.freshness_policy is not None:
            row.freshness[record.freshness_state.value if record else "UNKNOWN"] += 1
        event = latest.get(node.key)
        if event is None:
            row.never_materialized += 1
            continue
        row.last_materialized = max(row.last_materialized or 0.0, event.timestamp)
        lag = (
            event.asset_materialization.metadata.get("landing_lag_s") if event.asset_materialization else None
        )
        if lag is not None:
            row.landing_lag_s = max(row.landing_lag_s or 0.0, float(lag.value))
    for ck in check_keys:
        layer = asset_graph.get(ck.asset_key).group_name
        by_layer[layer].checks += 1
        execution = executions.get(ck)
        if execution is not None and execution.status == AssetCheckExecutionRecordStatus.FAILED:
            by_layer[layer].failing_checks.append(f"{ck.asset_key.to_user_string()}:{ck.name}")
    return [row for row in by_layer.values() if row.assets]


def _ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "never"
    seconds = max(0, now - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def render(rows: list[LayerStatus], last_runs: list, now: float | None = None) -> str:
    """One screen: a line per layer, the failing checks, the last runs."""
    now = now or time.time()
    lines = [f"{'layer':<10} {'assets':>6}  {'freshness':<24} {'last materialized':<18} {'lag':>8}  checks"]
    for r in rows:
        fresh = ", ".join(
            f"{n} {s.lower()}"
            for s, n in sorted(r.freshness.items(), key=lambda i: FRESHNESS_ORDER.index(i[0]))
        )
        last = _ago(r.last_materialized, now) + (
            f" ({r.never_materialized} never)" if r.never_materialized and r.last_materialized else ""
        )
        lag = f"{r.landing_lag_s:.1f} s" if r.landing_lag_s is not None else "-"
        checks = (
            f"{len(r.failing_checks)} failing of {r.checks}"
            if r.failing_checks
            else (f"{r.checks} ok" if r.checks else "-")
        )
        lines.append(f"{r.layer:<10} {r.assets:>6}  {fresh or 'no policy':<24} {last:<18} {lag:>8}  {checks}")  # fmt: skip
    failing = [c for r in rows for c in r.failing_checks]
    if failing:
        lines += ["", "failing checks:", *(f"  {c}" for c in failing[:12])]
        if len(failing) > 12:
            lines.append(f"  ... and {len(failing) - 12} more (the Dagster UI lists them all)")
    if last_runs:
        lines += ["", "last runs:"]
        lines += [f"  {run.status.value:<9} {run.job_name:<28} {_ago(run_time, now):<14} {run.run_id[:8]}"
                  for run, run_time in last_runs]  # fmt: skip
    return "\n".join(lines)


def last_runs(instance, limit: int = 5) -> list:
    """(run, its last update time) of the newest runs."""
    records = instance.get_run_records(limit=limit)
    return [(r.dagster_run, (r.end_time or r.start_time or r.create_timestamp.timestamp())) for r in records]
