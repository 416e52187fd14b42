-- compliance_roster: every user who is not archived × every required certificate, with the
-- certificate they hold (the issue with the latest expiry) and a status: `valid`, `expiring`
-- (expires within `days` days), `expired` or `missing`.
-- Parameters: certificates (a title or a list of titles, e.g. ['BHV', 'VCA Basic']; default
-- every certificate template), days (default 90), as_of (DATE, default today, UTC).
-- Readers: compliance officers (`export compliance` writes it to CSV or Parquet).
WITH params AS (
    SELECT coalesce(CAST(getvariable('as_of') AS DATE), make_timestamp(epoch_us(now()))::DATE) AS today,
           coalesce(CAST(getvariable('days') AS INTEGER), 90) AS days,
           -- one title or a list: as a JSON array either way
           CASE WHEN getvariable('certificates') IS NULL THEN NULL
                WHEN json_type(to_json(getvariable('certificates'))) = 'ARRAY'
                THEN from_json(to_json(getvariable('certificates')), '["VARCHAR"]')
                ELSE from_json(json_array(getvariable('certificates')), '["VARCHAR"]') END AS wanted
),
required AS (
    SELECT DISTINCT c.title
    FROM certificates c, params
    WHERE c._deleted_at IS NULL AND c.title IS NOT NULL
      AND (params.wanted IS NULL OR list_contains(params.wanted, c.title))
),
held AS (
    SELECT p.user_id, p.title,
           arg_max(p.completion_date, coalesce(p.end_date, DATE '9999-12-31')) AS issued_on,
           nullif(max(coalesce(p.end_date, DATE '9999-12-31')), DATE '9999-12-31') AS expires_on
    FROM portfolio_items p
    WHERE p._deleted_at IS NULL AND p.related_object_type = 'CERTIFICATE'
      AND p.completion_date IS NOT NULL
    GROUP BY ALL
)
SELECT u.ref AS user_ref, u.id AS user_id, u.name, u.email, r.title AS certificate,
       CASE WHEN h.user_id IS NULL THEN 'missing'
            WHEN h.expires_on < params.today THEN 'expired'
            WHEN h.expires_on <= params.today + to_days(params.days) THEN 'expiring'
            ELSE 'valid' END AS status,
       h.issued_on, h.expires_on,
       date_diff('day', params.today, h.expires_on) AS days_left
FROM users u
CROSS JOIN required r
CROSS JOIN params
LEFT JOIN held h ON h.user_id = u.id AND h.title = r.title
WHERE u._deleted_at IS NULL AND NOT u.archived
ORDER BY u.ref, u.id, r.title
