"""User sessions from bronze events (a Spark transformation, no I/O).

A session is a user's run of events with no gap longer than 30 minutes. Sessions are computed per
UTC day (the partition), so a session running past midnight is cut there: each day's partition
depends on that day's events only and can be replaced on its own.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

SESSION_GAP_MINUTES = 30


def sessions(events: DataFrame, gap_minutes: int = SESSION_GAP_MINUTES) -> DataFrame:
    """One row per (event_date, user, session): start, end, event counts, converted, abandoned cart."""
    by_user = Window.partitionBy("event_date", "user_id").orderBy("event_time", "event_id")
    gap = F.col("event_time").cast("long") - F.lag(F.col("event_time").cast("long")).over(by_user)
    numbered = events.withColumn(
        "new_session", F.when(gap.isNull() | (gap > gap_minutes * 60), 1).otherwise(0)
    )
    numbered = numbered.withColumn("session_seq", F.sum("new_session").over(by_user))

    def count(event_type: str):
        return F.sum(F.when(F.col("event_type") == event_type, 1).otherwise(0)).cast("long")

    purchase_value = F.when(F.col("event_type") == "purchase", F.col("price") * F.col("quantity")).otherwise(
        0.0
    )
    grouped = numbered.groupBy("event_date", "user_id", "session_seq").agg(
        F.min("event_time").alias("session_start"),
        F.max("event_time").alias("session_end"),
        F.count(F.lit(1)).cast("long").alias("events"),
        count("page_view").alias("page_views"),
        count("product_view").alias("product_views"),
        count("add_to_cart").alias("add_to_carts"),
        count("checkout_started").alias("checkouts"),
        count("purchase").alias("purchases"),
        F.round(F.sum(purchase_value), 2).cast("double").alias("revenue"),
        F.min_by("device", "event_time").alias("device"),
        F.min_by("country", "event_time").alias("country"),
    )
    return grouped.select(
        F.sha2(F.concat_ws("|", F.col("user_id").cast("string"), F.col("session_start").cast("string")), 256)
        .substr(1, 32)
        .alias("session_id"),
        "event_date",
        "user_id",
        "session_start",
        "session_end",
        (F.col("session_end").cast("long") - F.col("session_start").cast("long")).alias("duration_seconds"),
        "events",
        "page_views",
        "product_views",
        "add_to_carts",
        "checkouts",
        "purchases",
        "revenue",
        (F.col("purchases") > 0).alias("converted"),
        ((F.col("add_to_carts") > 0) & (F.col("purchases") == 0)).alias("abandoned_cart"),
        "device",
        "country",
    )
