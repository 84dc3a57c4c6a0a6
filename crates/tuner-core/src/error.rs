use std::fmt;

/// One problem found in a document, with the dotted path of the offending field
/// (`parameters.lr.min`, `budget.max_trials`, or `""` for the whole document).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The search-space document is not valid; every problem found is listed.
    #[error("invalid search space: {}", join(.0))]
    InvalidSpec(Vec<Problem>),
    /// A parameter set does not fit the search space.
    #[error("params do not fit the search space: {}", join(.0))]
    InvalidParams(Vec<Problem>),
    #[error("unknown {kind} `{value}`")]
    UnknownName { kind: &'static str, value: String },
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
