"""Benchmark: Superset's dashboards, chart by chart against the same SQL sent straight to the database.

On the stack's own namespace (run `make demo` first, so gold and Pinot hold data):
1. The bundle is built and both dashboards imported (the bi/* assets, in process); a short PostgreSQL
   workload gives the live dashboard orders of the last 15 minutes, and the benchmark waits for Pinot.
2. For each chart: `GET /api/v1/chart/{id}/data/` (the saved query_context, as a dashboard asks; Superset's
   result cache is off) and the SQL Superset generates for it sent straight to Trino (the Python client)
   or Pinot (the broker's HTTP API), interleaved, `--rounds` warm rounds after `--warmup` ones. A chart
   whose row count differs between the two paths fails the benchmark instead of printing a rate.
3. Both dashboards opened in headless Chromium (logged in), `--renders` times each: the time from
   navigation until every chart rendered and none is loading.
Figures line: `superset_p50_ms=.. superset_p95_ms=.. direct_p50_ms=.. direct_p95_ms=..
superset_overhead_ratio=..` (the ratio of the p50s), then `management_render_s=.. merchant_render_s=..`
(p50 of the renders); then `leftover_processes=0` (_cleanup.py).
"""

import argparse
import json
import statistics
import sys
import time

from _cleanup import Teardown
from _stats import percentile


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20, help="measured requests per chart and path")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured requests per chart and path first")
    parser.add_argument("--renders", type=int, default=3, help="times each dashboard is opened in Chromium")
    args = parser.parse_args()
    from lakehouse.settings import get_settings

    s = get_settings()
    with Teardown(None, home=s.home):
        return benchmark(args, s)


def import_dashboards(s) -> None:
    import dagster as dg

    from lakehouse.bi.assets import dashboard_assets, superset_bundle
    from lakehouse.resources import build_resources

    print("importing the bundle (bi/superset_bundle, bi/*) ...", flush=True)
    result = dg.materialize(
        [superset_bundle, *dashboard_assets], resources=build_resources(s), raise_on_error=False
    )
    if not result.success:
        raise SystemExit("bench-bi: the import failed; see the errors above (is the stack up? `make up`)")


def fresh_orders(s) -> None:
    from lakehouse.cdc.workload import run_workload
    from lakehouse.realtime.pinot import PinotClient, PinotRejected

    print("placing orders (60 transactions) so the live dashboard has a last 15 minutes ...", flush=True)
    run_workload(s, 60, rate=30, progress=False)
    pinot, table = PinotClient.from_settings(s), s.pinot_table("merchant_orders")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if pinot.count(table, "WHERE created_at > now() - 300000") > 0:
                return
        except PinotRejected as exc:
            raise SystemExit(
                f"bench-bi: Pinot table {table} cannot be queried ({exc}); run `make demo` first"
            ) from exc
        time.sleep(1)
    raise SystemExit(f"bench-bi: no recent order reached Pinot table {table} within 120 s")


def benchmark(args, s) -> int:
    from lakehouse.bi import bundle
    from lakehouse.bi.browser import render_dashboards
    from lakehouse.bi.definitions import load_definitions
    from lakehouse.bi.superset_api import SupersetClient
    from lakehouse.realtime.pinot import PinotClient
    from lakehouse.resources import TrinoResource
    from lakehouse.warehouse.assets import dbt_project

    import_dashboards(s)
    fresh_orders(s)
    client = SupersetClient(s.superset_url, s.superset_admin_user, s.superset_admin_password)
    trino, pinot = TrinoResource.from_settings(s), PinotClient.from_settings(s)
    defs = load_definitions(json.loads(dbt_project.manifest_path.read_text()))
    boards = {key: client.dashboard(bundle.slug(s, d)) for key, d in defs.dashboards.items()}
    via, direct, table = [], [], []
    for slug, board in boards.items():
        engines = {c.name: defs.datasets[c.dataset].engine for c in defs.dashboards[slug].charts}
        for chart in client.dashboard_charts(board["id"]):
            run = pinot.query if engines[chart["slice_name"]] == "pinot" else trino.query
            sql = client.chart_query(chart["id"]).strip().rstrip(";")
            times = {"superset": [], "direct": []}
            for i in range(args.warmup + args.rounds):
                t0 = time.perf_counter()
                rows_superset = client.chart_data(chart["id"])["result"][0]["rowcount"]
                t1 = time.perf_counter()
                rows_direct = len(run(sql))
                t2 = time.perf_counter()
                if rows_superset != rows_direct:
                    print(f"bench-bi: FAILED, {chart['slice_name']}: Superset returned {rows_superset} rows, the "
                          f"same SQL straight to the database {rows_direct}", file=sys.stderr)  # fmt: skip
                    return 1
                if i >= args.warmup:
                    times["superset"].append((t1 - t0) * 1000)
                    times["direct"].append((t2 - t1) * 1000)
            via += times["superset"]
            direct += times["direct"]
            table.append((slug, chart["slice_name"], rows_superset, statistics.median(times["superset"]),
                          percentile(times["superset"], 0.95), statistics.median(times["direct"]),
                          percentile(times["direct"], 0.95)))  # fmt: skip
    print(
        f"\n{'dashboard':<17} {'chart':<38} {'rows':>5} {'superset p50/p95 ms':>20} {'direct p50/p95 ms':>18}"
    )
    for slug, name, rows, sp50, sp95, dp50, dp95 in table:
        print(f"{slug:<17} {name:<38} {rows:>5} {sp50:>10.1f} {sp95:>9.1f} {dp50:>9.1f} {dp95:>8.1f}")
    renders: dict[str, list[float]] = {slug: [] for slug in boards}
    urls = [f"{s.superset_url}{b['url']}" for b in boards.values()]
    for _ in range(args.renders):
        for slug, result in zip(boards, render_dashboards(s, urls, s.home / "bench-artifacts"), strict=True):
            if result.errors or result.rendered != result.charts:
                print(f"bench-bi: FAILED, {slug}: {result.rendered}/{result.charts} charts rendered, errors "
                      f"{result.errors}", file=sys.stderr)  # fmt: skip
                return 1
            renders[slug].append(result.seconds)
    sp50, dp50 = statistics.median(via), statistics.median(direct)
    print(f"\nsuperset_p50_ms={sp50:.1f} superset_p95_ms={percentile(via, 0.95):.1f} direct_p50_ms={dp50:.1f} "
          f"direct_p95_ms={percentile(direct, 0.95):.1f} superset_overhead_ratio={sp50 / dp50:.2f}")  # fmt: skip
    print(f"management_render_s={statistics.median(renders['management_daily']):.2f} "
          f"merchant_render_s={statistics.median(renders['merchant_live']):.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
