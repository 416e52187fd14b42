-- enrollment_events: OFFER_EVENT_ENROLLED / _ENROLLMENT_STATUS_UPDATED / _UNENROLLED webhooks
-- in `webhook_events`. Pluvo sends these with snake_case keys (`offer_event`); camelCase is
-- read too. Readers: event planners (who enrolled where, waitlists).
SELECT received_at, sent_date, event,
       object_id                                                          AS enrollment_id,
       coalesce(payload->>'$.offer_event.id', payload->>'$.offerEvent.id')       AS offer_event_id,
       coalesce(payload->>'$.offer_event.ref', payload->>'$.offerEvent.ref')     AS offer_event_ref,
       coalesce(payload->>'$.offer_event.title', payload->>'$.offerEvent.title') AS offer_event_title,
       user_ref,
       payload->>'$.status'                                               AS status
FROM webhook_events
WHERE event LIKE 'OFFER\_EVENT\_%' ESCAPE '\'
ORDER BY sent_date DESC NULLS LAST, received_at DESC
