//! Epoch reports: whether a study still runs and whether its pruner stops the trial.

use tuner_api::ReportAction;
use tuner_core::{PrunerSpec, StudySpec, StudyState, TrialState, stats::median};
use tuner_store::{Finish, TrialRecord};

use crate::{ApiError, AppState, settle::after_finish};

/// Whether the study's pruner stops `trial` at `epoch` with `value`.
pub async fn should_prune(
    state: &AppState,
    spec: &StudySpec,
    trial: &TrialRecord,
    epoch: u32,
    value: f64,
) -> Result<bool, ApiError> {
    let better = |a: f64, b: f64| spec.objective.direction.better(a, b);
    match spec.pruner {
        None | Some(PrunerSpec::None) => Ok(false),
        Some(PrunerSpec::Median {
            warmup_epochs,
            min_trials,
        }) => {
            if epoch <= warmup_epochs {
                return Ok(false);
            }
            let reports = state.store().epoch_values(trial.study_id, epoch).await?;
            let peers: Vec<f64> = reports
                .into_iter()
                .filter(|(id, trial_state, _)| {
                    *id != trial.id
                        && matches!(trial_state, TrialState::Completed | TrialState::Pruned)
                })
                .filter_map(|(_, _, value)| value)
                .collect();
            if peers.len() < min_trials as usize {
                return Ok(false);
            }
            Ok(better(median(&peers), value))
        }
        Some(PrunerSpec::Asha {
            min_resource,
            reduction_factor,
        }) => {
            if !is_rung(epoch, min_resource, reduction_factor) {
                return Ok(false);
            }
            // Every trial that reached this rung competes, running ones included
            // (asynchronous: nobody waits for a rung to fill).
            let reports = state.store().epoch_values(trial.study_id, epoch).await?;
            let mut rung: Vec<f64> = reports
                .into_iter()
                .filter(|(id, _, _)| *id != trial.id)
                .filter_map(|(_, _, value)| value)
                .collect();
            rung.push(value);
            rung.sort_by(|a, b| {
                if better(*a, *b) {
                    std::cmp::Ordering::Less
                } else if better(*b, *a) {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            });
            // The top 1/η go on (at least the best one).
            let promoted = (rung.len() / reduction_factor as usize).max(1);
            Ok(better(rung[promoted - 1], value))
        }
    }
}

/// Epochs `min_resource · factor^k`, k ≥ 0.
fn is_rung(epoch: u32, min_resource: u32, factor: u32) -> bool {
    let mut rung = u64::from(min_resource);
    while rung < u64::from(epoch) {
        rung *= u64::from(factor);
    }
    rung == u64::from(epoch)
}

/// The answer to an epoch report: stop if the study no longer runs or the pruner
/// says so (the trial is then PRUNED with its last value), else continue.
pub async fn after_report(
    state: &AppState,
    trial: &TrialRecord,
    epoch: u32,
    value: Option<f64>,
) -> Result<(ReportAction, Option<String>), ApiError> {
    let record = state.study(trial.study_id).await?;
    if matches!(record.state, StudyState::Stopped | StudyState::Failed) {
        return Ok((
            ReportAction::Stop,
            Some(format!("the study is {}", record.state)),
        ));
    }
    let spec = state.spec_of(&record)?;
    if let Some(value) = value
        && should_prune(state, &spec, trial, epoch, value).await?
    {
        let rule = match spec.pruner {
            Some(PrunerSpec::Asha {
                reduction_factor, ..
            }) => format!("not in the best 1/{reduction_factor} of the trials at that rung (ASHA)"),
            _ => "worse than the median of finished trials at that epoch".to_owned(),
        };
        let reason = format!("pruned at epoch {epoch}: {value} is {rule}");
        let pruned = state
            .store()
            .finish_trial_unleased(
                trial.id,
                state.now_ms(),
                Finish {
                    state: TrialState::Pruned,
                    value: Some(value),
                    metrics: None,
                    reason: Some(reason.clone()),
                },
            )
            .await?;
        after_finish(state, &pruned).await?;
        return Ok((ReportAction::Stop, Some(reason)));
    }
    Ok((ReportAction::Continue, None))
}
