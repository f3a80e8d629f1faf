-- This migration once defined the payment functions. They now live in repeatable files under
-- shared/sql/, re-applied whenever they change (shared/migrate.py), so each is defined once.
-- A database that applied the earlier text is accepted as is (see SUPERSEDED in shared/migrate.py).
SELECT 1;
