//! One suite, written against `dyn Store`, that both backends pass: every case runs as
//! `sqlite::<case>` and `pg::<case>`, each on a fresh database (see `support`). Where a
//! case involves several server replicas, the PostgreSQL run uses independent `PgStore`
//! handles on one database; SQLite, which has one server per database, uses its one
//! store. The `pg_only` cases check what only exists with several connections writing
//! at once (late commits, row locks).

mod support;

use std::{collections::HashSet, sync::Arc, time::Duration};

use serde_json::json;
use support::Backend;
use tuner_core::{Direction, ParamValue, Params, StudyId, StudyState, TrialId, TrialState};
use tuner_store::{
    Finish, LeaseGrant, NewEpoch, NewStudy, Store, StoreError, StudyDump, StudyRecord, TrialEvent,
};

/// Generates `sqlite::<case>` and `pg::<case>` for each case.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = crate::Backend::sqlite();
                    crate::$case(&backend).await;
                    backend.finish().await;
                }
            )*
        }
        mod pg {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(backend) = crate::Backend::pg().await else { return };
                    crate::$case(&backend).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

/// Generates `pg_only::<case>` for each case.
macro_rules! pg_only {
    ($($case:ident),* $(,)?) => {
        mod pg_only {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(backend) = crate::Backend::pg().await else { return };
                    crate::$case(&backend).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

conformance!(
    studies_are_created_listed_and_deleted,
    summaries_carry_what_a_cost_model_and_the_curve_pruner_left,
    concurrent_inserts_from_replicas_get_dense_unique_numbers,
    a_duplicate_config_is_refused_and_nothing_is_stored,
    only_the_lease_holder_may_touch_a_running_trial,
    the_schema_itself_refuses_changes_to_finished_trials,
    expired_leases_are_requeued_then_failed_after_retries,
    racing_reapers_requeue_and_fail_each_trial_once,
    racing_leases_hand_out_each_pending_trial_once,
    concurrent_finishes_with_one_token_change_the_trial_once,
    best_trial_follows_the_direction_and_prefers_earlier_ties,
    epoch_values_are_what_each_trial_reported_at_that_epoch,
    data_survives_reopening,
    every_trial_change_is_logged_as_an_event,
    a_reader_resuming_from_its_cursor_sees_every_event_once_in_order,
    trials_changed_after_follow_the_event_cursor,
    counts_follow_every_state_change,
    concurrent_finishes_are_answered_one_by_one,
    deleting_a_study_while_its_trials_change,
    asks_from_replicas_keep_the_budget_exact,
    an_extended_study_gets_its_new_spec_and_state_in_one_write,
    a_failure_streak_counts_only_trials_finished_since_a_resume,
    an_ask_dropped_before_commit_leaves_nothing,
    an_ask_sees_every_replicas_trials_as_they_are,
    a_study_is_exported_and_imported_with_everything_but_its_ids,
    a_failing_import_leaves_nothing_behind,
    a_batch_of_asks_inserts_its_trials_in_order,
);

pg_only!(
    replicas_starting_together_migrate_once,
    an_event_committed_late_is_not_skipped_by_a_reader,
    a_held_study_lock_does_not_block_finishing_a_trial,
);

fn new_study(direction: Direction, max_retries: u32) -> NewStudy {
    NewStudy {
        name: "s".into(),
        spec: json!({"name": "s", "budget": {"max_trials": 20}, "a": 1.0e-4}),
        direction,
        max_retries,
    }
}

fn params(x: i64) -> Params {
    let mut p = Params::new();
    p.insert("x".into(), ParamValue::Int(x));
    p
}

fn grant(token: &str, now: i64, ttl: i64) -> LeaseGrant {
    LeaseGrant {
        token: token.into(),
        worker: Some("w".into()),
        now,
        expires_at: now + ttl,
    }
}

fn epoch(epoch: u32, value: f64, metrics: serde_json::Value) -> NewEpoch {
    NewEpoch {
        epoch,
        value: Some(value),
        metrics,
    }
}

fn completed(value: f64) -> Finish {
    Finish {
        state: TrialState::Completed,
        value: Some(value),
        metrics: Some(json!({"acc": value})),
        reason: None,
    }
}

fn failed(reason: &str) -> Finish {
    Finish {
        state: TrialState::Failed,
        value: None,
        metrics: None,
        reason: Some(reason.into()),
    }
}

/// What a server's ask does in its transaction, reduced to the budget: count what the
/// database has (catching up from nothing), insert one more if the budget allows.
async fn ask_within_budget(store: &dyn Store, study: StudyId, budget: u64, k: i64) -> Option<u64> {
    let mut txn = store.begin_ask(study).await.unwrap();
    let trials = txn.trials_from(0, &[]).await.unwrap();
    let numbers: Vec<u64> = trials.iter().map(|t| t.number).collect();
    assert_eq!(numbers, (0..trials.len() as u64).collect::<Vec<_>>());
    if trials.len() as u64 >= budget {
        return None;
    }
    let t = txn
        .insert_leased_trial(&params(k), &grant(&format!("a{k}"), 0, 1_000))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    Some(t.number)
}

/// Many asks at once on two replicas, each deciding in its own transaction: exactly
/// the budget is handed out, with dense numbers and no error.
async fn asks_from_replicas_keep_the_budget_exact(b: &Backend) {
    let one = b.open().await;
    let two = b.replica(&one).await;
    let study = one
        .create_study(new_study(Direction::Maximize, 0), 0)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..24)
        .map(|k| {
            let store = if k % 2 == 0 { one.clone() } else { two.clone() };
            tokio::spawn(async move { ask_within_budget(store.as_ref(), study.id, 10, k).await })
        })
        .collect();
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.extend(t.await.unwrap());
    }
    numbers.sort();
    assert_eq!(numbers, (0..10).collect::<Vec<u64>>());
    assert_eq!(two.trial_counts(study.id).await.unwrap().running, 10);
    // Either handle reads how many trials exist, committed by both.
    assert_eq!(one.trials_created(study.id).await.unwrap(), 10);
    assert_eq!(two.trials_created(study.id).await.unwrap(), 10);
    assert!(matches!(
        one.begin_ask(StudyId(9_999)).await,
        Err(StoreError::StudyNotFound(_))
    ));
    assert!(matches!(
        two.trials_created(StudyId(9_999)).await,
        Err(StoreError::StudyNotFound(_))
    ));
}

/// An ask that fails or is abandoned half-way changes nothing and holds nothing.
async fn an_ask_dropped_before_commit_leaves_nothing(b: &Backend) {
    let one = b.open().await;
    let study = one
        .create_study(new_study(Direction::Maximize, 0), 0)
        .await
        .unwrap();
    {
        let mut txn = one.begin_ask(study.id).await.unwrap();
        txn.insert_leased_trial(&params(1), &grant("gone", 0, 1_000))
            .await
            .unwrap();
        txn.set_study_state(StudyState::Completed, Some("no"), 5)
            .await
            .unwrap();
        // Dropped: rolled back.
    }
    let two = b.replica(&one).await;
    // The lock is free again (a second ask would otherwise wait for ever).
    let number = tokio::time::timeout(
        Duration::from_secs(20),
        ask_within_budget(two.as_ref(), study.id, 5, 2),
    )
    .await
    .expect("the dropped ask's lock was released");
    assert_eq!(number, Some(0));
    assert_eq!(
        one.get_study(study.id).await.unwrap().state,
        StudyState::Running
    );
    assert_eq!(one.trial_summaries(study.id).await.unwrap().len(), 1);
}

/// A replica serving several asks at once inserts their trials together: numbered in
/// the order given, after what exists; one duplicate refuses the whole batch.
async fn a_batch_of_asks_inserts_its_trials_in_order(b: &Backend) {
    let store = b.open().await;
    let study = store
        .create_study(new_study(Direction::Maximize, 0), 0)
        .await
        .unwrap();
    store
        .insert_leased_trial(study.id, &params(100), &grant("first", 0, 1_000))
        .await
        .unwrap();
    let batch: Vec<_> = (0..5)
        .map(|k| (params(k), grant(&format!("b{k}"), 10, 1_000)))
        .collect();
    let mut txn = store.begin_ask(study.id).await.unwrap();
    let trials = txn.insert_leased_trials(&batch).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(
        trials
            .iter()
            .map(|t| (t.number, t.params.clone(), t.lease_token.clone().unwrap()))
            .collect::<Vec<_>>(),
        (0..5)
            .map(|k| (k as u64 + 1, params(k), format!("b{k}")))
            .collect::<Vec<_>>()
    );
    assert_eq!(store.trial_counts(study.id).await.unwrap().running, 6);

    // One configuration already in the study: nothing of the batch is kept.
    let clash = vec![
        (params(50), grant("c0", 20, 1_000)),
        (params(3), grant("c1", 20, 1_000)),
    ];
    let mut txn = store.begin_ask(study.id).await.unwrap();
    assert!(matches!(
        txn.insert_leased_trials(&clash).await,
        Err(StoreError::DuplicateConfig(_))
    ));
    drop(txn);
    assert_eq!(store.trial_summaries(study.id).await.unwrap().len(), 6);
    let next = store
        .insert_leased_trial(study.id, &params(51), &grant("d", 30, 1_000))
        .await
        .unwrap();
    assert_eq!(next.number, 6, "numbers stay dense after the refused batch");
}

/// A replica's cache catching up inside its ask sees the other replica's new trials and
/// the current state of the ones it knew unfinished; a re-queued trial is leased again.
async fn an_ask_sees_every_replicas_trials_as_they_are(b: &Backend) {
    let one = b.open().await;
    let two = b.replica(&one).await;
    let study = one
        .create_study(new_study(Direction::Maximize, 3), 0)
        .await
        .unwrap();
    let a = one
        .insert_leased_trial(study.id, &params(0), &grant("a", 0, 100))
        .await
        .unwrap();
    // Replica two: a trial finishes, another is added.
    two.finish_trial(a.id, "a", 10, completed(0.5))
        .await
        .unwrap();
    let b2 = two
        .insert_leased_trial(study.id, &params(1), &grant("b", 0, 100))
        .await
        .unwrap();
    // Replica one knew trial 0 (unfinished); it catches up from number 1.
    let mut txn = one.begin_ask(study.id).await.unwrap();
    let fresh = txn
        .trials_from(1, &[(a.id, TrialState::Running)])
        .await
        .unwrap();
    assert_eq!(
        fresh
            .iter()
            .map(|t| (t.number, t.state))
            .collect::<Vec<_>>(),
        vec![(0, TrialState::Completed), (1, TrialState::Running)]
    );
    assert_eq!(fresh[0].value, Some(0.5));
    // An unfinished trial still in the state the cache knows is left out; one whose
    // state moved on comes back.
    assert!(
        txn.trials_from(2, &[(b2.id, TrialState::Running)])
            .await
            .unwrap()
            .is_empty()
    );
    let moved = txn
        .trials_from(2, &[(b2.id, TrialState::Pending)])
        .await
        .unwrap();
    assert_eq!(moved.iter().map(|t| t.id).collect::<Vec<_>>(), vec![b2.id]);
    assert!(
        txn.lease_pending_trial(&grant("c", 20, 100))
            .await
            .unwrap()
            .is_none()
    );
    txn.commit().await.unwrap();
    assert_eq!(
        one.trials_from(study.id, 2, &[]).await.unwrap().len(),
        0,
        "nothing numbered 2 or more"
    );

    // Expired and re-queued by replica two: replica one's ask leases it again.
    two.reap_expired_leases(500).await.unwrap();
    let mut txn = one.begin_ask(study.id).await.unwrap();
    let again = txn
        .lease_pending_trial(&grant("d", 600, 100))
        .await
        .unwrap()
        .expect("the re-queued trial");
    assert_eq!((again.id, again.attempts), (b2.id, 2));
    txn.commit().await.unwrap();
    assert_eq!(
        two.get_trial(b2.id).await.unwrap().lease_token.as_deref(),
        Some("d")
    );
}

/// Every event of the study, read in pages as a watching client would.
async fn all_events(store: &dyn Store, study: StudyId) -> Vec<TrialEvent> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = store.events_since(study, after, 7).await.unwrap();
        let Some(last) = page.last() else {
            return events;
        };
        after = last.id;
        events.extend(page);
    }
}

fn kinds_of(events: &[TrialEvent], trial: TrialId) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e.trial_id == trial)
        .map(|e| e.kind.as_str())
        .collect()
}

async fn studies_are_created_listed_and_deleted(b: &Backend) {
    let store = b.open().await;
    let a = store
        .create_study(new_study(Direction::Maximize, 2), 1_000)
        .await
        .unwrap();
    let bb = store
        .create_study(new_study(Direction::Minimize, 0), 2_000)
        .await
        .unwrap();
    assert_ne!(a.id, bb.id);
    assert_eq!(a.state, StudyState::Running);
    assert_eq!(store.trials_created(a.id).await.unwrap(), 0);
    assert_eq!(
        (a.max_retries, a.created_at, a.updated_at),
        (2, 1_000, 1_000)
    );
    // The spec comes back as it went in, key order included.
    assert_eq!(
        serde_json::to_string(&store.get_study(a.id).await.unwrap().spec).unwrap(),
        serde_json::to_string(&new_study(Direction::Maximize, 2).spec).unwrap()
    );
    assert_eq!(
        store.get_study(bb.id).await.unwrap().direction,
        Direction::Minimize
    );
    let listed = store.list_studies().await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id).collect::<Vec<_>>(),
        [a.id, bb.id]
    );

    let t = store
        .insert_leased_trial(a.id, &params(1), &grant("t", 0, 10))
        .await
        .unwrap();
    store
        .report_epoch(t.id, "t", 1, 10, &epoch(0, 0.1, json!({})))
        .await
        .unwrap();
    assert_eq!(store.study_of_trial(t.id).await.unwrap(), a.id);
    store.delete_study(a.id).await.unwrap();
    assert!(matches!(
        store.get_study(a.id).await,
        Err(StoreError::StudyNotFound(_))
    ));
    assert!(matches!(
        store.trial_summaries(a.id).await,
        Err(StoreError::StudyNotFound(_))
    ));
    assert!(matches!(
        store.get_trial(t.id).await,
        Err(StoreError::TrialNotFound(_))
    ));
    assert!(matches!(
        store.delete_study(a.id).await,
        Err(StoreError::StudyNotFound(_))
    ));
    assert!(matches!(
        store.get_study(StudyId(999)).await,
        Err(StoreError::StudyNotFound(StudyId(999)))
    ));
    assert!(matches!(
        store
            .insert_leased_trial(StudyId(999), &params(1), &grant("t", 0, 10))
            .await,
        Err(StoreError::StudyNotFound(StudyId(999)))
    ));
    assert!(matches!(
        store
            .set_study_state(StudyId(999), StudyState::Stopped, None, 0)
            .await,
        Err(StoreError::StudyNotFound(_))
    ));
    store
        .set_study_state(bb.id, StudyState::Stopped, Some("by test"), 3_000)
        .await
        .unwrap();
    let bb = store.get_study(bb.id).await.unwrap();
    assert_eq!(
        (bb.state, bb.state_reason.as_deref(), bb.updated_at),
        (StudyState::Stopped, Some("by test"), 3_000)
    );
}

async fn an_extended_study_gets_its_new_spec_and_state_in_one_write(b: &Backend) {
    let one = b.open().await;
    let two = b.replica(&one).await;
    let study = one
        .create_study(new_study(Direction::Maximize, 0), 1_000)
        .await
        .unwrap();
    one.set_study_state(study.id, StudyState::Completed, Some("budget spent"), 2_000)
        .await
        .unwrap();
    let extended = json!({"name": "s", "budget": {"max_trials": 30}, "a": 1.0e-4});
    one.set_study_spec(
        study.id,
        &extended,
        StudyState::Running,
        Some("extended"),
        3_000,
    )
    .await
    .unwrap();
    // Another replica reads the new spec from the database at once.
    let seen = two.get_study(study.id).await.unwrap();
    assert_eq!(seen.spec, extended);
    assert_eq!(
        (seen.state, seen.state_reason.as_deref(), seen.updated_at),
        (StudyState::Running, Some("extended"), 3_000)
    );
    assert!(matches!(
        one.set_study_spec(StudyId(999), &extended, StudyState::Running, None, 0)
            .await,
        Err(StoreError::StudyNotFound(StudyId(999)))
    ));
}

async fn a_failure_streak_counts_only_trials_finished_since_a_resume(b: &Backend) {
    let store = b.open().await;
    let study = store
        .create_study(new_study(Direction::Maximize, 0), 0)
        .await
        .unwrap();
    for (x, at) in [(1, 100), (2, 200), (3, 300)] {
        let token = format!("t{x}");
        let t = store
            .insert_leased_trial(study.id, &params(x), &grant(&token, at - 50, 1_000))
            .await
            .unwrap();
        store
            .finish_trial(t.id, &token, at, failed("boom"))
            .await
            .unwrap();
    }
    assert_eq!(
        store.consecutive_failures(study.id, 10, 0).await.unwrap(),
        3
    );
    assert_eq!(store.consecutive_failures(study.id, 2, 0).await.unwrap(), 2);
    assert_eq!(
        store.consecutive_failures(study.id, 10, 199).await.unwrap(),
        2
    );
    assert_eq!(
        store.consecutive_failures(study.id, 10, 200).await.unwrap(),
        1
    );
    assert_eq!(
        store.consecutive_failures(study.id, 10, 300).await.unwrap(),
        0
    );
}

async fn concurrent_inserts_from_replicas_get_dense_unique_numbers(b: &Backend) {
    let one = b.open().await;
    let two = b.replica(&one).await;
    let study = one
        .create_study(new_study(Direction::Maximize, 2), 0)
        .await
        .unwrap();
    let other = two
        .create_study(new_study(Direction::Maximize, 2), 0)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        // Interleaved with inserts into another study, whose numbers are its own.
        let target = if i % 5 == 0 { other.id } else { study.id };
        tasks.push(tokio::spawn(async move {
            let t = store
                .insert_leased_trial(target, &params(i), &grant(&format!("t{i}"), 0, 1_000))
                .await
                .unwrap();
            (target, t.number)
        }));
    }
    let mut numbers = Vec::new();
    let mut other_numbers = Vec::new();
    for t in tasks {
        let (target, number) = t.await.unwrap();
        if target == study.id {
            numbers.push(number);
        } else {
            other_numbers.push(number);
        }
    }
    numbers.sort();
    other_numbers.sort();
    assert_eq!(numbers, (0..32).collect::<Vec<u64>>());
    assert_eq!(other_numbers, (0..8).collect::<Vec<u64>>());
    assert_eq!(one.trial_counts(study.id).await.unwrap().running, 32);
}

async fn a_duplicate_config_is_refused_and_nothing_is_stored(b: &Backend) {
    let one = b.open().await;
    let two = b.replica(&one).await;
    let study = one
        .create_study(new_study(Direction::Maximize, 2), 0)
        .await
        .unwrap();
    let first = one
        .insert_leased_trial(study.id, &params(1), &grant("a", 0, 100))
        .await
        .unwrap();
    let events_before = all_events(&*one, study.id).await.len();
    // `1` and `1.0` are the same configuration.
    let mut same = Params::new();
    same.insert("x".into(), ParamValue::Float(1.0));
    for (store, p) in [(&two, params(1)), (&one, same)] {
        let err = store
            .insert_leased_trial(study.id, &p, &grant("b", 0, 100))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::DuplicateConfig(s) if s == study.id),
            "{err:?}"
        );
    }
    let trials = two.trial_summaries(study.id).await.unwrap();
    assert_eq!(trials.len(), 1);
    assert_eq!(trials[0].id, first.id);
    assert_eq!(two.trial_counts(study.id).await.unwrap().total(), 1);
    assert_eq!(all_events(&*two, study.id).await.len(), events_before);
    // The refused inserts took no number: the next trial gets 1.
    let next = two
        .insert_leased_trial(study.id, &params(2), &grant("c", 0, 100))
        .await
        .unwrap();
    assert_eq!(next.number, 1);
    // Another study may have the same configuration.
    let other = one
        .create_study(new_study(Direction::Maximize, 2), 0)
        .await
        .unwrap();
    one.insert_leased_trial(other.id, &params(1), &grant("d", 0, 100))
        .await
        .unwrap();

    // Two replicas racing with one configuration: exactly one wins.
    let racing = one
        .create_study(new_study(Direction::Maximize, 2), 0)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .insert_leased_trial(racing.id, &params(42), &grant(&format!("r{i}"), 0, 100))
                .await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(t) => {
                won += 1;
                assert_eq!(t.number, 0);
            }
            Err(StoreError::DuplicateConfig(_)) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(one.trial_counts(racing.id).await.unwrap().total(), 1);
}

/// What the sampler reads from `trial_summaries` besides the outcome: the lease and
/// finish times and the last epoch (a trial's cost per epoch), and a pruned trial's
/// metrics (the curve pruner's prediction), the same from both backends.
async fn summaries_carry_what_a_cost_model_and_the_curve_pruner_left(b: &Backend) {
    let store = b.open().await;
    let study = store
        .create_study(new_study(Direction::Maximize, 0), 0)
        .await
        .unwrap();
    let t = store
        .insert_leased_trial(study.id, &params(1), &grant("a", 1_000, 100_000))
        .await
        .unwrap();
    for epoch in 1..=2 {
        let report = NewEpoch {
            epoch,
            value: Some(0.5),
            metrics: json!({}),
        };
        store
            .report_epoch(t.id, "a", 2_000, 100_000, &report)
            .await
            .unwrap();
    }
    store
        .finish_trial_unleased(
            t.id,
            7_000,
            Finish {
                state: TrialState::Pruned,
                value: Some(0.5),
                metrics: Some(json!({"predicted_value": 0.75})),
                reason: Some("curve".into()),
            },
        )
        .await
        .unwrap();
    let summary = &store.trial_summaries(study.id).await.unwrap()[0];
    assert_eq!(
        (
            summary.state,
            summary.started_at,
            summary.finished_at,
            summary.last_epoch
        ),
        (TrialState::Pruned, Some(1_000), Some(7_000), Some(2))
    );
    assert_eq!(
        summary.metrics.as_ref().unwrap()["predicted_value"],
        json!(0.75)
    );
}

async fn only_the_lease_holder_may_touch_a_running_trial(b: &Backend) {
    let store = b.open().await;
    let study = store
        .create_study(new_study(Direction::Maximize, 2), 0)
        .await
        .unwrap();
    let t = store
        .insert_leased_trial(study.id, &params(1), &grant("good", 100, 1_000))
        .await
        .unwrap();
    assert_eq!((t.state, t.attempts, t.number), (TrialState::Running, 1, 0));
    assert_eq!(
        (
            t.params.clone(),
            t.worker.as_deref(),
            t.lease_token.as_deref(),
            t.lease_expires_at,
            t.created_at,
            t.started_at
        ),
        (
            params(1),
            Some("w"),
            Some("good"),
            Some(1_100),
            100,
            Some(100)
        )
    );

    assert!(matches!(
        store.heartbeat(t.id, "bad", 200, 2_000).await,
        Err(StoreError::LeaseMismatch(_))
    ));
    assert!(matches!(
        store.finish_trial(t.id, "bad", 200, completed(0.5)).await,
        Err(StoreError::LeaseMismatch(_))
    ));
    assert!(matches!(
        store.release_trial(t.id, "bad", 200).await,
        Err(StoreError::LeaseMismatch(_))
    ));
    assert!(matches!(
        store.heartbeat(TrialId(12345), "good", 200, 2_000).await,
        Err(StoreError::TrialNotFound(_))
    ));
    // Heartbeat extends the lease past its first expiry (1_100).
    store.heartbeat(t.id, "good", 900, 5_000).await.unwrap();
    assert_eq!(store.earliest_lease_expiry().await.unwrap(), Some(5_000));
    store
        .report_epoch(
            t.id,
            "good",
            4_000,
            6_000,
            &epoch(1, 0.4, json!({"acc": 0.4})),
        )
        .await
        .unwrap();
    // Reporting the same epoch again (a retried request) keeps the first report and
    // extends the lease; another value for it is refused, naming the stored one.
    let again = store
        .report_epoch(
            t.id,
            "good",
            4_100,
            6_000,
            &epoch(1, 0.4, json!({"acc": 0.4, "retry": true})),
        )
        .await
        .unwrap();
    assert_eq!(again.epochs.len(), 1);
    assert_eq!(again.epochs[0].value, Some(0.4));
    assert_eq!(again.epochs[0].metrics, json!({"acc": 0.4}));
    assert_eq!(again.last_epoch, Some(1));
    assert!(matches!(
        store
            .report_epoch(t.id, "good", 4_150, 6_000, &epoch(1, 0.45, json!({"acc": 0.45})))
            .await,
        Err(StoreError::EpochConflict {
            epoch: 1,
            value: Some(v),
            ..
        }) if v == 0.4
    ));
    assert!(matches!(
        store
            .report_epoch(t.id, "bad", 4_200, 6_000, &epoch(2, 0.5, json!({})))
            .await,
        Err(StoreError::LeaseMismatch(_))
    ));

    let done = store
        .finish_trial(t.id, "good", 5_000, completed(0.9))
        .await
        .unwrap();
    assert_eq!((done.state, done.value), (TrialState::Completed, Some(0.9)));
    assert_eq!(done.lease_expires_at, None);
    assert_eq!(done.finished_at, Some(5_000));
    assert_eq!(done.metrics, Some(json!({"acc": 0.9})));
    assert_eq!(done.epochs.len(), 1);
    assert_eq!(store.earliest_lease_expiry().await.unwrap(), None);

    // Finished trials are immutable: a retried completion gets the first answer back,
    // anything else is refused (another value, with the stored one).
    let replay = store
        .finish_trial(t.id, "good", 5_001, completed(0.9))
        .await
        .unwrap();
    assert_eq!(replay.value, Some(0.9));
    assert!(matches!(
        store.finish_trial(t.id, "good", 5_001, completed(1.0)).await,
        Err(StoreError::AlreadyFinished {
            state: TrialState::Completed,
            value: Some(v),
            ..
        }) if v == 0.9
    ));
    assert!(matches!(
        store
            .finish_trial(t.id, "good", 5_001, failed("late"))
            .await,
        Err(StoreError::NotRunning {
            state: TrialState::Completed,
            ..
        })
    ));
    assert!(matches!(
        store.finish_trial(t.id, "bad", 5_001, completed(1.0)).await,
        Err(StoreError::NotRunning { .. })
    ));
    assert!(matches!(
        store
            .report_epoch(t.id, "good", 5_001, 9_000, &epoch(2, 0.1, json!({})))
            .await,
        Err(StoreError::NotRunning { .. })
    ));
    assert!(matches!(
        store
            .finish_trial_unleased(t.id, 5_002, completed(0.0))
            .await,
        Err(StoreError::NotRunning { .. })
    ));
    assert!(matches!(
        store
            .finish_trial_unleased(TrialId(12345), 5_002, completed(0.0))
            .await,
        Err(StoreError::TrialNotFound(_))
    ));
    assert_eq!(store.get_trial(t.id).await.unwrap().value, Some(0.9));

    // The server's own finish (the pruner) needs no lease and keeps the last value.
    let u = store
        .insert_leased_trial(study.id, &params(2), &grant("u", 0, 1_000))
        .await
        .unwrap();
    store
        .report_epoch(u.id, "u", 10, 1_000, &epoch(0, 0.3, json!({})))
        .await
        .unwrap();
    let pruned = store
        .finish_trial_unleased(
            u.id,
            20,
            Finish {
                state: TrialState::Pruned,
                value: Some(0.3),
                metrics: None,
                reason: Some("below the median".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            pruned.state,
            pruned.value,
            pruned.lease_token.as_deref(),
            pruned.epochs.len()
        ),
        (TrialState::Pruned, Some(0.3), None, 1)
    );
    let epochs = store.epochs_of_trials(&[t.id, u.id]).await.unwrap();
    assert_eq!(epochs.len(), 2);
    assert_eq!(epochs[&u.id][0].value, Some(0.3));
    let listed = store.list_trials(study.id).await.unwrap();
    assert_eq!(
        listed.iter().map(|t| t.epochs.len()).collect::<Vec<_>>(),
        [1, 1]
    );
}

async fn the_schema_itself_refuses_changes_to_finished_trials(b: &Backend) {
    let store = b.open().await;
    let study = store
        .create_study(new_study(Direction::Maximize, 2), 0)
        .await
        .unwrap();
    let t = store
        .insert_leased_trial(study.id, &params(1), &grant("k", 0, 1_000))
        .await
        .unwrap();
    store
        .finish_trial(t.id, "k", 10, completed(0.7))
        .await
        .unwrap();
    let err = b
        .exec(&format!(
            "UPDATE trials SET value = 0 WHERE id = {}",
            t.id.0
        ))
        .await
        .unwrap_err();
    assert!(err.contains("immutable"), "{err}");
    let err = b
        .exec(&format!(
            "INSERT INTO trial_epochs (trial_id, epoch, value, metrics, reported_at) \
             VALUES ({}, 5, 0.1, '{{}}', 0)",
            t.id.0
        ))
        .await
        .unwrap_err();
    assert!(err.contains("immutable"), "{err}");
    assert_eq!(store.get_trial(t.id).await.unwrap().value, Some(0.7));
}

async fn expired_leases_are_requeued_then_failed_after_retries(b: &Backend) {
    let store = b.open().await;
    let study = store
        .create_study(new_study(Direction::Maximize, 1), 0)
        .await
        .unwrap();
    let t = store
        .insert_leased_trial(study.id, &params(7), &grant("a", 0, 100))
        .await
        .unwrap();
    store
        .report_epoch(t.id, "a", 10, 100, &epoch(1, 0.2, json!({})))
        .await
        .unwrap();
    // Not expired yet.
    assert!(store.reap_expired_leases(50).await.unwrap().is_empty());
    // An expired lease cannot be used any more, even before it is reaped.
    assert!(matches!(
        store.finish_trial(t.id, "a", 200, completed(0.1)).await,
        Err(StoreError::LeaseExpired(_))
    ));
    assert!(matches!(
        store.heartbeat(t.id, "a", 200, 300).await,
        Err(StoreError::LeaseExpired(_))
    ));
    let reaped = store.reap_expired_leases(200).await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(
        (reaped[0].id, reaped[0].study_id, reaped[0].state),
        (t.id, study.id, TrialState::Pending)
    );
    // Re-queued, not leased again yet: the late holder hears its lease expired; others
    // that the trial is not running.
    assert!(matches!(
        store.heartbeat(t.id, "a", 201, 300).await,
        Err(StoreError::LeaseExpired(_))
    ));
    assert!(matches!(
        store.finish_trial(t.id, "a", 201, completed(0.5)).await,
        Err(StoreError::LeaseExpired(_))
    ));
    assert!(matches!(
        store.heartbeat(t.id, "someone", 201, 300).await,
        Err(StoreError::NotRunning {
            state: TrialState::Pending,
            ..
        })
    ));
    let pending = store.get_trial(t.id).await.unwrap();
    assert_eq!(
        (
            pending.worker,
            pending.lease_token.as_deref(),
            pending.lease_expires_at,
            pending.last_epoch,
        ),
        (None, Some("a"), None, None)
    );
    // The dead attempt's reports are gone with it.
    assert!(pending.epochs.is_empty());

    // Re-leased with the same params and number; a second attempt.
    let again = store
        .lease_pending_trial(study.id, &grant("b", 300, 100))
        .await
        .unwrap()
        .expect("the re-queued trial is handed out again");
    assert_eq!((again.id, again.number, again.attempts), (t.id, 0, 2));
    assert_eq!(again.params, params(7));
    assert_eq!(again.started_at, Some(300));
    assert!(
        store
            .lease_pending_trial(study.id, &grant("c", 300, 100))
            .await
            .unwrap()
            .is_none()
    );

    // max_retries = 1: the second expiry fails it for good.
    let reaped = store.reap_expired_leases(1_000).await.unwrap();
    assert_eq!(reaped[0].state, TrialState::Failed);
    let failed = store.get_trial(t.id).await.unwrap();
    assert_eq!(failed.state, TrialState::Failed);
    assert_eq!(failed.finished_at, Some(1_000));
    assert!(
        failed
            .failure_reason
            .unwrap()
            .contains("lease expired 2 time(s)")
    );
    assert_eq!(store.consecutive_failures(study.id, 5, 0).await.unwrap(), 1);
    assert!(store.reap_expired_leases(2_000).await.unwrap().is_empty());
}

async fn racing_reapers_requeue_and_fail_each_trial_once(b: &Backend) {
    let one = b.open().await;
    let two = b.replica(&one).await;
    let study = one
        .create_study(new_study(Direction::Maximize, 1), 0)
        .await
        .unwrap();
    let mut ids = HashSet::new();
    for i in 0..30 {
        let t = one
            .insert_leased_trial(study.id, &params(i), &grant(&format!("t{i}"), 0, 100))
            .await
            .unwrap();
        ids.insert(t.id);
    }

    // Both replicas reap at once, several times over: every trial once, all pending.
    async fn race(
        one: &Arc<dyn Store>,
        two: &Arc<dyn Store>,
        now: i64,
    ) -> Vec<tuner_store::ReapedTrial> {
        let mut tasks = Vec::new();
        for i in 0..6 {
            let store = if i % 2 == 0 { one.clone() } else { two.clone() };
            tasks.push(tokio::spawn(async move {
                store.reap_expired_leases(now).await.unwrap()
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    }
    let reaped = race(&one, &two, 1_000).await;
    assert_eq!(reaped.len(), 30, "{reaped:?}");
    assert_eq!(
        reaped.iter().map(|r| r.id).collect::<HashSet<_>>(),
        ids,
        "each trial reaped exactly once"
    );
    assert!(reaped.iter().all(|r| r.state == TrialState::Pending));
    let counts = two.trial_counts(study.id).await.unwrap();
    assert_eq!((counts.pending, counts.running), (30, 0));

    // Leased again (attempt 2 of 2) and expired again: each failed once.
    for i in 0..30 {
        let store = if i % 2 == 0 { &one } else { &two };
        store
            .lease_pending_trial(study.id, &grant(&format!("u{i}"), 2_000, 100))
            .await
            .unwrap()
            .unwrap();
    }
    let reaped = race(&one, &two, 3_000).await;
    assert_eq!(reaped.len(), 30);
    assert_eq!(reaped.iter().map(|r| r.id).collect::<HashSet<_>>(), ids);
    assert!(reaped.iter().all(|r| r.state == TrialState::Failed));
    let counts = one.trial_counts(study.id).await.unwrap();
    assert_eq!((counts.failed, counts.total()), (30, 30));

    let events = all_events(&*one, study.id).await;
    for id in &ids {
        assert_eq!(
            kinds_of(&events, *id),
            ["created", "started", "stale", "started", "failed"]
        );
    }
}

async fn racing_leases_hand_out_each_pending_trial_once(b: &Backend) {
    let one = b.open().await;
    let two = b.replica(&one).await;
    let study = one
        .create_study(new_study(Direction::Maximize, 3), 0)
        .await
        .unwrap();
    for i in 0..20 {
        let token = format!("t{i}");
        let t = one
            .insert_leased_trial(study.id, &params(i), &grant(&token, 0, 100))
            .await
            .unwrap();
        one.release_trial(t.id, &token, 10).await.unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..30 {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .lease_pending_trial(study.id, &grant(&format!("l{i}"), 20, 100))
                .await
                .unwrap()
        }));
    }
    let mut leased = Vec::new();
    for t in tasks {
        leased.extend(t.await.unwrap());
    }
    // Twenty pending trials, thirty askers: each trial to one of them (a released
    // attempt does not count, so each is on its first).
    assert_eq!(leased.len(), 20);
    assert_eq!(
        leased.iter().map(|t| t.id).collect::<HashSet<_>>().len(),
        20
    );
    assert!(leased.iter().all(|t| t.attempts == 1));
    let counts = two.trial_counts(study.id).await.unwrap();
    assert_eq!((counts.pending, counts.running), (0, 20));
    for t in &leased {
        let stored = one.get_trial(t.id).await.unwrap();
        assert_eq!(stored.lease_token, t.lease_token);
    }
}

async fn concurrent_finishes_with_one_token_change_the_trial_once(b: &Backend) {
    let one = b.open().await;
    let two = b.replica(&one).await;
    let study = one
        .create_study(new_study(Direction::Maximize, 2), 0)
        .await
        .unwrap();
    for round in 0..10 {
        let token = format!("t{round}");
        let t = one
            .insert_leased_trial(study.id, &params(round), &grant(&token, 0, 1_000))
            .await
            .unwrap();
        // The same completion sent to both replicas (a client retrying elsewhere).
        let (a, b2) = tokio::join!(
            one.finish_trial(t.id, &token, 10, completed(0.5)),
            two.finish_trial(t.id, &token, 10, completed(0.5)),
        );
        let (a, b2) = (a.unwrap(), b2.unwrap());
        assert_eq!((a.state, a.value), (TrialState::Completed, Some(0.5)));
        assert_eq!(a, b2);
        let events = all_events(&*two, study.id).await;
        assert_eq!(kinds_of(&events, t.id), ["created", "started", "completed"]);
    }
    let counts = two.trial_counts(study.id).await.unwrap();
    assert_eq!((counts.completed, counts.total()), (10, 10));
}

async fn best_trial_follows_the_direction_and_prefers_earlier_ties(b: &Backend) {
    let store = b.open().await;
    for (direction, want) in [(Direction::Maximize, 1), (Direction::Minimize, 0)] {
        let study = store
            .create_study(new_study(direction, 2), 0)
            .await
            .unwrap();
        assert!(store.best_trial(study.id).await.unwrap().is_none());
        for (i, v) in [0.2, 0.9, 0.9, 0.5].into_iter().enumerate() {
            let token = format!("t{i}");
            let t = store
                .insert_leased_trial(study.id, &params(i as i64), &grant(&token, 0, 1_000))
                .await
                .unwrap();
            store
                .finish_trial(t.id, &token, 10, completed(v))
                .await
                .unwrap();
        }
        // A failed trial never counts.
        let t = store
            .insert_leased_trial(study.id, &params(9), &grant("f", 0, 1_000))
            .await
            .unwrap();
        store
            .finish_trial(t.id, "f", 10, failed("diverged"))
            .await
            .unwrap();
        let best = store.best_trial(study.id).await.unwrap().unwrap();
        assert_eq!(best.number, want, "{direction:?}");
        let counts = store.trial_counts(study.id).await.unwrap();
        assert_eq!((counts.completed, counts.failed), (4, 1));
        assert_eq!(store.consecutive_failures(study.id, 5, 0).await.unwrap(), 1);
    }
}

async fn epoch_values_are_what_each_trial_reported_at_that_epoch(b: &Backend) {
    let store = b.open().await;
    let study = store
        .create_study(new_study(Direction::Minimize, 2), 0)
        .await
        .unwrap();
    let other = store
        .create_study(new_study(Direction::Minimize, 2), 0)
        .await
        .unwrap();
    // Trial 0 reports epochs 1 and 2, then completes; trial 1 reports epoch 1 without
    // a value and runs on; trial 2 reports nothing.
    let t0 = store
        .insert_leased_trial(study.id, &params(0), &grant("a", 0, 1_000))
        .await
        .unwrap();
    for (e, v) in [(1, 0.5), (2, 0.25)] {
        store
            .report_epoch(t0.id, "a", 1, 1_000, &epoch(e, v, json!({})))
            .await
            .unwrap();
    }
    store
        .finish_trial(t0.id, "a", 2, completed(0.25))
        .await
        .unwrap();
    let t1 = store
        .insert_leased_trial(study.id, &params(1), &grant("b", 0, 1_000))
        .await
        .unwrap();
    let no_value = NewEpoch {
        epoch: 1,
        value: None,
        metrics: json!({}),
    };
    store
        .report_epoch(t1.id, "b", 1, 1_000, &no_value)
        .await
        .unwrap();
    store
        .insert_leased_trial(study.id, &params(2), &grant("c", 0, 1_000))
        .await
        .unwrap();
    // Another study's reports are not this one's.
    let elsewhere = store
        .insert_leased_trial(other.id, &params(0), &grant("d", 0, 1_000))
        .await
        .unwrap();
    store
        .report_epoch(elsewhere.id, "d", 1, 1_000, &epoch(1, 0.9, json!({})))
        .await
        .unwrap();

    assert_eq!(
        store.epoch_values(study.id, 1).await.unwrap(),
        vec![
            (t0.id, TrialState::Completed, Some(0.5)),
            (t1.id, TrialState::Running, None)
        ]
    );
    assert_eq!(
        store.epoch_values(study.id, 2).await.unwrap(),
        vec![(t0.id, TrialState::Completed, Some(0.25))]
    );
    assert!(store.epoch_values(study.id, 3).await.unwrap().is_empty());
}

async fn data_survives_reopening(b: &Backend) {
    let (study, trial) = {
        let store = b.open().await;
        let study = store
            .create_study(new_study(Direction::Maximize, 2), 0)
            .await
            .unwrap();
        let t = store
            .insert_leased_trial(study.id, &params(3), &grant("k", 0, 1_000))
            .await
            .unwrap();
        store
            .finish_trial(t.id, "k", 10, completed(0.8))
            .await
            .unwrap();
        // No close: as if the process had died.
        (study.id, t.id)
    };
    let store = b.open().await;
    let t = store.get_trial(trial).await.unwrap();
    assert_eq!(
        (t.study_id, t.state, t.value),
        (study, TrialState::Completed, Some(0.8))
    );
    // Numbering continues where it stopped.
    let next = store
        .insert_leased_trial(study, &params(4), &grant("l", 0, 1_000))
        .await
        .unwrap();
    assert_eq!(next.number, 1);
}

async fn every_trial_change_is_logged_as_an_event(b: &Backend) {
    let store = b.open().await;
    let study = store
        .create_study(new_study(Direction::Maximize, 1), 0)
        .await
        .unwrap();
    assert_eq!(store.last_event_id(study.id).await.unwrap(), 0);
    let a = store
        .insert_leased_trial(study.id, &params(1), &grant("a", 0, 100))
        .await
        .unwrap();
    store
        .report_epoch(a.id, "a", 10, 100, &epoch(1, 0.3, json!({})))
        .await
        .unwrap();
    store
        .finish_trial(a.id, "a", 20, completed(0.4))
        .await
        .unwrap();
    let b2 = store
        .insert_leased_trial(study.id, &params(2), &grant("b", 0, 100))
        .await
        .unwrap();
    store.reap_expired_leases(1_000).await.unwrap();
    store
        .lease_pending_trial(study.id, &grant("c", 1_000, 100))
        .await
        .unwrap();
    store.release_trial(b2.id, "c", 1_010).await.unwrap();

    let events = store.events_since(study.id, 0, 100).await.unwrap();
    let kinds: Vec<(u64, &str)> = events.iter().map(|e| (e.number, e.kind.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (0, "created"),
            (0, "started"),
            (0, "epoch"),
            (0, "completed"),
            (1, "created"),
            (1, "started"),
            (1, "stale"),
            (1, "started"),
            (1, "released"),
        ]
    );
    assert_eq!((events[2].epoch, events[2].value), (Some(1), Some(0.3)));
    assert_eq!(events[3].value, Some(0.4));
    assert_eq!((events[0].at, events[2].at), (0, 10));
    assert!(events.iter().all(|e| e.study_id == study.id));
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(
        store.last_event_id(study.id).await.unwrap(),
        events.last().unwrap().id
    );
    // Resuming after an event gives only what came later; a limit pages.
    let later = store
        .events_since(study.id, events[6].id, 100)
        .await
        .unwrap();
    assert_eq!(later.len(), 2);
    let page = store.events_since(study.id, 0, 4).await.unwrap();
    assert_eq!(page, events[..4]);
    // Re-reporting an epoch replaces it without a second event.
    let c = store
        .insert_leased_trial(study.id, &params(3), &grant("d", 2_000, 100))
        .await
        .unwrap();
    for _ in 0..2 {
        store
            .report_epoch(c.id, "d", 2_010, 2_100, &epoch(0, 0.1, json!({})))
            .await
            .unwrap();
    }
    let events = all_events(&*store, study.id).await;
    assert_eq!(kinds_of(&events, c.id), ["created", "started", "epoch"]);
}

/// Writers on two replicas while a reader polls with its cursor (as a live stream
/// does): the reader ends with every event exactly once, in the order of each trial's
/// changes.
async fn a_reader_resuming_from_its_cursor_sees_every_event_once_in_order(b: &Backend) {
    let one = b.open().await;
    let two = b.replica(&one).await;
    let reader = b.replica(&one).await;
    let study = one
        .create_study(new_study(Direction::Maximize, 2), 0)
        .await
        .unwrap();
    let mut writers = Vec::new();
    for w in 0..4 {
        let store = if w % 2 == 0 { one.clone() } else { two.clone() };
        writers.push(tokio::spawn(async move {
            for i in 0..10 {
                let token = format!("w{w}-{i}");
                let t = store
                    .insert_leased_trial(study.id, &params(w * 100 + i), &grant(&token, 0, 1_000))
                    .await
                    .unwrap();
                store
                    .report_epoch(t.id, &token, 1, 1_000, &epoch(0, 0.1, json!({})))
                    .await
                    .unwrap();
                store
                    .finish_trial(t.id, &token, 2, completed(0.2))
                    .await
                    .unwrap();
            }
        }));
    }
    let polling = {
        let reader = reader.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut cursor = 0;
            // Until the writers are done and a last poll finds nothing new.
            loop {
                let page = reader.events_since(study.id, cursor, 5).await.unwrap();
                match page.last() {
                    Some(last) => cursor = last.id,
                    None if seen.len() >= 4 * 10 * 4 => return seen,
                    None => tokio::time::sleep(Duration::from_millis(2)).await,
                }
                seen.extend(page);
            }
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    let seen = tokio::time::timeout(Duration::from_secs(60), polling)
        .await
        .expect("the reader saw every event")
        .unwrap();
    assert_eq!(seen.len(), 160);
    assert!(seen.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(seen, all_events(&*one, study.id).await);
    let trials: HashSet<TrialId> = seen.iter().map(|e| e.trial_id).collect();
    assert_eq!(trials.len(), 40);
    for t in trials {
        assert_eq!(
            kinds_of(&seen, t),
            ["created", "started", "epoch", "completed"]
        );
    }
}

async fn trials_changed_after_follow_the_event_cursor(b: &Backend) {
    let store = b.open().await;
    let study = store
        .create_study(new_study(Direction::Maximize, 2), 0)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let t = store
            .insert_leased_trial(study.id, &params(i), &grant(&format!("t{i}"), 0, 1_000))
            .await
            .unwrap();
        ids.push(t.id);
    }
    let mark = store.last_event_id(study.id).await.unwrap();
    assert!(mark > 0);
    assert!(
        store
            .trials_changed_after(study.id, mark)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .finish_trial(ids[2], "t2", 10, completed(0.3))
        .await
        .unwrap();
    store
        .finish_trial(ids[0], "t0", 10, completed(0.1))
        .await
        .unwrap();
    let changed = store.trials_changed_after(study.id, mark).await.unwrap();
    assert_eq!(changed.iter().map(|t| t.number).collect::<Vec<_>>(), [0, 2]);
    assert!(changed.iter().all(|t| t.epochs.is_empty()));
    assert_eq!(
        store.trials_changed_after(study.id, 0).await.unwrap().len(),
        3
    );
    assert!(store.last_event_id(study.id).await.unwrap() > mark);
    assert!(matches!(
        store.trials_changed_after(StudyId(999), 0).await,
        Err(StoreError::StudyNotFound(_))
    ));
}

async fn counts_follow_every_state_change(b: &Backend) {
    let store = b.open().await;
    let study = store
        .create_study(new_study(Direction::Maximize, 0), 0)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let t = store
            .insert_leased_trial(study.id, &params(i), &grant(&format!("t{i}"), 0, 100))
            .await
            .unwrap();
        ids.push(t.id);
    }
    store
        .finish_trial(ids[0], "t0", 10, completed(0.1))
        .await
        .unwrap();
    store
        .finish_trial(ids[1], "t1", 10, failed("x"))
        .await
        .unwrap();
    store.release_trial(ids[2], "t2", 10).await.unwrap();
    // t3 and t4 expire; max_retries 0 fails them.
    store.reap_expired_leases(1_000).await.unwrap();
    let counts = store.trial_counts(study.id).await.unwrap();
    assert_eq!(
        (
            counts.pending,
            counts.running,
            counts.completed,
            counts.failed
        ),
        (1, 0, 1, 3)
    );
    assert_eq!(counts.total(), 5);
    assert_eq!(
        store.trial_counts(StudyId(999)).await.unwrap(),
        Default::default()
    );
    // Many more changes (past the point where the PostgreSQL store folds its
    // count deltas), read again and again.
    let pending = ids[2];
    for round in 0..40 {
        let token = format!("r{round}");
        let t = store
            .lease_pending_trial(study.id, &grant(&token, 2_000, 100))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(t.id, pending);
        let counts = store.trial_counts(study.id).await.unwrap();
        assert_eq!((counts.pending, counts.running), (0, 1));
        store.release_trial(t.id, &token, 2_001).await.unwrap();
        let counts = store.trial_counts(study.id).await.unwrap();
        assert_eq!((counts.pending, counts.running, counts.total()), (1, 0, 5));
    }
}

/// Many finishes at once (on two replicas): the ones refused (a wrong token, an unknown
/// trial, a retry of a finished trial) get their own answers and disturb none of the
/// others, and everything acknowledged is durable.
async fn concurrent_finishes_are_answered_one_by_one(b: &Backend) {
    let one = b.open().await;
    let two = b.replica(&one).await;
    let study = one
        .create_study(new_study(Direction::Maximize, 2), 0)
        .await
        .unwrap();
    let mut trials = Vec::new();
    for i in 0..60 {
        let t = one
            .insert_leased_trial(study.id, &params(i), &grant(&format!("t{i}"), 0, 1_000))
            .await
            .unwrap();
        trials.push(t.id);
    }
    let mut tasks = Vec::new();
    for (i, id) in trials.iter().copied().enumerate() {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(async move {
            // Every third trial is finished by a stranger first, then by its holder.
            if i % 3 == 0 {
                let stranger = store.finish_trial(id, "stranger", 10, completed(0.1)).await;
                assert!(
                    matches!(stranger, Err(StoreError::LeaseMismatch(_))),
                    "{stranger:?}"
                );
            }
            let done = store
                .finish_trial(id, &format!("t{i}"), 10, completed(i as f64))
                .await
                .unwrap();
            // The holder's retry gets the same answer.
            let again = store
                .finish_trial(id, &format!("t{i}"), 11, completed(i as f64))
                .await
                .unwrap();
            assert_eq!(
                (done.state, again.value),
                (TrialState::Completed, Some(i as f64))
            );
        }));
    }
    let unknown = one
        .finish_trial(TrialId(9_999), "t0", 10, completed(1.0))
        .await;
    assert!(
        matches!(unknown, Err(StoreError::TrialNotFound(_))),
        "{unknown:?}"
    );
    for t in tasks {
        t.await.unwrap();
    }
    drop((one, two));

    let reopened = b.open().await;
    for _ in 0..2 {
        let counts = reopened.trial_counts(study.id).await.unwrap();
        assert_eq!((counts.completed, counts.running), (60, 0));
    }
    let trials = reopened.trial_summaries(study.id).await.unwrap();
    assert!(trials.iter().all(|t| t.value == Some(t.number as f64)));
}

/// A study deleted while replicas finish, report on and reap its trials: the deletion
/// succeeds, and the writes it overtakes are refused as for any unknown trial (never
/// a database error such as a deadlock). Another study is untouched.
async fn deleting_a_study_while_its_trials_change(b: &Backend) {
    let one = b.open().await;
    let two = b.replica(&one).await;
    for round in 0..3 {
        let doomed = one
            .create_study(new_study(Direction::Maximize, 2), 0)
            .await
            .unwrap();
        let kept = one
            .create_study(new_study(Direction::Maximize, 2), 0)
            .await
            .unwrap();
        let mut trials = Vec::new();
        for i in 0..24 {
            // Every fourth lease is already expired, for the reapers.
            let ttl = if i % 4 == 0 { 1 } else { 10_000 };
            let token = format!("t{i}");
            let t = one
                .insert_leased_trial(doomed.id, &params(i), &grant(&token, 0, ttl))
                .await
                .unwrap();
            trials.push((t.id, token.clone()));
            one.insert_leased_trial(kept.id, &params(i), &grant(&token, 0, 10_000))
                .await
                .unwrap();
        }
        let mut tasks = Vec::new();
        for (i, (id, token)) in trials.into_iter().enumerate() {
            let store = if i % 2 == 0 { one.clone() } else { two.clone() };
            tasks.push(tokio::spawn(async move {
                let report = store
                    .report_epoch(id, &token, 10, 10_000, &epoch(0, 0.1, json!({})))
                    .await
                    .map(|_| ());
                let finish = store
                    .finish_trial(id, &token, 20, completed(0.2))
                    .await
                    .map(|_| ());
                let reap = store.reap_expired_leases(100).await.map(|_| ());
                [report, finish, reap]
            }));
        }
        let deleting = {
            let two = two.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(round * 3)).await;
                two.delete_study(doomed.id).await
            })
        };
        for t in tasks {
            for result in t.await.unwrap() {
                match result {
                    Ok(())
                    | Err(StoreError::TrialNotFound(_))
                    | Err(StoreError::NotRunning { .. })
                    | Err(StoreError::LeaseExpired(_)) => {}
                    Err(e) => panic!("{e:?}"),
                }
            }
        }
        deleting.await.unwrap().unwrap();
        assert!(matches!(
            one.get_study(doomed.id).await,
            Err(StoreError::StudyNotFound(_))
        ));
        assert!(one.events_since(doomed.id, 0, 10).await.unwrap().is_empty());
        assert_eq!(
            one.trial_counts(doomed.id).await.unwrap(),
            Default::default()
        );
        let counts = two.trial_counts(kept.id).await.unwrap();
        assert_eq!((counts.running, counts.total()), (24, 24));
        assert_eq!(all_events(&*two, kept.id).await.len(), 48);
    }
}

/// Replicas started at the same moment on an empty database: one applies the schema,
/// the others wait for it (sqlx's migration lock, not subject to the pool's
/// lock_timeout), and all of them work.
async fn replicas_starting_together_migrate_once(b: &Backend) {
    use sqlx::{Connection, PgConnection};

    let (one, two, three) = tokio::join!(b.open(), b.open(), b.open());
    let study = one
        .create_study(new_study(Direction::Maximize, 2), 0)
        .await
        .unwrap();
    for (i, store) in [two, three].iter().enumerate() {
        store
            .insert_leased_trial(study.id, &params(i as i64), &grant("t", 0, 10))
            .await
            .unwrap();
    }
    let mut conn = PgConnection::connect(b.pg_url().unwrap()).await.unwrap();
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let expected: Vec<i64> = tuner_store::PG_MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(applied, expected);
}

/// The case a plain sequence id gets wrong: a transaction that inserted an event early
/// (so with a lower id) commits after a reader has seen later events. The reader
/// resuming from its cursor must still get it.
async fn an_event_committed_late_is_not_skipped_by_a_reader(b: &Backend) {
    use sqlx::{Connection, PgConnection};

    let store = b.open().await;
    let reader = b.replica(&store).await;
    let study = store
        .create_study(new_study(Direction::Maximize, 2), 0)
        .await
        .unwrap();
    let early = store
        .insert_leased_trial(study.id, &params(0), &grant("e", 0, 1_000))
        .await
        .unwrap();

    // A replica's transaction changes a trial (its event row is inserted now) and is
    // slow to commit.
    let mut slow = PgConnection::connect(b.pg_url().unwrap()).await.unwrap();
    let mut tx = slow.begin().await.unwrap();
    sqlx::query(
        "UPDATE trials SET state = 'completed', value = 0.5, finished_at = 5, \
         lease_expires_at = NULL WHERE id = $1",
    )
    .bind(early.id.0)
    .execute(&mut *tx)
    .await
    .unwrap();

    // Meanwhile other trials start and finish, and the reader catches up.
    for i in 1..4 {
        let token = format!("t{i}");
        let t = store
            .insert_leased_trial(study.id, &params(i), &grant(&token, 0, 1_000))
            .await
            .unwrap();
        store
            .finish_trial(t.id, &token, 10, completed(0.1))
            .await
            .unwrap();
    }
    let first = all_events(&*reader, study.id).await;
    assert_eq!(first.len(), 2 + 3 * 3);
    assert!(kinds_of(&first, early.id) == ["created", "started"]);
    let cursor = first.last().unwrap().id;
    // The slow transaction's event really was inserted before the ones just read.
    let late_row: i64 = sqlx::query_scalar(
        "SELECT max(id) FROM trial_events WHERE trial_id = $1 AND kind = 'completed'",
    )
    .bind(early.id.0)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    let read_rows: i64 = sqlx::query_scalar(
        "SELECT max(id) FROM trial_events WHERE study_id = $1 AND pos IS NOT NULL",
    )
    .bind(study.id.0)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert!(late_row < read_rows, "{late_row} < {read_rows}");

    tx.commit().await.unwrap();
    let rest = reader.events_since(study.id, cursor, 100).await.unwrap();
    assert_eq!(
        rest.iter()
            .map(|e| (e.trial_id, e.kind.as_str()))
            .collect::<Vec<_>>(),
        [(early.id, "completed")]
    );
    assert!(rest[0].id > cursor);
    assert!(
        reader
            .trials_changed_after(study.id, cursor)
            .await
            .unwrap()
            .iter()
            .any(|t| t.id == early.id)
    );
    // Seen once, in order, by a reader starting over.
    let all = all_events(&*reader, study.id).await;
    assert_eq!(all.len(), first.len() + 1);
    assert_eq!(all[..first.len()], first[..]);
}

/// An ask batch holds its study's row lock (FOR NO KEY UPDATE) while the optimizer
/// runs: completions and reports of that study's trials, whose event and count rows
/// reference the study, must not wait for it. New trials of the study do wait (they
/// take the number counter on that row).
async fn a_held_study_lock_does_not_block_finishing_a_trial(b: &Backend) {
    use sqlx::{Connection, PgConnection};

    let store = b.open().await;
    let study = store
        .create_study(new_study(Direction::Maximize, 2), 0)
        .await
        .unwrap();
    let t = store
        .insert_leased_trial(study.id, &params(0), &grant("a", 0, 1_000))
        .await
        .unwrap();
    let u = store
        .insert_leased_trial(study.id, &params(1), &grant("b", 0, 1_000))
        .await
        .unwrap();

    let mut asker = PgConnection::connect(b.pg_url().unwrap()).await.unwrap();
    let mut tx = asker.begin().await.unwrap();
    sqlx::query("SELECT id FROM studies WHERE id = $1 FOR NO KEY UPDATE")
        .bind(study.id.0)
        .execute(&mut *tx)
        .await
        .unwrap();

    let quick = Duration::from_secs(5);
    tokio::time::timeout(quick, async {
        store
            .report_epoch(t.id, "a", 5, 1_000, &epoch(0, 0.2, json!({})))
            .await
            .unwrap();
        store
            .finish_trial(t.id, "a", 10, completed(0.3))
            .await
            .unwrap();
        store.heartbeat(u.id, "b", 10, 2_000).await.unwrap();
        store.release_trial(u.id, "b", 10).await.unwrap();
        store
            .lease_pending_trial(study.id, &grant("c", 20, 100))
            .await
            .unwrap()
            .unwrap();
        store.reap_expired_leases(5_000).await.unwrap();
        store.trial_counts(study.id).await.unwrap();
        store.events_since(study.id, 0, 100).await.unwrap();
    })
    .await
    .expect("lease traffic does not wait for the study's row lock");

    // A new trial needs the study's number counter: it waits for the ask batch.
    let insert = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .insert_leased_trial(study.id, &params(2), &grant("d", 0, 1_000))
                .await
        })
    };
    // PostgreSQL says when a session waits on the asker's lock: no guessing how long
    // the insert would take were it not blocked.
    let deadline = std::time::Instant::now() + quick;
    loop {
        let blocked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))",
        )
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        if blocked > 0 {
            break;
        }
        assert!(!insert.is_finished(), "the insert waits for the study lock");
        assert!(
            std::time::Instant::now() < deadline,
            "nothing waits for the study lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!insert.is_finished(), "the insert waits for the study lock");
    tx.commit().await.unwrap();
    let inserted = tokio::time::timeout(quick, insert)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(inserted.number, 2);
    let events = all_events(&*store, study.id).await;
    assert_eq!(
        kinds_of(&events, t.id),
        ["created", "started", "epoch", "completed"]
    );
}

/// A study with a trial in every state and every column in use: completed and pruned
/// with epochs, failed with a reason, re-queued after an expired lease (its token kept),
/// released, running with an epoch and a live lease; stopped with a reason.
async fn rich_study(store: &dyn Store) -> StudyId {
    let study = store
        .create_study(new_study(Direction::Minimize, 1), 5)
        .await
        .unwrap()
        .id;
    let t0 = store
        .insert_leased_trial(study, &params(0), &grant("t0", 10, 1_000))
        .await
        .unwrap();
    for (e, v) in [(0, 0.5), (1, 0.25)] {
        store
            .report_epoch(
                t0.id,
                "t0",
                20 + e as i64,
                1_000,
                &epoch(e, v, json!({"loss": v})),
            )
            .await
            .unwrap();
    }
    store
        .finish_trial(t0.id, "t0", 40, completed(0.25))
        .await
        .unwrap();
    let t1 = store
        .insert_leased_trial(study, &params(1), &grant("t1", 50, 1_000))
        .await
        .unwrap();
    store
        .report_epoch(t1.id, "t1", 55, 1_000, &epoch(0, 0.9, json!({"loss": 0.9})))
        .await
        .unwrap();
    let pruned = Finish {
        state: TrialState::Pruned,
        value: Some(0.9),
        metrics: None,
        reason: Some("pruned at epoch 0".into()),
    };
    store
        .finish_trial_unleased(t1.id, 60, pruned)
        .await
        .unwrap();
    let t2 = store
        .insert_leased_trial(study, &params(2), &grant("t2", 65, 1_000))
        .await
        .unwrap();
    store
        .finish_trial(t2.id, "t2", 70, failed("boom"))
        .await
        .unwrap();
    store
        .insert_leased_trial(study, &params(3), &grant("t3", 80, 10))
        .await
        .unwrap();
    assert_eq!(store.reap_expired_leases(100).await.unwrap().len(), 1);
    let t4 = store
        .insert_leased_trial(study, &params(4), &grant("t4", 100, 1_000))
        .await
        .unwrap();
    store.release_trial(t4.id, "t4", 110).await.unwrap();
    let t5 = store
        .insert_leased_trial(study, &params(5), &grant("t5", 120, 1_000_000))
        .await
        .unwrap();
    store
        .report_epoch(
            t5.id,
            "t5",
            125,
            1_000_000,
            &epoch(0, 0.7, json!({"loss": 0.7})),
        )
        .await
        .unwrap();
    let t6 = store
        .insert_leased_trial(study, &params(6), &grant("t6", 130, 1_000))
        .await
        .unwrap();
    store
        .finish_trial(t6.id, "t6", 140, completed(0.1))
        .await
        .unwrap();
    store
        .set_study_state(study, StudyState::Stopped, Some("by the test"), 150)
        .await
        .unwrap();
    study
}

/// The dump with every id (study, trial, event) blanked: what a copy keeps.
fn without_ids(dump: &StudyDump) -> StudyDump {
    let mut d = dump.clone();
    d.study.id = StudyId(0);
    for t in &mut d.trials {
        t.id = TrialId(0);
        t.study_id = StudyId(0);
    }
    for e in &mut d.events {
        (e.id, e.study_id, e.trial_id) = (0, StudyId(0), TrialId(0));
    }
    d
}

/// A copy's own ids hang together: its trials and events are the study's, and every
/// event names the copy's trial of its number.
fn assert_ids_consistent(dump: &StudyDump) {
    assert!(dump.trials.iter().all(|t| t.study_id == dump.study.id));
    for e in &dump.events {
        assert_eq!(e.study_id, dump.study.id);
        assert_eq!(e.trial_id, dump.trials[e.number as usize].id, "{e:?}");
    }
    assert!(dump.events.windows(2).all(|w| w[0].id < w[1].id));
}

async fn a_study_is_exported_and_imported_with_everything_but_its_ids(b: &Backend) {
    let store = b.open().await;
    let id = rich_study(&*store).await;
    let dump = store.export_study(id).await.unwrap();
    // The dump is what the store answers, all of it.
    assert_eq!(dump.study, store.get_study(id).await.unwrap());
    assert_eq!(dump.trials, store.list_trials(id).await.unwrap());
    assert_eq!(dump.events, all_events(&*store, id).await);
    assert_eq!(
        (dump.trials.len(), dump.epoch_count(), dump.running_count()),
        (7, 4, 1)
    );
    assert!(matches!(
        store.export_study(StudyId(9_999)).await,
        Err(StoreError::StudyNotFound(_))
    ));

    let before = store.last_event_id(id).await.unwrap();
    let copy = store.import_study(&dump).await.unwrap();
    assert_ne!(copy.id, id);
    assert_eq!(
        copy,
        StudyRecord {
            id: copy.id,
            ..dump.study.clone()
        }
    );
    let again = store.export_study(copy.id).await.unwrap();
    assert_eq!(without_ids(&again), without_ids(&dump));
    assert_ids_consistent(&again);
    // The copied events come after every event already there, and no others exist:
    // the triggers' own entries for the inserts are gone.
    assert!(
        again.events[0].id > before,
        "{} > {before}",
        again.events[0].id
    );
    assert_eq!(all_events(&*store, copy.id).await, again.events);
    assert_eq!(
        store
            .trials_changed_after(copy.id, before)
            .await
            .unwrap()
            .len(),
        7
    );
    // Counts, best and the failure streak read as on the original.
    assert_eq!(
        store.trial_counts(copy.id).await.unwrap(),
        store.trial_counts(id).await.unwrap()
    );
    let counts = store.trial_counts(copy.id).await.unwrap();
    assert_eq!(
        (
            counts.pending,
            counts.running,
            counts.completed,
            counts.pruned,
            counts.failed
        ),
        (2, 1, 2, 1, 1)
    );
    let best = store.best_trial(copy.id).await.unwrap().unwrap();
    assert_eq!((best.number, best.value), (6, Some(0.1)));
    assert_eq!(
        store.consecutive_failures(copy.id, 10, 0).await.unwrap(),
        store.consecutive_failures(id, 10, 0).await.unwrap()
    );

    // The copy goes on where the original was: the next number, distinct configs, the
    // running trial's lease, re-queued trials, finished trials immutable.
    let next = store
        .insert_leased_trial(copy.id, &params(7), &grant("n", 200, 100))
        .await
        .unwrap();
    assert_eq!(next.number, 7);
    assert!(matches!(
        store
            .insert_leased_trial(copy.id, &params(0), &grant("d", 200, 100))
            .await,
        Err(StoreError::DuplicateConfig(_))
    ));
    let running = &again.trials[5];
    store
        .heartbeat(running.id, "t5", 200, 2_000_000)
        .await
        .unwrap();
    let requeued = store
        .lease_pending_trial(copy.id, &grant("r", 300, 100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((requeued.number, requeued.attempts), (3, 2));
    assert!(
        store
            .finish_trial(again.trials[0].id, "t0", 300, completed(0.0))
            .await
            .is_err()
    );
    let refused = b
        .exec(&format!(
            "UPDATE trials SET value = 1 WHERE study_id = {} AND number = 0",
            copy.id
        ))
        .await
        .unwrap_err();
    assert!(refused.contains("immutable"), "{refused}");
    let counts = store.trial_counts(copy.id).await.unwrap();
    assert_eq!((counts.pending, counts.running), (1, 3));
    // The original is untouched.
    assert_eq!(store.export_study(id).await.unwrap(), dump);
}

/// Leftovers outside `keep` (study ids): rows deleted by a sweep that should find none.
async fn rows_outside(b: &Backend, keep: &[StudyId]) -> u64 {
    let ids = keep
        .iter()
        .map(|s| s.0.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut found = 0;
    for sql in [
        format!(
            "DELETE FROM trial_epochs WHERE trial_id NOT IN \
             (SELECT id FROM trials WHERE study_id IN ({ids}))"
        ),
        format!("DELETE FROM trial_events WHERE study_id NOT IN ({ids})"),
        format!("DELETE FROM trial_counts WHERE study_id NOT IN ({ids})"),
        format!("DELETE FROM trials WHERE study_id NOT IN ({ids})"),
        format!("DELETE FROM studies WHERE id NOT IN ({ids})"),
    ] {
        found += b.exec(&sql).await.unwrap();
    }
    found
}

async fn a_failing_import_leaves_nothing_behind(b: &Backend) {
    let store = b.open().await;
    let id = rich_study(&*store).await;
    let dump = store.export_study(id).await.unwrap();

    // Refused by the database part-way, after the study, every trial and most epochs
    // went in: an epoch reported twice (the last trial), a completed trial without a
    // value (caught when the trial gets its state, after all epochs).
    let mut twice = dump.clone();
    let e = twice.trials[0].epochs[0].clone();
    twice.trials[6].epochs = vec![e.clone(), e];
    let mut no_value = dump.clone();
    no_value.trials[6].value = None;
    for bad in [twice, no_value] {
        let err = store.import_study(&bad).await.unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
        assert_eq!(store.list_studies().await.unwrap().len(), 1);
        assert_eq!(rows_outside(b, &[id]).await, 0, "after {err}");
    }

    // Refused before anything is written: an event of a trial the dump lacks, numbers
    // with a gap.
    let mut orphan = dump.clone();
    orphan.events[3].number = 42;
    let mut gap = dump.clone();
    gap.trials.remove(2);
    for bad in [orphan, gap] {
        let err = store.import_study(&bad).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert_eq!(rows_outside(b, &[id]).await, 0, "after {err}");
    }

    // Nothing held either: the next import goes through, its events after the rest.
    let before = store.last_event_id(id).await.unwrap();
    let copy = store.import_study(&dump).await.unwrap();
    let again = store.export_study(copy.id).await.unwrap();
    assert_eq!(without_ids(&again), without_ids(&dump));
    assert!(again.events[0].id > before);
    assert_eq!(store.export_study(id).await.unwrap(), dump);
}

mod across {
    use super::*;

    /// SQLite → PostgreSQL (which already holds a study) → a new SQLite file: the same
    /// study each time, but for ids.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_study_goes_from_sqlite_to_postgres_and_back_unchanged() {
        let Some(pg) = Backend::pg().await else {
            return;
        };
        let (lite, back) = (Backend::sqlite(), Backend::sqlite());
        let (from, to, home) = (lite.open().await, pg.open().await, back.open().await);
        let id = rich_study(&*from).await;
        let there_before = rich_study(&*to).await;
        let dump = from.export_study(id).await.unwrap();

        let on_pg = to.import_study(&dump).await.unwrap();
        let pg_dump = to.export_study(on_pg.id).await.unwrap();
        assert_eq!(without_ids(&pg_dump), without_ids(&dump));
        assert_ids_consistent(&pg_dump);
        assert!(pg_dump.events[0].id > to.last_event_id(there_before).await.unwrap());
        assert_eq!(
            to.trial_counts(on_pg.id).await.unwrap(),
            from.trial_counts(id).await.unwrap()
        );
        let next = to
            .insert_leased_trial(on_pg.id, &params(8), &grant("n", 200, 100))
            .await
            .unwrap();
        assert_eq!(next.number, 7, "next_number follows the copied trials");

        let back_home = home.import_study(&pg_dump).await.unwrap();
        let home_dump = home.export_study(back_home.id).await.unwrap();
        assert_eq!(without_ids(&home_dump), without_ids(&dump));
        assert_ids_consistent(&home_dump);
        let (a, z) = (
            from.best_trial(id).await.unwrap().unwrap(),
            home.best_trial(back_home.id).await.unwrap().unwrap(),
        );
        assert_eq!((a.number, a.value, a.epochs), (z.number, z.value, z.epochs));
        pg.finish().await;
    }
}
