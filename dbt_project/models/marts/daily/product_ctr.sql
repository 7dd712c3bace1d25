-- Click-through rate per product and day: clicks over impressions.
select
    f.event_date,
    f.product_id,
    p.title as product_title,
    p.category as product_category,
    sum(f.impressions) as impressions,
    sum(f.clicks) as clicks,
    case when sum(f.impressions) > 0 then round(cast(sum(f.clicks) as double) / sum(f.impressions), 4) end
        as click_through_rate
from {{ ref('stg_silver__product_funnel_daily') }} as f
left join {{ ref('stg_silver__products') }} as p on p.product_id = f.product_id
where f.product_id is not null and {{ partition_window('f.event_date') }}
group by f.event_date, f.product_id, p.title, p.category
