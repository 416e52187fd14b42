-- webhook_events: every distinct webhook delivery `webhook serve` accepted (signature valid,
-- JSON object with an `event`), written in a transaction before the 2xx answer. Pluvo sends
-- no delivery id, so a redelivery is recognised by its body: `body_sha256` (hex SHA-256 of the
-- raw body) is the key and a second delivery of the same bytes is not stored again.
-- Readers: the typed views `*_events` (sql/views/webhook_*.sql), compliance dashboards.
-- Numbered 003: 002 is reserved for the push ledger being written on another branch.
CREATE TABLE webhook_events (
    body_sha256 VARCHAR PRIMARY KEY,     -- dedupe key: hex SHA-256 of the raw body
    received_at TIMESTAMPTZ NOT NULL,    -- when the receiver accepted it (UTC)
    event       VARCHAR NOT NULL,        -- e.g. EVENT_CERTIFICATE_ACHIEVED, USER_UPDATED
    sent_date   TIMESTAMPTZ,             -- `sentDate` of the payload, NULL when absent
    object_id   VARCHAR,                 -- `id` of the payload (user, group, item, enrollment)
    object_ref  VARCHAR,                 -- `ref` of the payload, when it has one
    user_ref    VARCHAR,                 -- the user the event is about (`user.ref`, or `ref` of USER_*)
    payload     JSON NOT NULL            -- the raw body as received
);
