-- The product catalogue as it is now, typed.
select
    cast(product_id as bigint) as product_id,
    cast(merchant_id as bigint) as merchant_id,
    title,
    category,
    cast(price as decimal(12, 2)) as price
from {{ source('silver', 'products') }}
where not _cdc_deleted
