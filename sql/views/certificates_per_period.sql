-- certificates_per_period: certificates achieved (issued: completion_date of CERTIFICATE
-- portfolio items) per period and certificate title, counting items and distinct users.
-- Parameters: period ('month', 'quarter' or 'year'; default 'month').
-- Readers: compliance and L&D reporting, BI trend charts.
WITH params AS (SELECT coalesce(CAST(getvariable('period') AS VARCHAR), 'month') AS period)
SELECT date_trunc(params.period, p.completion_date)::DATE AS period_start,
       p.title AS certificate,
       count(*) AS achieved,
       count(DISTINCT p.user_id) AS users
FROM portfolio_items p, params
WHERE p._deleted_at IS NULL
  AND p.related_object_type = 'CERTIFICATE'
  AND p.completion_date IS NOT NULL
GROUP BY ALL
ORDER BY period_start, certificate
