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
