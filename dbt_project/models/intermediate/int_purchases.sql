-- Every purchase event with its amount (a view: the marts filter their partition window).
select
    event_id,
    event_date,
    event_time,
    user_id,
    product_id,
    merchant_id,
    quantity,
    purchase_amount
from {{ ref('stg_silver__enriched_events') }}
where event_type = 'purchase'
