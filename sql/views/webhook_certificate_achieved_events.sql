-- certificate_achieved_events: one row per EVENT_CERTIFICATE_ACHIEVED webhook in
-- `webhook_events` (a certificate issued to a user), newest first. Readers: compliance
-- dashboards that need "who got which certificate when" before the next sync.
SELECT received_at, sent_date,
       object_id                                  AS certificate_id,
       payload->>'$.user.id'                      AS user_id,
       user_ref,
       payload->>'$.user.name'                    AS user_name,
       payload->>'$.title'                        AS title,
       payload->>'$.training.id'                  AS training_id,
       payload->>'$.training.title'               AS training_title,
       TRY_CAST(payload->>'$.creationDate' AS TIMESTAMP) AS creation_date,
       TRY_CAST(payload->>'$.expiryDate' AS TIMESTAMP)   AS expiry_date
FROM webhook_events
WHERE event = 'EVENT_CERTIFICATE_ACHIEVED'
ORDER BY sent_date DESC NULLS LAST, received_at DESC
