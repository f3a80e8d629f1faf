-- Dropping a poison message (issue 20): an operator removes a job's message that can never succeed from
-- the DLQ (POST /v1/dlq/jobs/{job_id}/drop), where a redrive would only send it back there. The job ends
-- failed (reason dropped_by_operator), so every accepted job stays accounted for; this table says who
-- dropped it and when. The function lives in shared/sql/failures.sql.

CREATE TABLE dead_letter_drops (
    job_id      uuid PRIMARY KEY,
    dropped_by  text NOT NULL CHECK (length(dropped_by) BETWEEN 1 AND 255),
    dropped_at  timestamptz NOT NULL DEFAULT now(),
    job_status  text NOT NULL CHECK (job_status IN ('queued', 'processing', 'unknown'))
);
COMMENT ON TABLE dead_letter_drops IS
    'One row per job whose DLQ message an operator dropped: the record of who and when, and what makes '
    'a second drop of the same job answer the first one.';
COMMENT ON COLUMN dead_letter_drops.job_id IS
    'The job the dropped message named. Not a foreign key: a poison message may name a job that does not '
    'exist (job_status unknown).';
COMMENT ON COLUMN dead_letter_drops.dropped_by IS 'The operator: the subject of their token.';
COMMENT ON COLUMN dead_letter_drops.job_status IS
    'The job''s status when it was dropped (queued or processing; it is failed since), or unknown for a '
    'message naming no job of ours.';
