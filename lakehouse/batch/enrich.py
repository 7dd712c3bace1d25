"""Bronze events joined with the CDC current state of products and merchants (a Spark
transformation, no I/O). Products or merchants not (yet) mirrored leave their columns NULL, so
every event is kept: the enriched table has exactly the day's bronze events."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

PRODUCT_COLUMNS = StructType([StructField("product_id", StringType()), StructField("title", StringType()),
                              StructField("category", StringType()), StructField("price", StringType())])  # fmt: skip
MERCHANT_COLUMNS = StructType([StructField("merchant_id", StringType()), StructField("name", StringType()),
                               StructField("country", StringType())])  # fmt: skip


def current(rows: DataFrame) -> DataFrame:
    """The current state of a CDC silver table: rows not marked deleted."""
    return rows.where(~F.col("_cdc_deleted")) if "_cdc_deleted" in rows.columns else rows


def enriched_events(events: DataFrame, products: DataFrame, merchants: DataFrame) -> DataFrame:
    p = current(products).select(
        F.col("product_id").cast("long").alias("p_product_id"),
        F.col("title").alias("product_title"),
        F.col("category").alias("product_category"),
        F.col("price").cast("decimal(12,2)").alias("catalogue_price"),
    )
    m = current(merchants).select(
        F.col("merchant_id").cast("long").alias("m_merchant_id"),
        F.col("name").alias("merchant_name"),
        F.col("country").alias("merchant_country"),
    )
    joined = events.join(p, events.product_id == p.p_product_id, "left").join(
        m, events.merchant_id == m.m_merchant_id, "left"
    )
    amount = F.when(F.col("event_type") == "purchase", F.round(F.col("price") * F.col("quantity"), 2))
    return joined.select(
        "event_id", "event_type", "event_time", "event_date", "user_id", "session_hint", "product_id",
        "merchant_id", "price", "quantity", amount.cast("double").alias("purchase_amount"), "device", "country",
        "product_title", "product_category", "catalogue_price", "merchant_name", "merchant_country",
    )  # fmt: skip
