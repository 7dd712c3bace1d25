-- Lifetime value per customer from the mirrored orders: orders, revenue, first and last order.
select
    c.customer_id,
    c.country,
    c.signed_up_at,
    count(o.order_id) as orders,
    coalesce(sum(o.total), 0) as lifetime_value,
    case when count(o.order_id) > 0 then cast(sum(o.total) / count(o.order_id) as decimal(12, 2)) end
        as average_order_value,
    min(o.created_at) as first_order_at,
    max(o.created_at) as last_order_at
from {{ ref('stg_silver__customers') }} as c
left join {{ ref('stg_silver__orders') }} as o on o.customer_id = c.customer_id
group by c.customer_id, c.country, c.signed_up_at
