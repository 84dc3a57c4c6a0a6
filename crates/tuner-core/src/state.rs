use crate::CoreError;

/// Where a trial is in its life. `Completed`, `Pruned` and `Failed` are final: a
/// finished trial never changes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TrialState {
    /// Created (or re-queued after a lost lease) and waiting for a worker.
    Pending,
    /// Leased to a worker.
    Running,
    Completed,
    Pruned,
    Failed,
}

impl TrialState {
    pub const ALL: [TrialState; 5] = [
        Self::Pending,
        Self::Running,
        Self::Completed,
        Self::Pruned,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Pruned => "pruned",
            Self::Failed => "failed",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Pruned | Self::Failed)
    }
}

impl std::str::FromStr for TrialState {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| CoreError::UnknownName {
                kind: "trial state",
                value: s.to_owned(),
            })
    }
}

impl std::fmt::Display for TrialState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a study is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum StudyState {
    /// Handing out trials.
    Running,
    /// Not handing out trials for now; `resume` continues it.
    Paused,
    /// Stopped by the user; running trials may still report and complete.
    Stopped,
    /// Budget spent (or search space exhausted) and no trial left in flight.
    Completed,
    /// Ended by the server, e.g. too many trials failing in a row.
    Failed,
}

impl StudyState {
    pub const ALL: [StudyState; 5] = [
        Self::Running,
        Self::Paused,
        Self::Stopped,
        Self::Completed,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    /// Whether the study can still hand out new trials at some point.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }
}

impl std::str::FromStr for StudyState {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| CoreError::UnknownName {
                kind: "study state",
                value: s.to_owned(),
            })
    }
}

impl std::fmt::Display for StudyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
