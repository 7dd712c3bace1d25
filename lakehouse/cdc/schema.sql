-- The marketplace's OLTP tables (the source captured by Debezium), in the schema LAKEHOUSE_CDC_SCHEMA
-- names (created and put first on the search_path before this runs). Idempotent.
-- REPLICA IDENTITY FULL makes updates and deletes carry the whole before-image.

CREATE TABLE IF NOT EXISTS customers (
    customer_id   bigint PRIMARY KEY,
    email         text NOT NULL,
    phone         text,
    full_name     text NOT NULL,
    country       text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS merchants (
    merchant_id   bigint PRIMARY KEY,
    name          text NOT NULL,
    country       text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS products (
    product_id    bigint PRIMARY KEY,
    merchant_id   bigint NOT NULL REFERENCES merchants (merchant_id),
    title         text NOT NULL,
    category      text NOT NULL,
    price         numeric(12, 2) NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders (
    order_id      bigint PRIMARY KEY,
    customer_id   bigint NOT NULL REFERENCES customers (customer_id),
    status        text NOT NULL,
    total         numeric(12, 2) NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS order_items (
    order_id      bigint NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE ON UPDATE CASCADE,
    line_no       int NOT NULL,
    product_id    bigint NOT NULL REFERENCES products (product_id),
    quantity      int NOT NULL,
    unit_price    numeric(12, 2) NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE IF NOT EXISTS payments (
    payment_id    bigint PRIMARY KEY,
    order_id      bigint NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE ON UPDATE CASCADE,
    method        text NOT NULL,
    amount        numeric(12, 2) NOT NULL,
    status        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- An order is placed with one merchant (a marketplace splits a basket per merchant); added after
-- the first release, so older orders have none.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS merchant_id bigint REFERENCES merchants (merchant_id);

ALTER TABLE customers REPLICA IDENTITY FULL;
ALTER TABLE merchants REPLICA IDENTITY FULL;
ALTER TABLE products REPLICA IDENTITY FULL;
ALTER TABLE orders REPLICA IDENTITY FULL;
ALTER TABLE order_items REPLICA IDENTITY FULL;
ALTER TABLE payments REPLICA IDENTITY FULL;
