//! An in-memory copy of each study's trial outcomes, for the sampler.
//!
//! The server is the database's only writer, so after loading a study's trials once
//! it can keep their outcomes current itself instead of re-reading every trial on
//! every ask (which made `ask` O(trials)). A study's entry is loaded under its lock and
//! every change is applied under the same lock after it is committed, so a load can
//! never overwrite a newer outcome with an older one.
//!
//! It also counts the study's trials by state, so `ask` and `settle` check budget and
//! parallelism without a query. Every change is applied right after its commit, by
//! handlers that run to completion even if their client leaves (see the router), and
//! the reaper and `ask` take turns (`reaping`), so a re-lease is never overwritten by
//! the older re-queue. Between a commit and its application the counts lag, which at
//! most makes an `ask` wait a moment longer.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use tuner_core::{Params, StudyId, TrialId, TrialState, config_key};
use tuner_optim::{Observation, Outcome};
use tuner_store::{ReapedTrial, Store, StoreError, TrialCounts, TrialRecord};

#[derive(Default)]
pub struct Histories {
    studies: Mutex<HashMap<StudyId, Arc<tokio::sync::Mutex<Option<StudyHistory>>>>>,
    /// The study of every trial seen (trial ids are never reused, so an entry never
    /// points at the wrong study; one of a deleted study leads to a 404).
    trial_studies: Mutex<HashMap<TrialId, StudyId>>,
}

#[derive(Clone)]
struct StudyHistory {
    index: HashMap<TrialId, usize>,
    /// Shared with a running sampler; copied only if changed while one holds it.
    observations: Arc<Vec<Observation>>,
    /// `config_key` of every trial's params (params never change, so keys only grow).
    keys: Arc<HashSet<String>>,
    /// Each trial's state, by the same index as `observations`.
    states: Vec<TrialState>,
    counts: TrialCounts,
}

impl StudyHistory {
    fn load(trials: &[TrialRecord]) -> Self {
        let mut counts = TrialCounts::default();
        for t in trials {
            *count_of(&mut counts, t.state) += 1;
        }
        StudyHistory {
            index: trials.iter().enumerate().map(|(i, t)| (t.id, i)).collect(),
            observations: Arc::new(trials.iter().map(observation).collect()),
            keys: Arc::new(trials.iter().map(|t| config_key(&t.params)).collect()),
            states: trials.iter().map(|t| t.state).collect(),
            counts,
        }
    }

    /// Updates a known trial, or appends the next one by number. A trial further ahead
    /// (inserted by another server sharing the database) is left to the next catch-up,
    /// so index and number stay the same.
    fn apply(&mut self, trial: &TrialRecord, make: impl FnOnce() -> Observation) {
        match self.index.get(&trial.id) {
            Some(&i) => {
                Arc::make_mut(&mut self.observations)[i] = make();
                self.set_state(i, trial.state);
            }
            None if trial.number == self.states.len() as u64 => {
                let observation = make();
                Arc::make_mut(&mut self.keys).insert(config_key(&observation.params));
                let observations = Arc::make_mut(&mut self.observations);
                self.index.insert(trial.id, observations.len());
                observations.push(observation);
                self.states.push(trial.state);
                *count_of(&mut self.counts, trial.state) += 1;
            }
            None => {}
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            observations: self.observations.clone(),
            keys: self.keys.clone(),
            batch: Vec::new(),
            counts: self.counts,
        }
    }

    fn set_state(&mut self, i: usize, state: TrialState) {
        *count_of(&mut self.counts, self.states[i]) -= 1;
        *count_of(&mut self.counts, state) += 1;
        self.states[i] = state;
    }
}

fn count_of(counts: &mut TrialCounts, state: TrialState) -> &mut u64 {
    match state {
        TrialState::Pending => &mut counts.pending,
        TrialState::Running => &mut counts.running,
        TrialState::Completed => &mut counts.completed,
        TrialState::Pruned => &mut counts.pruned,
        TrialState::Failed => &mut counts.failed,
    }
}

/// What a sampler gets: every trial in number order, and their config keys.
#[derive(Clone, Default)]
pub struct Snapshot {
    /// Shared with the history (and other snapshots): never copied.
    pub observations: Arc<Vec<Observation>>,
    pub keys: Arc<HashSet<String>>,
    /// Trials a batch of asks handed out from this snapshot, after `observations`.
    pub batch: Vec<Observation>,
    pub counts: TrialCounts,
}

impl Snapshot {
    /// A re-queued trial was leased again (a batch of asks going on from here).
    pub fn leased_pending(&mut self) {
        self.counts.pending -= 1;
        self.counts.running += 1;
    }

    /// A new trial with these params was handed out: the next suggestion sees it as
    /// pending. It goes to `batch`, not into the shared lists: copying those on a
    /// batch's first insert cost O(trials) per batch (a replica with small batches spent
    /// most of its CPU cloning params).
    pub fn inserted(&mut self, params: &Params) {
        self.batch
            .push(Observation::new(params.clone(), Outcome::Pending));
        self.counts.running += 1;
    }

    /// How many trials there are, the batch's included.
    pub fn trials(&self) -> usize {
        self.observations.len() + self.batch.len()
    }
}

/// What a trial means to a sampler: its outcome, its cost from the stored timings, and
/// for a pruned trial the final value its pruner predicted (kept in its metrics), so a
/// restarted server rebuilds exactly what it had.
pub fn observation(t: &TrialRecord) -> Observation {
    let mut observation = Observation::new(t.params.clone(), outcome(t.state, t.value));
    observation.cost = cost_seconds(t);
    if t.state == TrialState::Pruned {
        observation.predicted = t
            .metrics
            .as_ref()
            .and_then(|m| m.get(PREDICTED_VALUE))
            .and_then(serde_json::Value::as_f64)
            .filter(|v| v.is_finite());
    }
    observation
}

/// The metric a pruner that extrapolates learning curves stores on the trials it stops.
pub const PREDICTED_VALUE: &str = "predicted_value";

/// Wall seconds per epoch the trial ran (lease to finish over its last reported epoch;
/// the whole run for trials that report no epochs), for completed and pruned trials.
/// Per epoch, so a trial pruned early counts as what a full run of it costs per epoch;
/// the study's epochs are the same for every trial, so the sampler's cost ratios are
/// those of full runs. Clamped at 1 ms: the store keeps milliseconds.
fn cost_seconds(t: &TrialRecord) -> Option<f64> {
    if !matches!(t.state, TrialState::Completed | TrialState::Pruned) {
        return None;
    }
    let elapsed_ms = t.finished_at? - t.started_at?;
    if elapsed_ms < 0 {
        return None;
    }
    let epochs = t.last_epoch.unwrap_or(1).max(1);
    Some((elapsed_ms.max(1) as f64 / 1000.0) / f64::from(epochs))
}

fn outcome(state: TrialState, value: Option<f64>) -> Outcome {
    match state {
        TrialState::Completed => value.map_or(Outcome::Failed, Outcome::Completed),
        TrialState::Pruned => Outcome::Pruned(value),
        TrialState::Failed => Outcome::Failed,
        TrialState::Pending | TrialState::Running => Outcome::Pending,
    }
}

impl Histories {
    fn entry(&self, id: StudyId) -> Arc<tokio::sync::Mutex<Option<StudyHistory>>> {
        let mut studies = self.studies.lock().unwrap_or_else(|e| e.into_inner());
        studies.entry(id).or_default().clone()
    }

    /// The study's history, loaded from the store the first time.
    async fn loaded<'g>(
        guard: &'g mut Option<StudyHistory>,
        store: &dyn Store,
        id: StudyId,
    ) -> Result<&'g mut StudyHistory, StoreError> {
        if guard.is_none() {
            let trials = store.trial_summaries(id).await?;
            *guard = Some(StudyHistory::load(&trials));
        }
        Ok(guard.as_mut().expect("loaded above"))
    }

    /// Every trial of the study, in number order.
    pub async fn snapshot(&self, store: &dyn Store, id: StudyId) -> Result<Snapshot, StoreError> {
        let entry = self.entry(id);
        let mut guard = entry.lock().await;
        Ok(Self::loaded(&mut guard, store, id).await?.snapshot())
    }

    /// The study a trial belongs to, if this server has seen the trial.
    pub fn study_of(&self, trial: TrialId) -> Option<StudyId> {
        self.trial_studies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&trial)
            .copied()
    }

    /// Applies a trial's committed state (a new trial is appended).
    pub async fn record(&self, trial: &TrialRecord) {
        self.trial_studies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(trial.id, trial.study_id);
        self.apply(trial.study_id, trial, || observation(trial))
            .await;
    }

    /// Brings the study's history up to date with the database, for servers that share
    /// it: `fetch(next_number, unfinished)` must return every trial numbered
    /// `next_number` or more, by number, and the current state of each `unfinished` one
    /// (finished trials never change, so the rest is known). The committed trial numbers
    /// are always a prefix 0..n (a number is taken under the study's lock and released
    /// at commit), so one read never sees a gap; under the ask's lock in the database,
    /// nothing is inserted until the ask itself commits.
    pub async fn catch_up<F, Fut>(
        &self,
        store: &dyn Store,
        id: StudyId,
        fetch: F,
    ) -> Result<Snapshot, StoreError>
    where
        F: FnOnce(u64, Vec<(TrialId, TrialState)>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<TrialRecord>, StoreError>>,
    {
        let entry = self.entry(id);
        let mut guard = entry.lock().await;
        let h = Self::loaded(&mut guard, store, id).await?;
        let unfinished: Vec<(TrialId, TrialState)> = h
            .index
            .iter()
            .filter(|&(_, &i)| !h.states[i].is_finished())
            .map(|(&trial, &i)| (trial, h.states[i]))
            .collect();
        let fresh = fetch(h.states.len() as u64, unfinished).await?;
        {
            let mut studies = self.trial_studies.lock().unwrap_or_else(|e| e.into_inner());
            for t in &fresh {
                studies.insert(t.id, t.study_id);
            }
        }
        for t in &fresh {
            h.apply(t, || observation(t));
        }
        Ok(h.snapshot())
    }

    /// Applies the outcome of leases the reaper took back.
    pub async fn record_reaped(&self, reaped: &[ReapedTrial]) {
        for r in reaped {
            let entry = self.entry(r.study_id);
            let mut guard = entry.lock().await;
            if let Some(h) = guard.as_mut()
                && let Some(&i) = h.index.get(&r.id)
            {
                Arc::make_mut(&mut h.observations)[i].outcome = outcome(r.state, None);
                h.set_state(i, r.state);
            }
        }
    }

    async fn apply(&self, study: StudyId, trial: &TrialRecord, make: impl FnOnce() -> Observation) {
        let entry = self.entry(study);
        let mut guard = entry.lock().await;
        // Not loaded yet: the next load reads the committed state.
        let Some(h) = guard.as_mut() else { return };
        h.apply(trial, make);
    }

    pub fn forget(&self, id: StudyId) {
        self.studies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tuner_core::{Direction, ParamValue, Params};
    use tuner_store::{Finish, LeaseGrant, NewEpoch, NewStudy, SqliteStore, StudyRecord};

    use super::*;

    fn grant(token: &str, now: i64) -> LeaseGrant {
        LeaseGrant {
            token: token.into(),
            worker: None,
            now,
            expires_at: now + 100,
        }
    }

    /// A SQLite store in a temporary directory with one study in it.
    async fn store_with_a_study() -> (tempfile::TempDir, SqliteStore, StudyRecord) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("h.db")).await.unwrap();
        let study = store
            .create_study(
                NewStudy {
                    name: "h".into(),
                    spec: json!({}),
                    direction: Direction::Maximize,
                    max_retries: 0,
                },
                0,
            )
            .await
            .unwrap();
        (dir, store, study)
    }

    /// After any sequence of changes recorded as the handlers do, the cached history
    /// equals a fresh load from the database.
    #[tokio::test]
    async fn recorded_changes_match_a_fresh_load() {
        let (_dir, store, study) = store_with_a_study().await;
        let histories = Histories::default();
        assert!(
            histories
                .snapshot(&store, study.id)
                .await
                .unwrap()
                .observations
                .is_empty()
        );
        let mut trials = Vec::new();
        for i in 0..4 {
            let mut p = Params::new();
            p.insert("x".into(), ParamValue::Int(i));
            let t = store
                .insert_leased_trial(study.id, &p, &grant(&format!("t{i}"), 0))
                .await
                .unwrap();
            histories.record(&t).await;
            trials.push(t);
        }
        let held_by_a_sampler = histories
            .snapshot(&store, study.id)
            .await
            .unwrap()
            .observations;
        let finish = |state, value| Finish {
            state,
            value,
            metrics: None,
            reason: Some("r".into()),
        };
        let done = store
            .finish_trial(
                trials[0].id,
                "t0",
                10,
                finish(TrialState::Completed, Some(0.5)),
            )
            .await
            .unwrap();
        histories.record(&done).await;
        let failed = store
            .finish_trial(trials[1].id, "t1", 10, finish(TrialState::Failed, None))
            .await
            .unwrap();
        histories.record(&failed).await;
        let reaped = store.reap_expired_leases(1_000).await.unwrap();
        assert_eq!(reaped.len(), 2);
        histories.record_reaped(&reaped).await;

        let cached = histories.snapshot(&store, study.id).await.unwrap();
        let fresh = Histories::default()
            .snapshot(&store, study.id)
            .await
            .unwrap();
        assert_eq!(cached.observations, fresh.observations);
        assert_eq!(cached.keys, fresh.keys);
        assert_eq!(cached.counts, fresh.counts);
        assert_eq!(cached.counts, store.trial_counts(study.id).await.unwrap());
        assert_eq!(cached.counts.completed, 1);
        assert_eq!(cached.keys.len(), 4);
        let cached = cached.observations;
        assert_eq!(cached[0].outcome, Outcome::Completed(0.5));
        assert_eq!(cached[3].outcome, Outcome::Failed, "out of retries");
        // A sampler's snapshot is not changed under it.
        assert!(
            held_by_a_sampler
                .iter()
                .all(|o| o.outcome == Outcome::Pending)
        );
    }

    /// Costs come from the stored timings (seconds per epoch run) and a curve pruner's
    /// prediction from the pruned trial's metrics: what a restarted server reads back.
    #[tokio::test]
    async fn costs_and_predictions_are_read_from_the_stored_trials() {
        let (_dir, store, study) = store_with_a_study().await;
        let histories = Histories::default();
        let mut finished = Vec::new();
        // (lease time, epochs reported, finish time, state, metrics)
        let runs = [
            (1_000, 2, 7_000, TrialState::Completed, None),
            (
                2_000,
                1,
                4_000,
                TrialState::Pruned,
                Some(json!({PREDICTED_VALUE: 0.5})),
            ),
            (3_000, 0, 8_000, TrialState::Completed, None),
            (3_000, 1, 9_000, TrialState::Failed, None),
        ];
        for (i, (start, epochs, end, state, metrics)) in runs.into_iter().enumerate() {
            let mut p = Params::new();
            p.insert("x".into(), ParamValue::Int(i as i64));
            let token = format!("t{i}");
            let t = store
                .insert_leased_trial(
                    study.id,
                    &p,
                    &LeaseGrant {
                        expires_at: start + 100_000,
                        ..grant(&token, start)
                    },
                )
                .await
                .unwrap();
            histories.record(&t).await;
            for epoch in 1..=epochs {
                let report = NewEpoch {
                    epoch,
                    value: Some(0.1),
                    metrics: json!({}),
                };
                store
                    .report_epoch(t.id, &token, start + 10, start + 100_000, &report)
                    .await
                    .unwrap();
            }
            let done = store
                .finish_trial(
                    t.id,
                    &token,
                    end,
                    Finish {
                        state,
                        value: (state != TrialState::Failed).then_some(0.2),
                        metrics,
                        reason: None,
                    },
                )
                .await
                .unwrap();
            histories.record(&done).await;
            finished.push(done);
        }
        let cached = histories.snapshot(&store, study.id).await.unwrap();
        let fresh = Histories::default()
            .snapshot(&store, study.id)
            .await
            .unwrap();
        assert_eq!(cached.observations, fresh.observations);
        let costs: Vec<Option<f64>> = fresh.observations.iter().map(|o| o.cost).collect();
        assert_eq!(costs, [Some(3.0), Some(2.0), Some(5.0), None]);
        let predicted: Vec<Option<f64>> = fresh.observations.iter().map(|o| o.predicted).collect();
        assert_eq!(predicted, [None, Some(0.5), None, None]);
    }
}
