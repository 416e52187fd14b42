-- completion_by_group: per group, how many training items its participants have, how many
-- are completed (progress 100 or a completion date), the completion rate and average score.
-- No parameters. Readers: L&D analysts, BI dashboards.
SELECT g.ref AS group_ref, g.name AS group_name,
       count(DISTINCT m.user_id) AS members,
       count(p.item_key) AS training_items,
       count(p.item_key) FILTER (WHERE p.progress >= 100 OR p.completion_date IS NOT NULL) AS completed,
       round(100.0 * count(p.item_key) FILTER (WHERE p.progress >= 100 OR p.completion_date IS NOT NULL)
             / nullif(count(p.item_key), 0), 1) AS completion_pct,
       round(avg(p.score), 1) AS avg_score
FROM groups g
JOIN group_members m ON m.group_id = g.id AND m.role = 'participant' AND m._deleted_at IS NULL
LEFT JOIN portfolio_items p ON p.user_id = m.user_id AND p.related_object_type = 'TRAINING'
     AND p._deleted_at IS NULL
WHERE g._deleted_at IS NULL
GROUP BY ALL
ORDER BY completion_pct DESC NULLS LAST, group_ref
