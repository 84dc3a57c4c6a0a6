//! Lifecycle rules both stores answer alike: why a lease holder's change was refused,
//! and when a repeated finish is a retry.

use tuner_core::TrialState;

use crate::{Finish, StoreError, TrialRecord};

/// Why a lease-checked update of `current` by the holder of `token` was refused.
pub(crate) fn refusal(current: &TrialRecord, token: &str, now: i64) -> StoreError {
    let id = current.id;
    // A re-queued trial keeps its expired lease's token until it is leased again, so
    // the late holder hears why.
    if current.state == TrialState::Pending && current.lease_token.as_deref() == Some(token) {
        return StoreError::LeaseExpired(id);
    }
    if current.state != TrialState::Running {
        return StoreError::NotRunning {
            id,
            state: current.state,
        };
    }
    if current.lease_token.as_deref() != Some(token) {
        return StoreError::LeaseMismatch(id);
    }
    if current.lease_expires_at.is_some_and(|e| e < now) {
        return StoreError::LeaseExpired(id);
    }
    // The row changed between the update and this read (e.g. it just finished).
    StoreError::NotRunning {
        id,
        state: current.state,
    }
}

/// A finish by `token` that changed nothing, against the trial as it now is: the same
/// finish by the same lease holder (its first answer lost, or sent to another replica)
/// gets the same answer; the same kind of finish with another value is a contradiction;
/// anything else is refused as [`refusal`] says.
pub(crate) fn repeated_finish(
    current: TrialRecord,
    finish: &Finish,
    token: &str,
    now: i64,
) -> Result<TrialRecord, StoreError> {
    if current.state != finish.state || current.lease_token.as_deref() != Some(token) {
        return Err(refusal(&current, token, now));
    }
    // Bit for bit: a retry sends exactly what it sent before.
    if current.value.map(f64::to_bits) != finish.value.map(f64::to_bits) {
        return Err(StoreError::AlreadyFinished {
            id: current.id,
            state: current.state,
            value: current.value,
        });
    }
    Ok(current)
}

/// A report for an epoch that already has one: the same value is a retry (the first
/// report stays), another value is refused.
pub(crate) fn repeated_epoch(
    current: &TrialRecord,
    epoch: u32,
    earlier: Option<f64>,
    value: Option<f64>,
) -> Result<(), StoreError> {
    if earlier.map(f64::to_bits) == value.map(f64::to_bits) {
        return Ok(());
    }
    Err(StoreError::EpochConflict {
        id: current.id,
        epoch,
        value: earlier,
    })
}
