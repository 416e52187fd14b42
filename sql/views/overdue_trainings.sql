-- overdue_trainings: open training items (not completed: progress below 100 and no completion
-- date) of users who are not archived, that are either `overdue` (their training ended before
-- today) or `stalled` (started, progress above 0, but no change of progress, score or time
-- spent recorded in portfolio_item_history for `stalled_days` days).
-- Parameters: stalled_days (default 30), as_of (DATE or TIMESTAMP, default now, UTC).
-- Readers: managers and L&D following up on learners.
WITH params AS (
    SELECT coalesce(CAST(getvariable('as_of') AS TIMESTAMP), make_timestamp(epoch_us(now()))) AS as_of,
           coalesce(CAST(getvariable('stalled_days') AS INTEGER), 30) AS stalled_days
),
open_items AS (
    SELECT p.item_key, p.user_id, p.title, p.progress,
           t.ref AS training_ref, t.end_date::DATE AS due_on,
           h.valid_from AS unchanged_since
    FROM portfolio_items p
    LEFT JOIN (SELECT title, min(ref) AS ref, max(end_date) AS end_date
               FROM trainings WHERE _deleted_at IS NULL GROUP BY title) t ON t.title = p.title
    LEFT JOIN portfolio_item_history h ON h.item_key = p.item_key AND h.valid_to IS NULL
    WHERE p._deleted_at IS NULL AND p.related_object_type = 'TRAINING'
      AND coalesce(p.progress, 0) < 100 AND p.completion_date IS NULL
)
SELECT u.ref AS user_ref, u.name, u.email, o.training_ref, o.title AS training, o.progress,
       o.due_on,
       CASE WHEN o.due_on < params.as_of::DATE THEN 'overdue' ELSE 'stalled' END AS status,
       date_diff('day', o.unchanged_since, params.as_of) AS days_unchanged
FROM open_items o
JOIN users u ON u.id = o.user_id AND u._deleted_at IS NULL AND NOT u.archived
CROSS JOIN params
WHERE o.due_on < params.as_of::DATE
   OR (o.progress > 0 AND o.unchanged_since <= params.as_of - to_days(params.stalled_days))
ORDER BY status, o.due_on, u.ref, o.title
