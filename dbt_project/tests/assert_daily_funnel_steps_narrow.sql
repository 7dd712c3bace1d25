-- A funnel narrows: no day has more clicks than impressions or more purchases than add-to-carts.
-- Returns the offending days (a passing test returns no rows).
select event_date, impressions, clicks, add_to_carts, purchases
from {{ ref('daily_funnel') }}
where clicks > impressions or purchases > add_to_carts
