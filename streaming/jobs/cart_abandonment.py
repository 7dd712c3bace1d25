"""Cart abandonment: a user's session (events with no gap over `--abandon-minutes`) that added to
the cart and did not purchase. It is written once the session is over, that is when the watermark
passes the last event plus the timeout, as in the batch `silver/sessions`' `abandoned_cart`."""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file, e.g. `flink run --python streaming/jobs/<job>.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs import common  # noqa: E402

JOB = "cart_abandonment"
RELEVANT = "TRUE"
COLUMNS = (
    "user_id BIGINT, session_start TIMESTAMP(3), last_event_at TIMESTAMP(3), abandoned_at TIMESTAMP(3), "
    "session_start_ms BIGINT, events BIGINT, cart_adds BIGINT, cart_value DOUBLE, product_ids STRING"
)


def late_condition(minutes: int) -> str:
    # Late: a session holding only this event would already be over.
    return f"event_ts + INTERVAL '{minutes}' MINUTE - INTERVAL '0.001' SECOND <= CURRENT_WATERMARK(event_ts)"


def add_arguments(p) -> None:
    p.add_argument("--abandon-minutes", type=int, default=30, help="inactivity that ends a session")


def build(t_env, args) -> list[str]:
    late = late_condition(args.abandon_minutes)
    common.kafka_sink(t_env, "cart_abandonment", COLUMNS, args.output_topic, args)
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW session_input AS
        SELECT user_id, event_type, product_id, price, quantity, event_ts FROM events
        WHERE malformed_reason IS NULL AND {common.on_time(late)}""")
    aggregate = f"""
        INSERT INTO cart_abandonment
        SELECT user_id, window_start, window_end - INTERVAL '{args.abandon_minutes}' MINUTE, window_end,
          {common.epoch_millis("window_start")},
          events, cart_adds, cart_value, product_ids
        FROM (
          SELECT user_id, window_start, window_end,
            COUNT(*) AS events,
            SUM(CASE WHEN event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS cart_adds,
            SUM(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases,
            SUM(CASE WHEN event_type = 'add_to_cart' THEN COALESCE(price, 0) * quantity ELSE 0 END) AS cart_value,
            LISTAGG(CASE WHEN event_type = 'add_to_cart' THEN CAST(product_id AS STRING) END) AS product_ids
          FROM TABLE(SESSION(TABLE session_input PARTITION BY user_id, DESCRIPTOR(event_ts),
                             INTERVAL '{args.abandon_minutes}' MINUTE))
          GROUP BY user_id, window_start, window_end
        )
        WHERE cart_adds > 0 AND purchases = 0"""
    return [aggregate, common.reject_statement(JOB, late, RELEVANT)]


if __name__ == "__main__":
    sys.exit(common.main(build, __doc__, JOB, extra_args=add_arguments))
