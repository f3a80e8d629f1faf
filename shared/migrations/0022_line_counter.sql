-- The waiting line (issue 22), as its review found it wanting.
--
-- The finished-jobs counter every position is measured against (position = queue_seq - finished) was a
-- sequence, payment_finished_seq, which a job's end advanced with nextval. A sequence never rolls back: a
-- sold-out bulk end cut off by its statement timeout (or any transaction that ended jobs and then failed)
-- left the counter advanced by jobs that had not ended, and every waiting shopper's position fell for good
-- (it can never be set back without positions rising). The counter is now rows updated in the ending
-- transaction, so it counts only ends that committed. Still no one hot row: each database session adds to
-- the shard of its backend (pq_end_job, shared/sql/events.sql), so concurrent payments share a row only
-- when their backends' numbers collide; a reader sums the 32 rows (pq_finished_count).
CREATE TABLE line_finished (
    shard    smallint PRIMARY KEY CHECK (shard BETWEEN 0 AND 31),
    finished bigint NOT NULL DEFAULT 0 CHECK (finished >= 0)
);
COMMENT ON TABLE line_finished IS
    'Jobs that reached a terminal state, summed over the shards: transactional, so a rolled-back end '
    'counts nothing. Each session adds to shard pg_backend_pid() % 32.';
-- Where the sequence had got to: positions carry on from it and so never rise across the change. (Ends by
-- code still running the old release while this deploys advance only the sequence: positions read a little
-- high for that while, never lower than they are.)
INSERT INTO line_finished (shard, finished)
SELECT s, CASE WHEN s = 0 THEN (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM payment_finished_seq)
               ELSE 0 END
  FROM generate_series(0, 31) AS s;
COMMENT ON SEQUENCE payment_finished_seq IS
    'Replaced by line_finished (0022); kept for the release that still advances it during a deploy.';

-- The sweeper's resend rule (pq_unsent_jobs, shared/sql/intake.sql) takes the line's front to be the newest
-- job that ended lately. A job that left the line -- its shopper cancelled, or its product sold out and the
-- bulk end ended it -- ends wherever it stands, usually at the back, and moved that front to now: every
-- unconfirmed (SQS) job older than the sweep delay counted as passed and was sent again, the whole line.
-- Such ends are marked, and the front is measured without them.
ALTER TABLE payment_jobs ADD COLUMN left_line boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN payment_jobs.left_line IS
    'Ended before a processor took it (cancelled, or the sold-out bulk end): not where the line''s front is.';
ALTER TABLE payment_jobs ADD CONSTRAINT payment_jobs_left_line_is_failed CHECK (NOT left_line OR status = 'failed');
