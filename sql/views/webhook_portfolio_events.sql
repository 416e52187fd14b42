-- portfolio_events: PORTFOLIO_ITEM_CREATED / _UPDATED / _DELETED webhooks in `webhook_events`
-- (training progress, completions, issued certificates). Readers: near-real-time completion
-- dashboards between syncs.
SELECT received_at, sent_date, event,
       object_id                                               AS item_id,
       user_ref,
       payload->>'$.title'                                     AS title,
       coalesce(payload->>'$.relatedObjectType', payload->>'$.related_object_type') AS related_object_type,
       TRY_CAST(payload->>'$.progress' AS DOUBLE)              AS progress,
       TRY_CAST(coalesce(payload->>'$.completionDate', payload->>'$.completion_date') AS DATE) AS completion_date,
       TRY_CAST(coalesce(payload->>'$.endDate', payload->>'$.end_date') AS DATE)               AS end_date
FROM webhook_events
WHERE event LIKE 'PORTFOLIO\_ITEM\_%' ESCAPE '\'
ORDER BY sent_date DESC NULLS LAST, received_at DESC
