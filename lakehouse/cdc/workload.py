"""OLTP workload on the marketplace database: inserts, updates and deletes, including primary-key
changes and multi-table transactions, at a configurable rate. Prints progress."""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import psycopg

from lakehouse.settings import LakehouseSettings

CATEGORIES = ("shoes", "outdoor", "kitchen", "books", "audio", "furniture", "toys", "beauty")
COUNTRIES = ("DE", "FR", "GB", "US", "NL", "ES", "IT", "PL", "SE", "BR")
STATUSES = ("placed", "paid", "shipped", "delivered")


@dataclass
class WorkloadResult:
    operations: Counter = field(default_factory=Counter)
    transactions: int = 0


def connect(s: LakehouseSettings) -> psycopg.Connection:
    """A connection to the source database whose unqualified names are those of LAKEHOUSE_CDC_SCHEMA."""
    return psycopg.connect(host=s.postgres_host, port=s.postgres_port, user=s.postgres_user,
                           password=s.postgres_password, dbname=s.postgres_db,
                           options=f"-c search_path={_search_path(s.cdc_schema)}")  # fmt: skip


def _search_path(schema: str) -> str:
    """The schema as a search_path value inside a libpq `options` string (quoted, spaces escaped)."""
    quoted = '"' + schema.replace('"', '""') + '"'
    return quoted.replace("\\", "\\\\").replace(" ", "\\ ")


def _next_id(cur, table: str, column: str) -> int:
    return cur.execute(f"SELECT coalesce(max({column}), 0) + 1 FROM {table}").fetchone()[0]


def _pick(cur, table: str, column: str, rng: random.Random):
    row = cur.execute(
        f"SELECT {column} FROM {table} ORDER BY {column} OFFSET %s LIMIT 1",
        (rng.randint(0, max(0, cur.execute(f"SELECT count(*) FROM {table}").fetchone()[0] - 1)),),
    ).fetchone()
    return row[0] if row else None


def seed(conn: psycopg.Connection, rng: random.Random, merchants=20, customers=200, products=200) -> None:
    """The first merchants, customers and products, once."""
    with conn.cursor() as cur:
        if cur.execute("SELECT count(*) FROM merchants").fetchone()[0]:
            return
        for m in range(1, merchants + 1):
            cur.execute("INSERT INTO merchants (merchant_id, name, country) VALUES (%s, %s, %s)",
                        (m, f"merchant {m}", rng.choice(COUNTRIES)))  # fmt: skip
        for c in range(1, customers + 1):
            cur.execute(
                "INSERT INTO customers (customer_id, email, phone, full_name, country) "
                "VALUES (%s, %s, %s, %s, %s)",
                (c, f"user{c}@example.com", f"+49{rng.randint(10**9, 10**10 - 1)}", f"Customer {c}",
                 rng.choice(COUNTRIES)),
            )  # fmt: skip
        for p in range(1, products + 1):
            cur.execute(
                "INSERT INTO products (product_id, merchant_id, title, category, price) "
                "VALUES (%s, %s, %s, %s, %s)",
                (p, rng.randint(1, merchants), f"product {p}", rng.choice(CATEGORIES),
                 round(rng.lognormvariate(3.2, 0.9), 2)),
            )  # fmt: skip
    conn.commit()


def _new_order(cur, rng) -> str:
    """One transaction over three tables: an order, its lines and its payment."""
    order_id = _next_id(cur, "orders", "order_id")
    customer = _pick(cur, "customers", "customer_id", rng)
    merchant, product, price = cur.execute(
        "SELECT merchant_id, product_id, price FROM products ORDER BY random() LIMIT 1"
    ).fetchone()
    lines = [(1, product, rng.randint(1, 3), price)]
    for line_no in range(2, rng.randint(1, 3) + 1):  # more lines from the same merchant
        product, price = cur.execute(
            "SELECT product_id, price FROM products WHERE merchant_id = %s ORDER BY random() LIMIT 1",
            (merchant,),
        ).fetchone()
        lines.append((line_no, product, rng.randint(1, 3), price))
    total = sum(q * p for _, _, q, p in lines)
    cur.execute(
        "INSERT INTO orders (order_id, customer_id, merchant_id, status, total) "
        "VALUES (%s, %s, %s, 'placed', %s)", (order_id, customer, merchant, total),
    )  # fmt: skip
    for line_no, product, qty, price in lines:
        cur.execute(
            "INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price) "
            "VALUES (%s, %s, %s, %s, %s)", (order_id, line_no, product, qty, price),
        )  # fmt: skip
    cur.execute(
        "INSERT INTO payments (payment_id, order_id, method, amount, status) VALUES (%s, %s, %s, %s, %s)",
        (_next_id(cur, "payments", "payment_id"), order_id, rng.choice(("card", "paypal", "invoice")), total, "authorized"),
    )  # fmt: skip
    return "new_order"


def _advance_order(cur, rng) -> str:
    order = _pick(cur, "orders", "order_id", rng)
    if order is None:
        return _new_order(cur, rng)
    cur.execute(
        "UPDATE orders SET status = CASE status WHEN 'placed' THEN 'paid' WHEN 'paid' THEN 'shipped' "
        "ELSE 'delivered' END, updated_at = now() WHERE order_id = %s", (order,),
    )  # fmt: skip
    return "update_order"


def _reprice(cur, rng) -> str:
    product = _pick(cur, "products", "product_id", rng)
    cur.execute("UPDATE products SET price = round(price * %s::numeric, 2), updated_at = now() WHERE product_id = %s",
                (round(rng.uniform(0.8, 1.25), 3), product))  # fmt: skip
    return "update_price"


def _edit_customer(cur, rng) -> str:
    customer = _pick(cur, "customers", "customer_id", rng)
    cur.execute("UPDATE customers SET phone = %s, updated_at = now() WHERE customer_id = %s",
                (f"+33{rng.randint(10**8, 10**9 - 1)}", customer))  # fmt: skip
    return "update_customer"


def _new_customer(cur, rng) -> str:
    cid = _next_id(cur, "customers", "customer_id")
    cur.execute("INSERT INTO customers (customer_id, email, phone, full_name, country) "
                "VALUES (%s, %s, NULL, %s, %s)", (cid, f"user{cid}@example.com", f"Customer {cid}",
                                                   rng.choice(COUNTRIES)))  # fmt: skip
    return "new_customer"


def _cancel_order(cur, rng) -> str:
    order = _pick(cur, "orders", "order_id", rng)
    if order is None:
        return _new_order(cur, rng)
    cur.execute("DELETE FROM orders WHERE order_id = %s", (order,))  # cascades to lines and payments
    return "delete_order"


def _renumber_order(cur, rng) -> str:
    """A primary-key change: the order moves to a new id (lines and payments follow by cascade)."""
    order = _pick(cur, "orders", "order_id", rng)
    if order is None:
        return _new_order(cur, rng)
    cur.execute("UPDATE orders SET order_id = %s WHERE order_id = %s",
                (_next_id(cur, "orders", "order_id") + 1000, order))  # fmt: skip
    return "change_order_key"


OPERATIONS = [(_new_order, 30), (_advance_order, 25), (_reprice, 15), (_edit_customer, 10), (_new_customer, 8),
              (_cancel_order, 7), (_renumber_order, 5)]  # fmt: skip


def run_workload(s: LakehouseSettings, operations: int, rate: float = 0.0, seed_value: int | None = None,
                 progress: bool = True) -> WorkloadResult:  # fmt: skip
    rng = random.Random(seed_value)
    result = WorkloadResult()
    funcs, weights = zip(*OPERATIONS, strict=True)
    started = time.monotonic()
    step = max(1, operations // 10)
    with connect(s) as conn:
        seed(conn, rng)
        for i in range(1, operations + 1):
            with conn.cursor() as cur:
                result.operations[rng.choices(funcs, weights)[0](cur, rng)] += 1
            conn.commit()
            result.transactions += 1
            if rate > 0:
                ahead = i / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if progress and i % step == 0:
                print(f"  {i}/{operations} transactions", file=sys.stderr)
    return result
