-- The marketplace's OLTP schema (the source captured by Debezium). Idempotent.
-- REPLICA IDENTITY FULL makes updates and deletes carry the whole before-image.
CREATE SCHEMA IF NOT EXISTS marketplace;

CREATE TABLE IF NOT EXISTS marketplace.customers (
    customer_id   bigint PRIMARY KEY,
    email         text NOT NULL,
    phone         text,
    full_name     text NOT NULL,
    country       text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS marketplace.merchants (
    merchant_id   bigint PRIMARY KEY,
    name          text NOT NULL,
    country       text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS marketplace.products (
    product_id    bigint PRIMARY KEY,
    merchant_id   bigint NOT NULL REFERENCES marketplace.merchants (merchant_id),
    title         text NOT NULL,
    category      text NOT NULL,
    price         numeric(12, 2) NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS marketplace.orders (
    order_id      bigint PRIMARY KEY,
    customer_id   bigint NOT NULL REFERENCES marketplace.customers (customer_id),
    status        text NOT NULL,
    total         numeric(12, 2) NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS marketplace.order_items (
    order_id      bigint NOT NULL REFERENCES marketplace.orders (order_id) ON DELETE CASCADE ON UPDATE CASCADE,
    line_no       int NOT NULL,
    product_id    bigint NOT NULL REFERENCES marketplace.products (product_id),
    quantity      int NOT NULL,
    unit_price    numeric(12, 2) NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE IF NOT EXISTS marketplace.payments (
    payment_id    bigint PRIMARY KEY,
    order_id      bigint NOT NULL REFERENCES marketplace.orders (order_id) ON DELETE CASCADE ON UPDATE CASCADE,
    method        text NOT NULL,
    amount        numeric(12, 2) NOT NULL,
    status        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- An order is placed with one merchant (a marketplace splits a basket per merchant); added after
-- the first release, so older orders have none.
ALTER TABLE marketplace.orders ADD COLUMN IF NOT EXISTS merchant_id bigint REFERENCES marketplace.merchants (merchant_id);

ALTER TABLE marketplace.customers REPLICA IDENTITY FULL;
ALTER TABLE marketplace.merchants REPLICA IDENTITY FULL;
ALTER TABLE marketplace.products REPLICA IDENTITY FULL;
ALTER TABLE marketplace.orders REPLICA IDENTITY FULL;
ALTER TABLE marketplace.order_items REPLICA IDENTITY FULL;
ALTER TABLE marketplace.payments REPLICA IDENTITY FULL;
