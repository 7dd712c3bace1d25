"""Suspicious purchases, flagged as they happen, for two reasons:

- `amount_spike`: the purchase (price x quantity) is more than `--amount-factor` times the mean of
  the user's previous purchases (up to 20 of them, at least 3);
- `burst`: it is the `--burst-count`-th or later purchase of the user within `--burst-minutes`.

A purchase is judged when the watermark passes it, in event-time order per user."""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file, e.g. `flink run --python streaming/jobs/<job>.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs import common  # noqa: E402

JOB = "suspicious_purchases"
LATE = "event_ts <= CURRENT_WATERMARK(event_ts)"
RELEVANT = "event_type = 'purchase'"
HISTORY = 20  # previous purchases that make a user's usual amount
MIN_HISTORY = 3
COLUMNS = (
    "event_id STRING, user_id BIGINT, product_id BIGINT, merchant_id BIGINT, amount DOUBLE, "
    "event_time TIMESTAMP(3), event_time_ms BIGINT, reason STRING, usual_amount DOUBLE, purchases_in_window BIGINT"
)


def add_arguments(p) -> None:
    p.add_argument(
        "--amount-factor", type=float, default=5.0, help="times the usual amount that is suspicious"
    )
    p.add_argument(
        "--burst-count", type=int, default=5, help="purchases within the burst window that are suspicious"
    )
    p.add_argument("--burst-minutes", type=int, default=10, help="the burst window")


def build(t_env, args) -> list[str]:
    common.kafka_sink(t_env, "purchase_alerts", COLUMNS, args.output_topic, args)
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW purchases AS
        SELECT event_id, user_id, product_id, merchant_id, COALESCE(price, 0) * quantity AS amount, event_ts
        FROM events
        WHERE malformed_reason IS NULL AND {RELEVANT} AND {common.on_time(LATE)}""")
    millis = common.epoch_millis("event_ts")
    spikes = f"""
        SELECT event_id, user_id, product_id, merchant_id, amount, event_ts, {millis},
          'amount_spike', (total - amount) / (n - 1), CAST(NULL AS BIGINT)
        FROM (
          SELECT *,
            SUM(amount) OVER w AS total,
            COUNT(*) OVER w AS n
          FROM purchases
          WINDOW w AS (PARTITION BY user_id ORDER BY event_ts ROWS BETWEEN {HISTORY} PRECEDING AND CURRENT ROW)
        )
        WHERE n - 1 >= {MIN_HISTORY} AND amount > {args.amount_factor} * (total - amount) / (n - 1)"""
    bursts = f"""
        SELECT event_id, user_id, product_id, merchant_id, amount, event_ts, {millis},
          'burst', CAST(NULL AS DOUBLE), n
        FROM (
          SELECT *,
            COUNT(*) OVER (PARTITION BY user_id ORDER BY event_ts
                           RANGE BETWEEN INTERVAL '{args.burst_minutes}' MINUTE PRECEDING AND CURRENT ROW) AS n
          FROM purchases
        )
        WHERE n >= {args.burst_count}"""
    # One INSERT for both reasons: each Kafka sink needs transactional ids of its own.
    return [
        f"INSERT INTO purchase_alerts {spikes} UNION ALL {bursts}",
        common.reject_statement(JOB, LATE, RELEVANT),
    ]


if __name__ == "__main__":
    sys.exit(common.main(build, __doc__, JOB, extra_args=add_arguments))
