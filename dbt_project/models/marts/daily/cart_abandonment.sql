-- Cart abandonment per day: sessions that added to cart, and how many of them bought nothing.
select
    event_date,
    count_if(add_to_carts > 0) as sessions_with_cart,
    count_if(abandoned_cart) as abandoned_sessions,
    case when count_if(add_to_carts > 0) > 0
        then round(cast(count_if(abandoned_cart) as double) / count_if(add_to_carts > 0), 4) end
        as abandonment_rate,
    coalesce(sum(case when abandoned_cart then add_to_carts end), 0) as abandoned_cart_adds
from {{ ref('stg_silver__sessions') }}
where {{ partition_window('event_date') }}
group by event_date
