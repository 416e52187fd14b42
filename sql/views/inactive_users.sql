-- inactive_users: users who have not logged in for :days days (or never), and are not
-- archived or deleted. Parameter: days (default 180 in the view `inactive_users`).
-- Readers: admins choosing whom to archive (`push archive-users --sql sql/views/inactive_users.sql`).
SELECT u.ref, u.id, u.name, u.email, u.last_login,
       date_diff('day', u.last_login::TIMESTAMP, now()::TIMESTAMP) AS days_since_login
FROM users u
WHERE u._deleted_at IS NULL
  AND NOT u.archived
  AND (u.last_login IS NULL OR u.last_login::TIMESTAMP < now()::TIMESTAMP - to_days(CAST(getvariable('days') AS INTEGER)))
ORDER BY u.last_login NULLS FIRST, u.ref
