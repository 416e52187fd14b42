-- Issued certificates of present users: the latest issue per user and title.
select user_id, title,
       max(completion_date) as issued_on,
       max(end_date) as expires_on
from {{ source('pluvo', 'portfolio_items') }}
where _deleted_at is null and related_object_type = 'CERTIFICATE'
group by all
