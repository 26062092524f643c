-- Core tables of the control plane. One dialect for SQLite and PostgreSQL:
-- TEXT keys (ULIDs, names), BIGINT timestamps in milliseconds since the epoch,
-- BIGINT 0/1 instead of booleans.

CREATE TABLE orgs (
    org_key     TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL
);

CREATE TABLE tokens (
    token_id    TEXT PRIMARY KEY,
    org_key     TEXT NOT NULL REFERENCES orgs (org_key),
    name        TEXT,
    role        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE INDEX tokens_org ON tokens (org_key);

CREATE TABLE projects (
    project_id      TEXT PRIMARY KEY,
    org_key         TEXT NOT NULL REFERENCES orgs (org_key),
    project_name    TEXT NOT NULL,
    git_repository  TEXT NOT NULL,
    root_path       TEXT NOT NULL,
    revision        BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    UNIQUE (org_key, project_name)
);

CREATE TABLE deployments (
    project_id        TEXT NOT NULL REFERENCES projects (project_id),
    deployment_name   TEXT NOT NULL,
    environment_name  TEXT NOT NULL,
    git_rev           TEXT NOT NULL,
    git_rev_hash      TEXT NOT NULL,
    deployed_at       BIGINT NOT NULL,
    PRIMARY KEY (project_id, deployment_name)
);

-- The schedules found in meltano.yml at the deployed commit.
CREATE TABLE schedules (
    project_id       TEXT NOT NULL,
    deployment_name  TEXT NOT NULL,
    schedule_name    TEXT NOT NULL,
    cron_interval    TEXT NOT NULL,
    job_name         TEXT,
    enabled          BIGINT NOT NULL DEFAULT 0,
    enabled_at       BIGINT,
    PRIMARY KEY (project_id, deployment_name, schedule_name),
    FOREIGN KEY (project_id, deployment_name) REFERENCES deployments (project_id, deployment_name)
);

-- The jobs found in meltano.yml at the deployed commit; tasks as a JSON array.
CREATE TABLE deployment_jobs (
    project_id       TEXT NOT NULL,
    deployment_name  TEXT NOT NULL,
    job_name         TEXT NOT NULL,
    tasks            TEXT NOT NULL,
    PRIMARY KEY (project_id, deployment_name, job_name),
    FOREIGN KEY (project_id, deployment_name) REFERENCES deployments (project_id, deployment_name)
);

-- Values are AES-256-GCM ciphertexts bound to (project_id, name); never plaintext.
CREATE TABLE secrets (
    project_id   TEXT NOT NULL REFERENCES projects (project_id),
    name         TEXT NOT NULL,
    ciphertext   TEXT NOT NULL,
    fingerprint  TEXT,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (project_id, name)
);

CREATE TABLE locks (
    project_id   TEXT PRIMARY KEY REFERENCES projects (project_id),
    lock_id      TEXT NOT NULL,
    holder       TEXT NOT NULL,
    operation    TEXT NOT NULL,
    acquired_at  BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);

CREATE TABLE audit_records (
    audit_id     TEXT PRIMARY KEY,
    project_id   TEXT NOT NULL REFERENCES projects (project_id),
    recorded_at  BIGINT NOT NULL,
    token_name   TEXT,
    body         TEXT NOT NULL
);

CREATE INDEX audit_records_project ON audit_records (project_id, audit_id);

-- Server-wide settings, e.g. a check value proving the server key matches.
CREATE TABLE server_meta (
    meta_key    TEXT PRIMARY KEY,
    meta_value  TEXT NOT NULL
);
