//! `ask` for servers that share their database (replicas on PostgreSQL).
//!
//! Every decision is made inside one transaction that holds the study against the asks
//! of every server ([`tuner_store::Store::begin_ask`]): the study's state, parallelism,
//! budget, the re-queued trial to hand out again, the sampler's history and the new
//! trial's number all come from the database's trials as of that lock, caught up into
//! this server's cache — not from what this server alone has seen.
//!
//! The asks of one study waiting in this server are served together: whoever gets the
//! study's local lock takes every ask queued so far and answers them all from one
//! transaction, so a burst of asks costs one lock and one commit, not one each. Each
//! answer is sent only after that commit.

use std::sync::Mutex;

use tokio::sync::oneshot;
use tuner_core::{StudyId, StudyState};
use tuner_optim::OptimError;
use tuner_store::{AskTxn, TrialCounts};

use crate::{
    ApiError, AppState,
    lease::{AskOutcome, leased, new_grant, suggest},
};

/// One ask waiting for its study's transaction.
struct Waiter {
    worker: Option<String>,
    answer: oneshot::Sender<Result<AskOutcome, ApiError>>,
}

/// The asks of one study waiting in this server.
#[derive(Default)]
pub(crate) struct AskQueue {
    waiting: Mutex<Vec<Waiter>>,
}

impl AskQueue {
    fn push(&self, waiter: Waiter) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(waiter);
    }

    fn take(&self) -> Vec<Waiter> {
        std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn is_empty(&self) -> bool {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

/// Leases the study's next trial, deciding in the database.
pub async fn ask(
    state: &AppState,
    id: StudyId,
    worker: Option<String>,
) -> Result<AskOutcome, ApiError> {
    let queue = state.ask_queue(id);
    let (answer, answered) = oneshot::channel();
    queue.push(Waiter { worker, answer });
    {
        let lock = state.ask_lock(id);
        let _serving = lock.lock().await;
        // Empty when the one who held the lock before took this ask along.
        if !queue.is_empty() {
            serve(state, id, &queue).await;
        }
    }
    answered
        .await
        .map_err(|_| ApiError::Internal("an ask was dropped unanswered".into()))?
}

/// Answers every waiter, from one transaction. The waiters are taken once the
/// database's lock is held: the asks that arrived while this server waited for another
/// server's transaction are served by this one, not by the next.
async fn serve(state: &AppState, id: StudyId, queue: &AskQueue) {
    let txn = match state.store().begin_ask(id).await {
        Ok(txn) => txn,
        Err(e) => {
            let e = ApiError::from(e);
            for waiter in queue.take() {
                let _ = waiter.answer.send(Err(e.replicate()));
            }
            return;
        }
    };
    let batch = queue.take();
    let workers: Vec<Option<String>> = batch.iter().map(|w| w.worker.clone()).collect();
    match decide(state, id, txn, workers).await {
        Ok(outcomes) => {
            for (waiter, outcome) in batch.into_iter().zip(outcomes) {
                let _ = waiter.answer.send(Ok(outcome));
            }
        }
        Err(e) => {
            for waiter in batch {
                let _ = waiter.answer.send(Err(e.replicate()));
            }
        }
    }
}

/// One outcome per worker, in order, all committed together.
async fn decide(
    state: &AppState,
    id: StudyId,
    mut txn: Box<dyn AskTxn>,
    workers: Vec<Option<String>>,
) -> Result<Vec<AskOutcome>, ApiError> {
    let record = txn.study().clone();
    match record.state {
        StudyState::Running => {}
        StudyState::Paused => return Ok(workers.iter().map(|_| AskOutcome::Wait).collect()),
        _ => return Ok(workers.iter().map(|_| AskOutcome::Done).collect()),
    }
    let spec = state.spec_of(&record)?;
    let held = &mut txn;
    // The study's history as this batch changes it: what the sampler sees for the next
    // ask includes the trials handed out to the asks before it.
    let mut working = state
        .histories()
        .catch_up(state.store(), id, move |next, unfinished| async move {
            held.trials_from(next, &unfinished).await
        })
        .await?;
    // Filled in order; new trials are inserted together at the end of the batch, their
    // places held meanwhile.
    let mut outcomes: Vec<Option<AskOutcome>> = Vec::with_capacity(workers.len());
    let mut to_insert: Vec<(usize, tuner_core::Params, tuner_store::LeaseGrant)> = Vec::new();
    let mut handed_out = Vec::new();
    // Set once nothing more can be handed out: the asks after it wait or are done.
    let mut over = false;
    for worker in workers {
        if over {
            outcomes.push(Some(if working.counts.in_flight() > 0 {
                AskOutcome::Wait
            } else {
                AskOutcome::Done
            }));
            continue;
        }
        if working.counts.running >= u64::from(spec.budget.parallelism) {
            outcomes.push(Some(AskOutcome::Wait));
            continue;
        }
        let grant = new_grant(state, worker);
        if working.counts.pending > 0
            && let Some(trial) = txn.lease_pending_trial(&grant).await?
        {
            working.leased_pending();
            handed_out.push(trial.clone());
            outcomes.push(Some(leased(state, &record, &spec, trial)));
            continue;
        }
        if working.counts.spent() >= u64::from(spec.budget.max_trials) {
            let reason = format!("budget of {} trials spent", spec.budget.max_trials);
            outcomes.push(Some(
                nothing_left(&mut txn, id, working.counts, &reason, grant.now).await?,
            ));
            over = true;
            continue;
        }
        match suggest(&spec, working.clone()).await? {
            Ok(params) => {
                working.inserted(&params);
                to_insert.push((outcomes.len(), params, grant));
                outcomes.push(None);
            }
            Err(e @ (OptimError::Exhausted { .. } | OptimError::NoFreshConfig { .. })) => {
                let reason = e.to_string();
                outcomes.push(Some(
                    nothing_left(&mut txn, id, working.counts, &reason, grant.now).await?,
                ));
                over = true;
            }
        }
    }
    let new: Vec<(tuner_core::Params, tuner_store::LeaseGrant)> = to_insert
        .iter()
        .map(|(_, params, grant)| (params.clone(), grant.clone()))
        .collect();
    let inserted = txn.insert_leased_trials(&new).await?;
    for ((place, _, _), trial) in to_insert.iter().zip(inserted) {
        handed_out.push(trial.clone());
        outcomes[*place] = Some(leased(state, &record, &spec, trial));
    }
    if let Err(e) = txn.commit().await {
        // The cache was caught up inside the rolled-back transaction, which is still
        // what the database holds; only this batch's trials never existed.
        return Err(e.into());
    }
    if over {
        state.drop_cached_study(id);
    }
    for trial in &handed_out {
        state.histories().record(trial).await;
        tracing::info!(study = %id, trial = %trial.id, number = trial.number, "trial started");
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every place filled"))
        .collect())
}

/// The study has nothing more to hand out: it waits for what is in flight (which may
/// be re-queued), else it is completed (once) in the batch's transaction.
async fn nothing_left(
    txn: &mut Box<dyn AskTxn>,
    id: StudyId,
    counts: TrialCounts,
    reason: &str,
    now: i64,
) -> Result<AskOutcome, ApiError> {
    if counts.in_flight() > 0 {
        return Ok(AskOutcome::Wait);
    }
    tracing::info!(study = %id, %reason, "study completed");
    txn.set_study_state(StudyState::Completed, Some(reason), now)
        .await?;
    Ok(AskOutcome::Done)
}
