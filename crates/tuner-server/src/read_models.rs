//! Read models: wire views assembled from several reads of the state (the routes and
//! the live stream both answer with them).

use tuner_api::Study;
use tuner_core::StudyId;

use crate::{ApiError, AppState, views};

/// A study as the API shows it: its record with its counts and best trial.
pub(crate) async fn study_view(
    state: &AppState,
    id: StudyId,
    with_spec: bool,
) -> Result<Study, ApiError> {
    let record = state.study(id).await?;
    let spec = state.spec_of(&record)?;
    let counts = state.store().trial_counts(id).await?;
    let best = state.store().best_trial(id).await?;
    Ok(views::study(
        &record,
        &spec,
        counts,
        best.as_ref(),
        with_spec,
    ))
}
