-- Customers as they are now, without PII: no email, phone or name reaches gold. Silver is typed
-- from PostgreSQL's own column types, so nothing is cast here.
select
    customer_id,
    country,
    created_at as signed_up_at
from {{ source('silver', 'customers') }}
where not _cdc_deleted
