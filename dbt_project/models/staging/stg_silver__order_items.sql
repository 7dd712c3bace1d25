-- Order lines as they are now in PostgreSQL, typed.
select
    cast(order_id as bigint) as order_id,
    cast(line_no as integer) as line_no,
    cast(product_id as bigint) as product_id,
    cast(quantity as integer) as quantity,
    cast(unit_price as decimal(12, 2)) as unit_price
from {{ source('silver', 'order_items') }}
where not _cdc_deleted
