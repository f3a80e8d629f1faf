-- Why deliveries failed: what an operator needs to find the cause of a job in the DLQ, and the
-- failed-delivery rate beside the business failures. Written by the processor (shared/sql/failures.sql),
-- one row per failed delivery; failures are rare, so this stays small.

CREATE TABLE delivery_failures (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id         uuid,
    message_id     text NOT NULL,
    receive_count  integer NOT NULL CHECK (receive_count >= 1),
    error_class    text NOT NULL,
    error          text NOT NULL CHECK (length(error) <= 500),
    dead_lettered  boolean NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE delivery_failures IS
    'One row per failed delivery of a queue message (transient errors, gateway backoffs, poison). '
    'dead_lettered: this delivery sent the message to the DLQ (poison at first sight, or the last '
    'delivery maxReceiveCount allows). The DLQ runbook reads the last error of a job here.';
COMMENT ON COLUMN delivery_failures.job_id IS
    'The job the message names; NULL when its body names none. Not a foreign key: a poison message '
    'may name a job that does not exist.';
COMMENT ON COLUMN delivery_failures.error IS 'The error''s class and message, cut to 500 characters; never a secret.';
CREATE INDEX delivery_failures_created_at ON delivery_failures (created_at);
CREATE INDEX delivery_failures_dead_lettered ON delivery_failures (created_at) WHERE dead_lettered;
