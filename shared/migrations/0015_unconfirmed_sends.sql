-- Enqueue in one round trip (issue 22): the intake no longer marks a job sent after its SQS send, so a
-- job's sent_at now says its send is known to have happened -- in the intake's own transaction (a PGMQ
-- queue of this database), by a mark after a send, or by a processor having received it -- and NULL no
-- longer means "re-send it". pq_unsent_jobs (shared/sql/intake.sql) tells the cases apart; this index
-- finds the jobs a gateway path asked to be sent again (parked, then woken: parks > 0) without reading
-- the waiting line's unconfirmed jobs, which payment_jobs_unsent now holds. Built in the deploy's
-- migration transaction, holding payment_jobs' SHARE lock (writes wait) until it commits, in time
-- proportional to the table, as 0009's: deploy it when the queue is quiet.
CREATE INDEX payment_jobs_resend ON payment_jobs (created_at) WHERE sent_at IS NULL AND parks > 0;

COMMENT ON COLUMN payment_jobs.sent_at IS
    'When the job''s queue send became known to have happened: in the intake''s own transaction (the '
    'local PGMQ queue), by a mark after a send (the sweeper''s, the gateway paths''), or by a processor '
    'receiving it. NULL after an SQS intake, which confirms nothing per job: pq_unsent_jobs decides '
    'which such jobs the sweeper sends again.';
