-- Order lines with their order, product and merchant: the basis of sales marts.
select
    o.order_id,
    o.customer_id,
    o.order_date,
    o.created_at,
    o.status,
    i.line_no,
    i.product_id,
    p.merchant_id,
    i.quantity,
    i.unit_price,
    i.quantity * i.unit_price as line_amount
from {{ ref('stg_silver__orders') }} as o
join {{ ref('stg_silver__order_items') }} as i on i.order_id = o.order_id
left join {{ ref('stg_silver__products') }} as p on p.product_id = i.product_id
