//! tuner-core: the vocabulary every other tuner crate speaks.
//!
//! Owns typed ids, trial states, parameter values, and the versioned search-space
//! document (parsing, validation with a path for every problem, condition logic and
//! encoding to and from the unit cube), the config a trial trains ([`StudySpec::config`]:
//! its params over the study's `fixed` values) and the little statistics several crates
//! share ([`stats`]).
//!
//! Must not depend on any other tuner crate, on async runtimes, on I/O beyond
//! parsing strings, or on HTTP/SQL libraries: everything points toward this crate.

pub mod cnn;
mod error;
mod ids;
mod params;
mod read;
pub mod space;
mod state;
pub mod stats;
mod validate;

pub use error::{CoreError, Problem};
pub use ids::{StudyId, TrialId};
pub use params::{ParamValue, Params, config_key};
pub use space::{
    Budget, Condition, Direction, Domain, Objective, OptimizerKind, OptimizerSpec, ParamSpec,
    PrunerSpec, SearchSpace, StudySpec, TrainerKind, TrainerSpec,
};
pub use state::{StudyState, TrialState};
pub use validate::{SpecFormat, parse_spec, parse_spec_value, sets_optimizer_seed};

/// Hard limits on documents, so a hostile or mistaken file cannot exhaust the server.
pub mod limits {
    /// Most parameters one study may tune.
    pub const MAX_PARAMETERS: usize = 1_000;
    /// Most values one categorical parameter may list.
    pub const MAX_CATEGORIES: usize = 10_000;
    /// Longest parameter or study name.
    pub const MAX_NAME_LEN: usize = 200;
    /// Largest `budget.max_trials`.
    pub const MAX_TRIALS: i64 = 1_000_000;
    /// Largest `budget.parallelism`.
    pub const MAX_PARALLELISM: i64 = 4_096;
}
