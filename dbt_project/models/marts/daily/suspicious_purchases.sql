-- Purchases worth a fraud analyst's look: far above the buyer's usual amount (over 5 times the
-- mean of their other purchases in the window and over 200), or the buyer's third or later
-- purchase within 10 minutes.
with purchases as (
    select
        *,
        avg(purchase_amount) over (partition by user_id) as user_mean,
        count(*) over (partition by user_id) as user_purchases,
        count(*) over (
            partition by user_id order by event_time
            range between interval '10' minute preceding and current row
        ) as purchases_in_10_minutes
    from {{ ref('int_purchases') }}
    where {{ partition_window('event_date') }}
),

flagged as (
    select
        *,
        -- The mean of the user's other purchases: leave this one out.
        case when user_purchases > 1
            then (user_mean * user_purchases - purchase_amount) / (user_purchases - 1) end as usual_amount
    from purchases
)

select
    event_date,
    event_id,
    event_time,
    user_id,
    product_id,
    merchant_id,
    purchase_amount,
    cast(usual_amount as decimal(18, 2)) as usual_amount,
    purchases_in_10_minutes,
    case
        when usual_amount is not null and purchase_amount > 5 * usual_amount and purchase_amount > 200
            then 'amount_far_above_usual'
        else 'burst_of_purchases'
    end as reason
from flagged
where (usual_amount is not null and purchase_amount > 5 * usual_amount and purchase_amount > 200)
    or purchases_in_10_minutes >= 3
