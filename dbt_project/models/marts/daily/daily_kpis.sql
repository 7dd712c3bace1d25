-- The morning KPIs: active users, sessions, conversion and revenue per UTC day.
with sessions as (
    select
        event_date,
        count(*) as sessions,
        count_if(converted) as converted_sessions,
        count(distinct user_id) as active_users,
        sum(revenue) as revenue,
        sum(purchases) as purchases
    from {{ ref('stg_silver__sessions') }}
    where {{ partition_window('event_date') }}
    group by event_date
)

select
    event_date,
    active_users,
    sessions,
    converted_sessions,
    round(cast(converted_sessions as double) / sessions, 4) as conversion_rate,
    purchases,
    cast(revenue as decimal(18, 2)) as revenue,
    case when converted_sessions > 0 then cast(revenue / converted_sessions as decimal(18, 2)) end
        as revenue_per_converted_session
from sessions
