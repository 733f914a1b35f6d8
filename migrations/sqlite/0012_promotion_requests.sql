-- Promotion requests (see the Postgres migration of the same name).

create table promotion_requests (
    id                  blob primary key,
    model_id            blob not null constraint promotion_requests_model_fk references models (id),
    stage               text not null,
    version             integer not null,
    expected_given      integer not null,
    expected_version    integer,
    reason              text,
    requested_by        text not null,
    requested_by_token  blob,
    status              text not null
                        check (status in ('pending', 'approved', 'rejected', 'cancelled', 'expired')),
    approvals_needed    integer not null,
    approvals           text not null,
    checks              text not null,
    decided_by          text,
    decision_comment    text,
    event_id            integer,
    created_at          text not null,
    updated_at          text not null,
    expires_at          text not null
);

create index promotion_requests_model_idx on promotion_requests (model_id, created_at);
