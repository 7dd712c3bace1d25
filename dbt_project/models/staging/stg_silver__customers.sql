-- Customers as they are now, without PII: no email, phone or name reaches gold.
select
    cast(customer_id as bigint) as customer_id,
    country,
    from_iso8601_timestamp(created_at) as signed_up_at
from {{ source('silver', 'customers') }}
where not _cdc_deleted
