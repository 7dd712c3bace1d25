-- Order lines as they are now in PostgreSQL (silver carries the source's types).
select
    order_id,
    line_no,
    product_id,
    quantity,
    unit_price
from {{ source('silver', 'order_items') }}
where not _cdc_deleted
