-- The product catalogue as it is now (silver carries the source's types).
select
    product_id,
    merchant_id,
    title,
    category,
    price
from {{ source('silver', 'products') }}
where not _cdc_deleted
