-- expiring_certificates: issued certificates (portfolio items of type CERTIFICATE) whose end
-- date lies within `days` days from today (today included), of users who are not archived.
-- Parameters: days (default 90), as_of (DATE, default today, UTC).
-- Readers: compliance officers. "Today" is the UTC date: make_timestamp(epoch_us(now())) is
-- the UTC time in every DuckDB, whatever its TimeZone setting.
WITH params AS (
    SELECT coalesce(CAST(getvariable('as_of') AS DATE), make_timestamp(epoch_us(now()))::DATE) AS today,
           coalesce(CAST(getvariable('days') AS INTEGER), 90) AS days
)
SELECT u.ref AS user_ref, u.name, u.email, p.title AS certificate,
       p.completion_date AS issued_on, p.end_date AS expires_on,
       date_diff('day', params.today, p.end_date) AS days_left
FROM portfolio_items p
JOIN users u ON u.id = p.user_id AND u._deleted_at IS NULL AND NOT u.archived
CROSS JOIN params
WHERE p._deleted_at IS NULL
  AND p.related_object_type = 'CERTIFICATE'
  AND p.end_date BETWEEN params.today AND params.today + to_days(params.days)
ORDER BY p.end_date, u.ref, p.title
