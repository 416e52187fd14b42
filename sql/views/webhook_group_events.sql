-- group_events: GROUP_CREATED / GROUP_UPDATED / GROUP_DELETED webhooks in `webhook_events`.
-- Readers: audits of group structure changes.
SELECT received_at, sent_date, event,
       object_id              AS group_id,
       object_ref             AS group_ref,
       payload->>'$.name'     AS name
FROM webhook_events
WHERE event LIKE 'GROUP\_%' ESCAPE '\'
ORDER BY sent_date DESC NULLS LAST, received_at DESC
