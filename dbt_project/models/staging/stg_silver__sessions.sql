-- One row per session, as in silver, typed for the marts.
select
    session_id,
    cast(event_date as date) as event_date,
    user_id,
    session_start,
    session_end,
    duration_seconds,
    events,
    page_views,
    product_views,
    add_to_carts,
    checkouts,
    purchases,
    cast(revenue as decimal(18, 2)) as revenue,
    converted,
    abandoned_cart,
    device,
    country
from {{ source('silver', 'sessions') }}
