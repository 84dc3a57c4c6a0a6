//! Store records → wire types.

use tuner_api::{BestSummary, EpochReport, Objective, Study, Timestamp, Trial, TrialCounts};
use tuner_core::StudySpec;
use tuner_store::{StudyRecord, TrialRecord};

pub fn counts(c: tuner_store::TrialCounts) -> TrialCounts {
    TrialCounts {
        pending: c.pending,
        running: c.running,
        completed: c.completed,
        pruned: c.pruned,
        failed: c.failed,
        total: c.total(),
    }
}

pub fn objective(spec: &StudySpec) -> Objective {
    Objective {
        metric: spec.objective.metric.clone(),
        direction: spec.objective.direction,
    }
}

pub fn study(
    record: &StudyRecord,
    spec: &StudySpec,
    trial_counts: tuner_store::TrialCounts,
    best: Option<&TrialRecord>,
    with_spec: bool,
) -> Study {
    Study {
        id: record.id,
        name: record.name.clone(),
        state: record.state,
        state_reason: record.state_reason.clone(),
        objective: objective(spec),
        optimizer: spec.optimizer.kind.as_str().to_owned(),
        max_trials: spec.budget.max_trials,
        counts: counts(trial_counts),
        best: best.and_then(|t| {
            Some(BestSummary {
                trial_id: t.id,
                number: t.number,
                value: t.value?,
                params: t.params.clone(),
            })
        }),
        created_at: Timestamp::from_unix_ms(record.created_at),
        updated_at: Timestamp::from_unix_ms(record.updated_at),
        spec: with_spec.then(|| record.spec.clone()),
    }
}

pub fn trial(t: &TrialRecord) -> Trial {
    Trial {
        id: t.id,
        study_id: t.study_id,
        number: t.number,
        state: t.state,
        params: t.params.clone(),
        value: t.value,
        metrics: t.metrics.clone(),
        intermediate: t
            .epochs
            .iter()
            .map(|e| EpochReport {
                epoch: e.epoch,
                value: e.value,
                metrics: e.metrics.clone(),
                reported_at: Timestamp::from_unix_ms(e.reported_at),
            })
            .collect(),
        last_epoch: t.last_epoch,
        worker: t.worker.clone(),
        attempts: t.attempts,
        failure_reason: t.failure_reason.clone(),
        created_at: Timestamp::from_unix_ms(t.created_at),
        started_at: t.started_at.map(Timestamp::from_unix_ms),
        finished_at: t.finished_at.map(Timestamp::from_unix_ms),
        duration_seconds: match (t.started_at, t.finished_at) {
            (Some(s), Some(f)) => Some((f - s) as f64 / 1000.0),
            _ => None,
        },
    }
}
