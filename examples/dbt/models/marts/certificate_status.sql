-- Per certificate title: how many present, non-archived users hold it `valid`, `expiring`
-- (expires within `days` days, that day included), `expired`, or are `missing` it: the
-- statuses and counts of compliance_roster (sql/views/compliance_roster.sql) on the same day.
-- A certificate without an expiry date is valid; `no_expiry` counts those explicitly.
-- Vars: as_of (a date; default today, UTC), days (default 90).
with params as (
    select
        {% if var('as_of', none) %} cast('{{ var("as_of") }}' as date)
        {% else %} make_timestamp(epoch_us(now()))::date {% endif %} as today,
        cast({{ var('days', 90) }} as integer) as days
),
required as (
    select distinct title
    from {{ source('pluvo', 'certificates') }}
    where _deleted_at is null and title is not null
),
roster as (
    select r.title,
           case when h.user_id is null then 'missing'
                when h.expires_on < p.today then 'expired'
                when h.expires_on <= p.today + to_days(p.days) then 'expiring'
                else 'valid' end as status,
           h.user_id is not null and h.expires_on is null as no_expiry
    from {{ ref('stg_users') }} u
    cross join required r
    cross join params p
    left join {{ ref('stg_certificates_held') }} h on h.user_id = u.id and h.title = r.title
    where not u.archived
)
select title,
       count(*) filter (where status = 'valid') as valid,
       count(*) filter (where status = 'expiring') as expiring,
       count(*) filter (where status = 'expired') as expired,
       count(*) filter (where status = 'missing') as missing,
       count(*) filter (where no_expiry) as no_expiry,
       count(*) as users
from roster
group by title
order by title
