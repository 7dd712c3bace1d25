-- Management's daily funnel: traffic, click-through and conversion per UTC day.
with daily as (
    select
        event_date,
        sum(events) as events,
        sum(impressions) as impressions,
        sum(clicks) as clicks,
        sum(product_views) as product_views,
        sum(add_to_carts) as add_to_carts,
        sum(checkouts) as checkouts,
        sum(purchases) as purchases,
        sum(units_sold) as units_sold,
        sum(revenue) as revenue
    from {{ ref('stg_silver__product_funnel_daily') }}
    where {{ partition_window('event_date') }}
    group by event_date
)

select
    event_date,
    events,
    impressions,
    clicks,
    product_views,
    add_to_carts,
    checkouts,
    purchases,
    units_sold,
    revenue,
    case when impressions > 0 then round(cast(clicks as double) / impressions, 4) end as click_through_rate,
    case when add_to_carts > 0 then round(cast(purchases as double) / add_to_carts, 4) end as cart_to_purchase_rate
from daily
