//! What both stores' imports share: the checks a dump passes before anything is
//! written, and how its trials go in past the schema's triggers.
//!
//! The triggers were written for live changes: inserting a trial logs `created` (and
//! `started`) and counts it, an epoch logs `epoch`, a state change logs and recounts,
//! and a finished trial takes no more epochs. An import writes what already happened,
//! so each backend, in its one transaction: inserts a finished trial as `pending`,
//! adds its epochs, then sets its final state (only state changes from a finished
//! state are refused); then deletes every event the triggers wrote for the new study
//! and inserts the dump's, in order, and recounts the study's trials from the rows.

use std::collections::HashSet;

use tuner_core::TrialState;

use crate::{Result, StoreError, StudyDump, TrialRecord};

/// Refuses a dump that would break the store's rules: numbers dense from 0 (in order),
/// every event about one of its trials.
pub(crate) fn check(dump: &StudyDump) -> Result<()> {
    for (i, trial) in dump.trials.iter().enumerate() {
        if trial.number != i as u64 {
            return Err(StoreError::Corrupt(format!(
                "the copy of study {} has trial number {} where number {i} belongs: numbers \
                 must be dense from 0, in order",
                dump.study.id, trial.number
            )));
        }
    }
    let numbers: HashSet<u64> = dump.trials.iter().map(|t| t.number).collect();
    if let Some(e) = dump.events.iter().find(|e| !numbers.contains(&e.number)) {
        return Err(StoreError::Corrupt(format!(
            "the copy of study {} has a `{}` event of trial number {}, which it does not have",
            dump.study.id, e.kind, e.number
        )));
    }
    Ok(())
}

/// The state a trial is inserted in: a finished trial goes in as `pending` so its
/// epochs can be added, and gets its state afterwards.
pub(crate) fn insert_state(trial: &TrialRecord) -> TrialState {
    if trial.state.is_finished() {
        TrialState::Pending
    } else {
        trial.state
    }
}
