-- Issued certificates of present users, one row per user and title, counted as
-- compliance_roster (sql/views/compliance_roster.sql) counts them: among the issues of one
-- title, the one with the latest expiry holds, and an issue without an expiry date never
-- expires, so it holds over any dated one (expires_on is then NULL).
select user_id, title,
       arg_max(completion_date, coalesce(end_date, date '9999-12-31')) as issued_on,
       nullif(max(coalesce(end_date, date '9999-12-31')), date '9999-12-31') as expires_on
from {{ source('pluvo', 'portfolio_items') }}
where _deleted_at is null
  and related_object_type = 'CERTIFICATE'
  and completion_date is not null
group by all
