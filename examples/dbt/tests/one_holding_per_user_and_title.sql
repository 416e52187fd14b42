-- A user holds each certificate title once in stg_certificates_held (rows returned = failures).
select user_id, title, count(*) as holdings
from {{ ref('stg_certificates_held') }}
group by all
having count(*) > 1
