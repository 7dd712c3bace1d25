-- Merchants as they are now.
select
    merchant_id,
    name as merchant_name,
    country as merchant_country
from {{ source('silver', 'merchants') }}
where not _cdc_deleted
