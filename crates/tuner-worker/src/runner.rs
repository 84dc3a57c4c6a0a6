//! The trainer interface a worker drives, and how a run ends.

use std::sync::atomic::AtomicBool;

use serde_json::{Map, Value};
use tuner_api::LeasedTrial;
/// What to do after an epoch: the trainer's own answer type, so the built-in runner
/// passes it through.
pub use tuner_train::EpochControl;

/// How a run ended. Whose fault a failure is decides what becomes of the trial: the
/// configuration's fails it (and counts towards the study's failure streak); the
/// worker's gives it back to the queue for a worker that can train it.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// Final metrics; the objective is read from them by name.
    Completed(Map<String, Value>),
    /// The configuration failed (unusable config, NaN loss, ...). Never a 0 score.
    Failed(String),
    /// This worker could not train it (data missing or unreadable, out of memory,
    /// interrupted): the trial is released and the worker stops.
    WorkerFault(String),
}

/// Trains one trial. Runs on a blocking thread; `on_epoch` sends each epoch's metrics
/// to the server and says whether to go on; `cancel` turns true when the worker is
/// shutting down or has lost its lease, and a runner should then return promptly.
pub trait TrialRunner: Send + Sync + 'static {
    /// The trainer kind this runner serves (`fashion-mnist-cnn`).
    fn trainer_kind(&self) -> &'static str;

    /// Whether this worker can train at all (its data loads, its trainer runs), checked
    /// before it leases anything: `Err` says why not.
    fn check_environment(&self) -> Result<(), String> {
        Ok(())
    }

    fn run(
        &self,
        trial: &LeasedTrial,
        on_epoch: &mut dyn FnMut(u32, &Map<String, Value>) -> EpochControl,
        cancel: &AtomicBool,
    ) -> RunOutcome;
}
