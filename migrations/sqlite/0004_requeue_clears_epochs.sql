-- A trial that goes back to the queue (its lease expired, or its worker released it)
-- starts its next attempt afresh: the dead attempt's per-epoch reports are dropped, so
-- they can never mix with the next attempt's (the event log keeps what happened).
-- The expired lease's token stays on a re-queued trial until it is leased again, so a
-- late report or completion from the lost worker is told its lease expired.

DELETE FROM trial_epochs
WHERE trial_id IN (SELECT id FROM trials WHERE state = 'pending');

CREATE TRIGGER requeue_clears_epochs
AFTER UPDATE OF state ON trials
WHEN NEW.state = 'pending' AND OLD.state <> 'pending'
BEGIN
    DELETE FROM trial_epochs WHERE trial_id = NEW.id;
END;
