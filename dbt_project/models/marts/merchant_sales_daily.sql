-- Sales per merchant and day from the orders mirrored out of PostgreSQL (all statuses count as sold).
select
    l.order_date,
    l.merchant_id,
    m.merchant_name,
    count(distinct l.order_id) as orders,
    sum(l.quantity) as units,
    sum(l.line_amount) as revenue
from {{ ref('int_order_lines') }} as l
left join {{ ref('stg_silver__merchants') }} as m on m.merchant_id = l.merchant_id
where l.merchant_id is not null
group by l.order_date, l.merchant_id, m.merchant_name
