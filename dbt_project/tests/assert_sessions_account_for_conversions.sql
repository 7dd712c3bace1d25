-- Business rule: a day cannot have more converted sessions than sessions, nor more purchases than
-- converted sessions can hold (each converted session has at least one purchase).
-- Returns the offending days (a passing test returns no rows).
select event_date, sessions, converted_sessions, purchases
from {{ ref('daily_kpis') }}
where converted_sessions > sessions or purchases < converted_sessions
