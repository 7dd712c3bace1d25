"""Daily product funnel facts from bronze events (a Spark transformation, no I/O)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

FUNNEL_STEPS = {
    "impressions": "impression",
    "clicks": "click",
    "product_views": "product_view",
    "add_to_carts": "add_to_cart",
    "checkouts": "checkout_started",
    "purchases": "purchase",
}


def product_funnel_daily(events: DataFrame) -> DataFrame:
    """One row per (event_date, product_id): funnel step counts, units and revenue.

    Events without a product (page views, searches, checkouts) gather under product_id NULL,
    so `events` summed over a day equals that day's bronze events.
    """
    counts = [
        F.sum(F.when(F.col("event_type") == step, 1).otherwise(0)).cast("long").alias(name)
        for name, step in FUNNEL_STEPS.items()
    ]
    is_purchase = F.col("event_type") == "purchase"
    return events.groupBy("event_date", "product_id").agg(
        F.max("merchant_id").alias("merchant_id"),
        F.count(F.lit(1)).cast("long").alias("events"),
        *counts,
        F.sum(F.when(is_purchase, F.col("quantity")).otherwise(0)).cast("long").alias("units_sold"),
        F.round(F.sum(F.when(is_purchase, F.col("price") * F.col("quantity")).otherwise(0.0)), 2)
        .cast("double")
        .alias("revenue"),
        F.countDistinct("user_id").cast("long").alias("distinct_users"),
    )
