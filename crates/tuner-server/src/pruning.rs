//! Epoch reports: whether a study still runs and whether its pruner stops the trial.

use std::collections::HashMap;

use tuner_api::ReportAction;
use tuner_core::{PrunerSpec, StudySpec, StudyState, TrialState, stats::median};
use tuner_store::{Finish, TrialRecord};

use crate::{
    ApiError, AppState,
    curve::{self, Judged, PeerCurve},
    history::PREDICTED_VALUE,
    settle::after_finish,
};

/// A pruner's decision to stop a trial.
#[derive(Debug, Clone, PartialEq)]
pub struct Stop {
    /// Why, for the trial's failure reason and the worker's answer.
    pub rule: String,
    /// The final value the pruner predicted, if it predicts one (kept in the trial's
    /// metrics for the sampler).
    pub predicted: Option<f64>,
}

/// Whether the study's pruner stops `trial` at `epoch` with `value`, and why.
pub async fn should_prune(
    state: &AppState,
    spec: &StudySpec,
    trial: &TrialRecord,
    epoch: u32,
    value: f64,
) -> Result<Option<Stop>, ApiError> {
    let better = |a: f64, b: f64| spec.objective.direction.better(a, b);
    let stop_if = |stop: bool, rule: String| {
        stop.then_some(Stop {
            rule,
            predicted: None,
        })
    };
    // At the trainer's last epoch the work is done: stopping saves nothing and would
    // turn a fully trained trial's final value into a pruned one.
    if spec.trainer.epochs.is_some_and(|last| epoch >= last) {
        return Ok(None);
    }
    match spec.pruner {
        None | Some(PrunerSpec::None) => Ok(None),
        Some(PrunerSpec::Median {
            warmup_epochs,
            min_trials,
        }) => {
            if epoch <= warmup_epochs {
                return Ok(None);
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
                return Ok(None);
            }
            Ok(stop_if(
                better(median(&peers), value),
                "worse than the median of finished trials at that epoch".to_owned(),
            ))
        }
        Some(PrunerSpec::Asha {
            min_resource,
            reduction_factor,
        }) => {
            if !is_rung(epoch, min_resource, reduction_factor) {
                return Ok(None);
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
            Ok(stop_if(
                better(rung[promoted - 1], value),
                format!("not in the best 1/{reduction_factor} of the trials at that rung (ASHA)"),
            ))
        }
        Some(PrunerSpec::Curve {
            warmup_epochs,
            min_trials,
        }) => {
            // Validation requires trainer.epochs with this pruner; the last epoch is
            // never judged (above).
            let Some(last_epoch) = spec.trainer.epochs else {
                return Ok(None);
            };
            if epoch <= warmup_epochs {
                return Ok(None);
            }
            let store = state.store();
            let at_epoch = store.epoch_values(trial.study_id, epoch).await?;
            let completed = |reports: Vec<(tuner_core::TrialId, TrialState, Option<f64>)>| {
                reports
                    .into_iter()
                    .filter(|(id, s, _)| *id != trial.id && *s == TrialState::Completed)
                    .filter_map(|(id, _, v)| Some((id, v?)))
                    .collect::<HashMap<_, _>>()
            };
            let finals = completed(store.epoch_values(trial.study_id, last_epoch).await?);
            // The trial's own value one epoch earlier: its epochs only, not the study's.
            let previous = if epoch > 1 {
                store
                    .epochs_of_trials(&[trial.id])
                    .await?
                    .remove(&trial.id)
                    .and_then(|epochs| epochs.into_iter().find(|e| e.epoch == epoch - 1))
                    .and_then(|e| e.value)
            } else {
                None
            };
            let peers: Vec<PeerCurve> = completed(at_epoch)
                .into_iter()
                .filter_map(|(id, at_epoch)| {
                    Some(PeerCurve {
                        at_epoch,
                        last: *finals.get(&id)?,
                    })
                })
                .collect();
            let judged = Judged {
                epoch,
                value,
                previous,
            };
            Ok(
                match curve::judge(
                    spec.objective.direction,
                    last_epoch,
                    min_trials,
                    &peers,
                    judged,
                ) {
                    Some(v) if v.prune => Some(Stop {
                        rule: format!(
                            "its curve predicts {:.4} at epoch {last_epoch} (at best {:.4}), \
                             short of the best completed trial's {:.4}",
                            v.predicted, v.optimistic, v.incumbent
                        ),
                        predicted: Some(v.predicted),
                    }),
                    _ => None,
                },
            )
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
        && let Some(stop) = should_prune(state, &spec, trial, epoch, value).await?
    {
        let reason = match stop.predicted {
            Some(_) => format!("pruned at epoch {epoch} with {value}: {}", stop.rule),
            None => format!("pruned at epoch {epoch}: {value} is {}", stop.rule),
        };
        // The prediction goes with the trial, so the sampler reads it back from the
        // database like every other outcome (after a restart too).
        let metrics = stop
            .predicted
            .map(|p| serde_json::json!({ PREDICTED_VALUE: p }));
        let pruned = state
            .store()
            .finish_trial_unleased(
                trial.id,
                state.now_ms(),
                Finish {
                    state: TrialState::Pruned,
                    value: Some(value),
                    metrics,
                    reason: Some(reason.clone()),
                },
            )
            .await?;
        after_finish(state, &pruned).await?;
        return Ok((ReportAction::Stop, Some(reason)));
    }
    Ok((ReportAction::Continue, None))
}
