-- What a sweep reads to find money in no book (pq_books_unaccounted, the sweeper's books step, alarm
-- GatewayMoneyUnaccounted): the gateway payments whose books moved lately. A payment's books move when a job
-- sees it, when a refund of it is made or becomes final, and when the job holding it ends; these indexes
-- lead to each, so a sweep reads the hour's movements, not every payment ever. New indexes only: nothing
-- rewritten. The job index holds gateway jobs only (a partial index: a wallet job's end writes nothing to it).
CREATE INDEX gateway_payments_updated ON gateway_payments (updated_at);
CREATE INDEX gateway_refunds_created ON gateway_refunds (created_at);
CREATE INDEX gateway_refunds_settled ON gateway_refunds (settled_at) WHERE settled_at IS NOT NULL;
CREATE INDEX payment_jobs_gateway_finished ON payment_jobs (finished_at)
    WHERE gateway_ref IS NOT NULL AND finished_at IS NOT NULL;
-- A refund made at the gateway that a job read as failed when it decided what to return: its money is in that
-- job's own refund, so it is never taken over (pq_failed_refunds_taken_over). One the job read as pending,
-- or never read, that fails is taken over (a review found the failures a job had not returned told apart by
-- when our books learned of them, which is not when they failed).
ALTER TABLE gateway_refunds ADD COLUMN covered_by uuid REFERENCES payment_jobs (id);
COMMENT ON COLUMN gateway_refunds.covered_by IS
    'A refund made at the gateway that this job read as failed when it decided what to return: the job''s own '
    'refund returns its money (pq_gateway_refunds_seen).';
-- The payments a sweep found with money in no book, kept until their books close (pq_books_check): each sweep
-- looks at them again whether or not their books moved within its window, so the alarm stays on until the money
-- is placed (a refund made at the gateway for it, say, which its webhook books), not an hour after it was found.
CREATE TABLE gateway_books_open (
    method          text NOT NULL,
    gateway_ref     text NOT NULL,
    first_found_at  timestamptz NOT NULL DEFAULT now(),
    last_found_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (method, gateway_ref)
);
COMMENT ON TABLE gateway_books_open IS
    'Gateway payments whose captured money our books place nowhere, as the sweeper last found them; a row goes '
    'when its books close (pq_books_check).';
