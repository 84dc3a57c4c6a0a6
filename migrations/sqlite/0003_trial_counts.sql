-- Trials per study and state, kept by triggers so counting (on every ask and
-- completion) reads a handful of rows instead of scanning every trial of the study.

CREATE TABLE trial_counts (
    study_id INTEGER NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    state    TEXT    NOT NULL,
    n        INTEGER NOT NULL CHECK (n >= 0),
    PRIMARY KEY (study_id, state)
) WITHOUT ROWID;

INSERT INTO trial_counts (study_id, state, n)
SELECT study_id, state, COUNT(*) FROM trials GROUP BY study_id, state;

CREATE TRIGGER count_trial_insert
AFTER INSERT ON trials
BEGIN
    INSERT INTO trial_counts (study_id, state, n) VALUES (NEW.study_id, NEW.state, 1)
    ON CONFLICT (study_id, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER count_trial_state
AFTER UPDATE OF state ON trials
WHEN NEW.state <> OLD.state
BEGIN
    UPDATE trial_counts SET n = n - 1 WHERE study_id = OLD.study_id AND state = OLD.state;
    INSERT INTO trial_counts (study_id, state, n) VALUES (NEW.study_id, NEW.state, 1)
    ON CONFLICT (study_id, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER count_trial_delete
AFTER DELETE ON trials
BEGIN
    UPDATE trial_counts SET n = n - 1 WHERE study_id = OLD.study_id AND state = OLD.state;
END;
