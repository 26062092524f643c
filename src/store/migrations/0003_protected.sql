-- A protected deployment cannot be deleted until the flag is cleared by a deploy request.
-- BIGINT 0/1 like the other flags, so the column reads the same on SQLite and PostgreSQL.

ALTER TABLE deployments ADD COLUMN protected BIGINT NOT NULL DEFAULT 0;
