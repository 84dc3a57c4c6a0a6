-- Studies, their trials, and the per-epoch values trials report.
-- Timestamps are Unix milliseconds (UTC). JSON columns hold text.

CREATE TABLE studies (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL,
    spec         TEXT    NOT NULL,              -- the validated search-space document, as JSON
    direction    TEXT    NOT NULL CHECK (direction IN ('maximize', 'minimize')),
    max_retries  INTEGER NOT NULL CHECK (max_retries >= 0),
    state        TEXT    NOT NULL CHECK (state IN ('running', 'paused', 'stopped', 'completed', 'failed')),
    state_reason TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE trials (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    study_id         INTEGER NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    number           INTEGER NOT NULL CHECK (number >= 0),   -- dense per study, from 0
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'running', 'completed', 'pruned', 'failed')),
    params           TEXT    NOT NULL,                       -- JSON object
    config_key       TEXT    NOT NULL,                       -- canonical form, for de-duplication
    value            REAL,
    metrics          TEXT,                                   -- JSON object
    worker           TEXT,
    lease_token      TEXT,
    lease_expires_at INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,             -- leases handed out so far
    last_epoch       INTEGER,
    failure_reason   TEXT,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    UNIQUE (study_id, number),
    CHECK (state <> 'running' OR (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CHECK (state <> 'completed' OR value IS NOT NULL)
);

CREATE INDEX trials_by_study_state ON trials (study_id, state);
CREATE INDEX trials_running_by_expiry ON trials (lease_expires_at) WHERE state = 'running';

CREATE TABLE trial_epochs (
    trial_id    INTEGER NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
    epoch       INTEGER NOT NULL CHECK (epoch >= 0),
    value       REAL,
    metrics     TEXT    NOT NULL,                            -- JSON object
    reported_at INTEGER NOT NULL,
    PRIMARY KEY (trial_id, epoch)
);

-- Finished trials are immutable, whatever code path tries to change them.
CREATE TRIGGER finished_trials_are_immutable
BEFORE UPDATE ON trials
WHEN OLD.state IN ('completed', 'pruned', 'failed')
BEGIN
    SELECT RAISE(ABORT, 'finished trials are immutable');
END;

CREATE TRIGGER no_epochs_after_finish
BEFORE INSERT ON trial_epochs
WHEN (SELECT state FROM trials WHERE id = NEW.trial_id) IN ('completed', 'pruned', 'failed')
BEGIN
    SELECT RAISE(ABORT, 'finished trials are immutable');
END;
