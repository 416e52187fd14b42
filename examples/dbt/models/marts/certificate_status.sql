-- Per certificate title: holders whose certificate is valid, expiring within 90 days, expired.
select c.title,
       count(*) filter (where h.expires_on >= current_date + 90) as valid,
       count(*) filter (where h.expires_on >= current_date and h.expires_on < current_date + 90) as expiring,
       count(*) filter (where h.expires_on < current_date) as expired
from {{ ref('stg_certificates_held') }} h
join {{ ref('stg_users') }} u on u.id = h.user_id and not u.archived
join {{ source('pluvo', 'certificates') }} c on c.title = h.title and c._deleted_at is null
group by all
order by c.title
