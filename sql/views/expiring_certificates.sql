-- expiring_certificates: issued certificates (portfolio items of type CERTIFICATE) whose end
-- date lies within :days days from today, of users who are not archived. Parameter: days
-- (default 90 in the view). Readers: compliance officers. "Today" is the UTC date (the bundled
-- DuckDB has no ICU time-zone extension, so dates come from now()::TIMESTAMP).
SELECT u.ref AS user_ref, u.name, u.email, p.title AS certificate,
       p.completion_date AS issued_on, p.end_date AS expires_on,
       date_diff('day', now()::TIMESTAMP::DATE, p.end_date) AS days_left
FROM portfolio_items p
JOIN users u ON u.id = p.user_id AND u._deleted_at IS NULL AND NOT u.archived
WHERE p._deleted_at IS NULL
  AND p.related_object_type = 'CERTIFICATE'
  AND p.end_date BETWEEN now()::TIMESTAMP::DATE AND now()::TIMESTAMP::DATE + to_days(CAST(getvariable('days') AS INTEGER))
ORDER BY p.end_date, u.ref, p.title
