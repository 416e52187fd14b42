-- completion_by_training: per training, how many learners have it in their portfolio, how
-- many completed it (progress 100 or a completion date), the completion rate and the average
-- score of scored items. Portfolio items name their training by title only, so the training's
-- ref comes from `trainings` by title (NULL when no training has that title).
-- No parameters. Readers: L&D analysts, BI dashboards.
SELECT t.ref AS training_ref, p.title AS training,
       count(*) AS items,
       count(DISTINCT p.user_id) AS learners,
       count(*) FILTER (WHERE p.progress >= 100 OR p.completion_date IS NOT NULL) AS completed,
       round(100.0 * count(*) FILTER (WHERE p.progress >= 100 OR p.completion_date IS NOT NULL)
             / count(*), 1) AS completion_pct,
       round(avg(p.score), 1) AS avg_score
FROM portfolio_items p
LEFT JOIN (SELECT title, min(ref) AS ref FROM trainings WHERE _deleted_at IS NULL GROUP BY title) t
     ON t.title = p.title
WHERE p._deleted_at IS NULL AND p.related_object_type = 'TRAINING'
GROUP BY ALL
ORDER BY p.title
