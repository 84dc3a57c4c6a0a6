use std::sync::atomic::AtomicBool;

use serde_json::{Map, Value};
use tuner_api::LeasedTrial;
/// What to do after an epoch: the trainer's own answer type, so the built-in runner
/// passes it through.
pub use tuner_train::EpochControl;

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// Final metrics; the objective is read from them by name.
    Completed(Map<String, Value>),
    /// Why it failed (bad config, NaN loss, missing data, ...). Never a 0 score.
    Failed(String),
}

/// Trains one trial. Runs on a blocking thread; `on_epoch` sends each epoch's metrics
/// to the server and says whether to go on; `cancel` turns true when the worker is
/// shutting down or has lost its lease, and a runner should then return promptly.
pub trait TrialRunner: Send + Sync + 'static {
    /// The trainer kind this runner serves (`fashion-mnist-cnn`).
    fn trainer_kind(&self) -> &'static str;

    fn run(
        &self,
        trial: &LeasedTrial,
        on_epoch: &mut dyn FnMut(u32, &Map<String, Value>) -> EpochControl,
        cancel: &AtomicBool,
    ) -> RunOutcome;
}
