-- Merchants as they are now.
select
    cast(merchant_id as bigint) as merchant_id,
    name as merchant_name,
    country as merchant_country
from {{ source('silver', 'merchants') }}
where not _cdc_deleted
