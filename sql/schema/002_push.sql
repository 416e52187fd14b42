-- Write-back (`push`): stored plans and the exactly-once ledger.
-- Writers: `pluvo-warehouse push` (src/push/ledger.rs). Readers: `push status`, analysts
-- auditing what was sent to Pluvo, and the apply loop itself when it resumes.

-- _push_plans: one row per plan. A plan is the SQL selection frozen into rows, validated and
-- diffed against the warehouse; `push apply PLAN` executes it, `push status PLAN` reports.
CREATE TABLE _push_plans (
    plan_id      BIGINT NOT NULL,        -- 1, 2, ... per warehouse
    action       VARCHAR NOT NULL,       -- archive-users, add-to-group, ...
    mutation     VARCHAR NOT NULL,       -- the Pluvo mutation the action sends
    args         JSON NOT NULL,          -- the action's arguments (group ref, issue date, notify ...)
    sql_text     VARCHAR NOT NULL,       -- the selection as given (--sql file contents or --query)
    params       JSON NOT NULL,          -- --param k=v, as {"k": "v"}
    rows_selected BIGINT NOT NULL,       -- rows the SQL returned
    rows_noop    BIGINT NOT NULL,        -- already in place in the warehouse: never sent
    rows_planned BIGINT NOT NULL,        -- rows to send
    status       VARCHAR NOT NULL,       -- planned, applying, done, partial, unfinished
    created_at   TIMESTAMPTZ NOT NULL,
    applied_at   TIMESTAMPTZ,            -- first apply started (the --max-rows check passed)
    finished_at  TIMESTAMPTZ             -- last apply ended
);

-- _push_ledger: one row per (plan, row key), written before each batch is sent and after its
-- answer. status: noop (dropped by the plan) | pending (not sent yet) | sent (in flight or
-- outcome unknown) | succeeded | already (in place on the server) | failed (the server said no).
-- A row is never sent again once succeeded/already/failed is recorded.
CREATE TABLE _push_ledger (
    plan_id      BIGINT NOT NULL,
    row_key      VARCHAR NOT NULL,       -- the user's ref
    seq          BIGINT NOT NULL,        -- row order in the selection (1, 2, ...)
    mutation     VARCHAR NOT NULL,
    input        JSON NOT NULL,          -- the row's values as sent (plus the resolved user id)
    status       VARCHAR NOT NULL,
    batch        BIGINT,                 -- the request the row last went out in (per plan)
    answer       JSON,                   -- the server's answer for this row
    error        VARCHAR,                -- why it failed (GraphQL error, failedRefs, ...)
    attempts     INTEGER NOT NULL,       -- times the row was sent
    sent_at      TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ
);
