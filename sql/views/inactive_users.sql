-- inactive_users: users who have not logged in for `days` days (or never), and are not
-- archived or deleted.
-- Parameters: days (default 180), as_of (DATE or TIMESTAMP, default now, UTC).
-- Readers: admins choosing whom to archive (`push archive-users --sql sql/views/inactive_users.sql`).
WITH params AS (
    SELECT coalesce(CAST(getvariable('as_of') AS TIMESTAMP), make_timestamp(epoch_us(now()))) AS as_of,
           coalesce(CAST(getvariable('days') AS INTEGER), 180) AS days
)
SELECT u.ref, u.id, u.name, u.email, u.last_login,
       date_diff('day', u.last_login, params.as_of) AS days_since_login
FROM users u, params
WHERE u._deleted_at IS NULL
  AND NOT u.archived
  AND (u.last_login IS NULL OR u.last_login < params.as_of - to_days(params.days))
ORDER BY u.last_login NULLS FIRST, u.ref
