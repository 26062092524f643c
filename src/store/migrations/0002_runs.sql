-- Executions of jobs and schedules, their log lines, schedule fires and run leases.
-- Portable between SQLite and PostgreSQL: text keys, BIGINT milliseconds since the epoch,
-- BIGINT 0/1 flags.

CREATE TABLE executions (
    execution_id     TEXT PRIMARY KEY,
    org              TEXT NOT NULL,
    project_id       TEXT NOT NULL,
    deployment_name  TEXT NOT NULL,
    schedule_name    TEXT,
    job_name         TEXT,
    -- the meltano arguments, e.g. `run say-hello`
    command          TEXT NOT NULL,
    environment_name TEXT NOT NULL,
    git_rev_hash     TEXT NOT NULL,
    -- RUNNING, SUCCEEDED, FAILED, STOPPED, SKIPPED
    status           TEXT NOT NULL,
    reason           TEXT,
    exit_code        BIGINT,
    start_ms         BIGINT NOT NULL,
    end_ms           BIGINT,
    -- the server process that runs it, and when that process last said it still does
    runner_id        TEXT,
    lease_ms         BIGINT,
    stop_requested   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX executions_history ON executions (project_id, start_ms, execution_id);
CREATE INDEX executions_running ON executions (status, runner_id);

CREATE TABLE execution_logs (
    execution_id TEXT NOT NULL,
    line_no      BIGINT NOT NULL,
    ts_ms        BIGINT NOT NULL,
    ingested_ms  BIGINT NOT NULL,
    message      TEXT NOT NULL,
    PRIMARY KEY (execution_id, line_no)
);

-- One row per due occurrence of a schedule: the primary key makes a fire happen once,
-- whichever server replica claims it first.
CREATE TABLE schedule_fires (
    project_id      TEXT NOT NULL,
    deployment_name TEXT NOT NULL,
    schedule_name   TEXT NOT NULL,
    fire_ms         BIGINT NOT NULL,
    execution_id    TEXT NOT NULL,
    runner_id       TEXT NOT NULL,
    claimed_ms      BIGINT NOT NULL,
    PRIMARY KEY (project_id, deployment_name, schedule_name, fire_ms)
);

-- When the scheduler first saw a schedule enabled: occurrences before that never fire,
-- and `@once` fires at that moment.
CREATE TABLE schedule_cursors (
    project_id      TEXT NOT NULL,
    deployment_name TEXT NOT NULL,
    schedule_name   TEXT NOT NULL,
    enabled_ms      BIGINT NOT NULL,
    PRIMARY KEY (project_id, deployment_name, schedule_name)
);
