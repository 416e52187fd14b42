-- user_events: USER_CREATED / USER_UPDATED / USER_DELETED webhooks in `webhook_events`, with
-- the user's fields as sent. Readers: audits of account changes (an archived user, a rename).
SELECT received_at, sent_date, event,
       object_id                              AS user_id,
       object_ref                             AS user_ref,
       payload->>'$.name'                     AS name,
       payload->>'$.email'                    AS email,
       TRY_CAST(payload->>'$.archived' AS BOOLEAN) AS archived
FROM webhook_events
WHERE event LIKE 'USER\_%' ESCAPE '\'
ORDER BY sent_date DESC NULLS LAST, received_at DESC
