-- One row per clickstream event, with its product and merchant from the CDC mirror.
select
    event_id,
    event_type,
    event_time,
    cast(event_date as date) as event_date,
    user_id,
    product_id,
    merchant_id,
    quantity,
    cast(purchase_amount as decimal(18, 2)) as purchase_amount,
    device,
    country,
    product_title,
    product_category,
    merchant_name
from {{ source('silver', 'enriched_events') }}
