-- Rename and cast only: one row per event date and product, as in silver.
select
    cast(event_date as date) as event_date,
    product_id,
    merchant_id,
    cast(events as bigint) as events,
    cast(impressions as bigint) as impressions,
    cast(clicks as bigint) as clicks,
    cast(product_views as bigint) as product_views,
    cast(add_to_carts as bigint) as add_to_carts,
    cast(checkouts as bigint) as checkouts,
    cast(purchases as bigint) as purchases,
    cast(units_sold as bigint) as units_sold,
    cast(revenue as decimal(18, 2)) as revenue
from {{ source('silver', 'product_funnel_daily') }}
