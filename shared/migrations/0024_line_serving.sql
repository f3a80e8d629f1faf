-- Positions measured against the jobs ahead, not every job that ended (issue 22, as a review found it).
--
-- position = queue_seq - finished counted every end, the ends of jobs that left the line included (a
-- cancel, the sold-out bulk end). Those end wherever they stand, mostly behind the shoppers still waiting,
-- so each moved everyone ahead of it up a place too: a bulk end of a thousand holders behind you read as a
-- thousand places gained, and a line whose front had not moved read as served. With many of a sale's
-- shoppers told "your number is up" at once, each then asks about their own job, over and over: the reads
-- the shared figure exists to spare.
--
-- Now the counter also counts the ends of jobs that left the line (line_finished.left_line, kept by pq_end_job
-- and made true again whenever shared/sql/events.sql is applied), and:
--   * a job's own answers (its 202, its reads, its cancel) measure against what is known to be ahead of it:
--     the jobs that had ended when it was accepted (all of them ahead of it: payment_jobs.ended_ahead, its
--     202's exact figure), or the jobs that ended in their turn since (pq_processed_count: finished less
--     left_line), whichever is more. Neither counts a leaver behind it: a place there can only be too high,
--     never too low;
--   * the shared "now serving" figure (pq_line_serving) also counts the leavers the line's front has passed:
--     every one ahead of everyone still waiting, so the figure moves as the front does.
ALTER TABLE line_finished ADD COLUMN left_line bigint NOT NULL DEFAULT 0 CHECK (left_line >= 0);
COMMENT ON COLUMN line_finished.left_line IS
    'Of those ends, the jobs that left the line before a processor took them (payment_jobs.left_line).';
-- The leavers so far: what finished already counts of them (ends before 0022 were not marked: in their turn).
UPDATE line_finished
   SET left_line = (SELECT count(*) FROM payment_jobs WHERE left_line)
 WHERE shard = 0;
-- The leavers the front has not passed yet, counted by the figure (pq_line_serving): those in the live part of
-- the line, a range of this index.
CREATE INDEX payment_jobs_left_line ON payment_jobs (queue_seq) WHERE left_line;
-- What a job's place is measured against at least: the jobs that had ended when it was accepted (every one of
-- them ahead of it). NULL for jobs made before this migration or by a webhook: measured by the rest alone.
ALTER TABLE payment_jobs ADD COLUMN ended_ahead bigint;
COMMENT ON COLUMN payment_jobs.ended_ahead IS
    'Jobs that had ended when this one was accepted, all ahead of it (pq_finished_count then): its place is '
    'never measured against fewer.';
