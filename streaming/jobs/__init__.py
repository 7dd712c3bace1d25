"""PyFlink stream jobs over the clickstream (Flink SQL through the Table API).

Each job module (`product_ctr`, `cart_abandonment`, `suspicious_purchases`) runs on a local
mini-cluster with `python -m jobs.<job> ...` from `streaming/`, or unchanged on a Flink cluster
with `flink run --python jobs/<job>.py ...` (same arguments). `python -m jobs.<job> --help` lists
them. The lakehouse starts and watches them from Dagster (`lakehouse/realtime/flink.py`).
"""
