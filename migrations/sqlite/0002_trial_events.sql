-- A durable log of what happened to trials, for live watching (Server-Sent Events
-- resumable with Last-Event-ID). Written by triggers, so no code path that changes a
-- trial can forget to log it.

CREATE TABLE trial_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    study_id INTEGER NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    trial_id INTEGER NOT NULL,
    number   INTEGER NOT NULL,
    -- created | started | epoch | completed | pruned | failed | stale | released
    kind     TEXT    NOT NULL,
    epoch    INTEGER,
    value    REAL,
    at       INTEGER NOT NULL   -- Unix milliseconds
);

CREATE INDEX trial_events_by_study ON trial_events (study_id, id);

CREATE TRIGGER log_trial_created
AFTER INSERT ON trials
BEGIN
    INSERT INTO trial_events (study_id, trial_id, number, kind, at)
    VALUES (NEW.study_id, NEW.id, NEW.number, 'created', NEW.created_at);
    INSERT INTO trial_events (study_id, trial_id, number, kind, at)
    SELECT NEW.study_id, NEW.id, NEW.number, 'started', NEW.started_at
    WHERE NEW.state = 'running';
END;

CREATE TRIGGER log_trial_state
AFTER UPDATE OF state ON trials
WHEN NEW.state <> OLD.state
BEGIN
    INSERT INTO trial_events (study_id, trial_id, number, kind, value, at)
    VALUES (
        NEW.study_id, NEW.id, NEW.number,
        CASE
            WHEN NEW.state = 'running' THEN 'started'
            -- Back to the queue: given back by its worker, or its lease ran out.
            WHEN NEW.state = 'pending' AND NEW.attempts < OLD.attempts THEN 'released'
            WHEN NEW.state = 'pending' THEN 'stale'
            ELSE NEW.state
        END,
        NEW.value,
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    );
END;

CREATE TRIGGER log_trial_epoch
AFTER INSERT ON trial_epochs
BEGIN
    INSERT INTO trial_events (study_id, trial_id, number, kind, epoch, value, at)
    SELECT t.study_id, t.id, t.number, 'epoch', NEW.epoch, NEW.value, NEW.reported_at
    FROM trials t WHERE t.id = NEW.trial_id;
END;
