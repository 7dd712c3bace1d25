"""Click-through rate per product and minute: impressions and clicks in one-minute event-time
windows. A window is written once, when the watermark passes its end."""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file, e.g. `flink run --python streaming/jobs/<job>.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs import common  # noqa: E402

JOB = "product_ctr"
# Late: the watermark has already passed the end of the event's minute.
LATE = (
    "FLOOR(event_ts TO MINUTE) + INTERVAL '1' MINUTE - INTERVAL '0.001' SECOND <= CURRENT_WATERMARK(event_ts)"
)
RELEVANT = "event_type IN ('impression', 'click') AND product_id IS NOT NULL"
COLUMNS = (
    "product_id BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), window_start_ms BIGINT, "
    "impressions BIGINT, clicks BIGINT, ctr DOUBLE"
)


def build(t_env, args) -> list[str]:
    common.kafka_sink(t_env, "product_ctr", COLUMNS, args.output_topic, args)
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW ctr_input AS
        SELECT product_id, event_type, event_ts FROM events
        WHERE malformed_reason IS NULL AND {RELEVANT} AND {common.on_time(LATE)}""")
    aggregate = f"""
        INSERT INTO product_ctr
        SELECT product_id, window_start, window_end,
          {common.epoch_millis("window_start")},
          impressions, clicks,
          CASE WHEN impressions > 0 THEN CAST(clicks AS DOUBLE) / impressions END
        FROM (
          SELECT product_id, window_start, window_end,
            SUM(CASE WHEN event_type = 'impression' THEN 1 ELSE 0 END) AS impressions,
            SUM(CASE WHEN event_type = 'click' THEN 1 ELSE 0 END) AS clicks
          FROM TABLE(TUMBLE(TABLE ctr_input, DESCRIPTOR(event_ts), INTERVAL '1' MINUTE))
          GROUP BY product_id, window_start, window_end
        )"""
    return [aggregate, common.reject_statement(JOB, LATE, RELEVANT)]


if __name__ == "__main__":
    sys.exit(common.main(build, __doc__, JOB))
