-- Every present, non-archived user is counted once per title: the statuses add up to the users
-- (rows returned = failures).
select s.title, s.valid + s.expiring + s.expired + s.missing as counted, u.users
from {{ ref('certificate_status') }} s
cross join (select count(*) as users from {{ ref('stg_users') }} where not archived) u
where s.valid + s.expiring + s.expired + s.missing <> u.users
   or s.users <> u.users
   or s.no_expiry > s.valid
