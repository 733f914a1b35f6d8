-- Promotion requests: a promote onto a stage whose policy asks for approvals waits here until
-- enough actors other than the requester approve; the approval that reaches the count
-- promotes, the policy's checks evaluated again under the stage lock at that moment.

create table promotion_requests (
    id                  uuid primary key,
    model_id            uuid not null constraint promotion_requests_model_fk references models (id),
    stage               text not null,
    version             bigint not null,
    -- Honoured when the request promotes: `expected_given` says whether one was sent (its
    -- value may be null: the stage must then be empty).
    expected_given      boolean not null,
    expected_version    bigint,
    reason              text,
    requested_by        text not null,
    requested_by_token  uuid,
    status              text not null
                        check (status in ('pending', 'approved', 'rejected', 'cancelled', 'expired')),
    approvals_needed    bigint not null,
    -- [{actor, token_id, comment, at}]
    approvals           jsonb not null,
    -- The checks of the last evaluation.
    checks              jsonb not null,
    decided_by          text,
    decision_comment    text,
    -- The stage change an approval made.
    event_id            bigint,
    created_at          timestamptz not null,
    updated_at          timestamptz not null,
    expires_at          timestamptz not null
);

create index promotion_requests_model_idx on promotion_requests (model_id, created_at);
