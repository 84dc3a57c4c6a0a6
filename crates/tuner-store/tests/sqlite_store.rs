//! SqliteStore against real database files.

use std::sync::Arc;

use serde_json::json;
use tuner_core::{Direction, ParamValue, Params, StudyId, StudyState, TrialId, TrialState};
use tuner_store::{Finish, LeaseGrant, NewEpoch, NewStudy, SqliteStore, Store, StoreError};

async fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
    (dir, store)
}

fn new_study(direction: Direction, max_retries: u32) -> NewStudy {
    NewStudy {
        name: "s".into(),
        spec: json!({"name": "s"}),
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

#[tokio::test]
async fn studies_are_created_listed_and_deleted() {
    let (_dir, store) = open().await;
    let a = store
        .create_study(new_study(Direction::Maximize, 2), 1_000)
        .await
        .unwrap();
    let b = store
        .create_study(new_study(Direction::Minimize, 0), 2_000)
        .await
        .unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(a.state, StudyState::Running);
    assert_eq!(
        store.get_study(b.id).await.unwrap().direction,
        Direction::Minimize
    );
    assert_eq!(store.list_studies().await.unwrap().len(), 2);

    store
        .insert_leased_trial(a.id, &params(1), &grant("t", 0, 10))
        .await
        .unwrap();
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
        store.delete_study(a.id).await,
        Err(StoreError::StudyNotFound(_))
    ));
    assert!(matches!(
        store.get_study(StudyId(999)).await,
        Err(StoreError::StudyNotFound(StudyId(999)))
    ));
    store
        .set_study_state(b.id, StudyState::Stopped, Some("by test"), 3_000)
        .await
        .unwrap();
    let b = store.get_study(b.id).await.unwrap();
    assert_eq!(
        (b.state, b.state_reason.as_deref()),
        (StudyState::Stopped, Some("by test"))
    );
}

#[tokio::test]
async fn concurrent_inserts_get_dense_unique_numbers() {
    let (_dir, store) = open().await;
    let store = Arc::new(store);
    let study = store
        .create_study(new_study(Direction::Maximize, 2), 0)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .insert_leased_trial(study.id, &params(i), &grant(&format!("t{i}"), 0, 1_000))
                .await
                .unwrap()
                .number
        }));
    }
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.unwrap());
    }
    numbers.sort();
    assert_eq!(numbers, (0..40).collect::<Vec<u64>>());
}

#[tokio::test]
async fn only_the_lease_holder_may_touch_a_running_trial() {
    let (_dir, store) = open().await;
    let study = store
        .create_study(new_study(Direction::Maximize, 2), 0)
        .await
        .unwrap();
    let t = store
        .insert_leased_trial(study.id, &params(1), &grant("good", 100, 1_000))
        .await
        .unwrap();
    assert_eq!((t.state, t.attempts, t.number), (TrialState::Running, 1, 0));

    assert!(matches!(
        store.heartbeat(t.id, "bad", 200, 2_000).await,
        Err(StoreError::LeaseMismatch(_))
    ));
    assert!(matches!(
        store.finish_trial(t.id, "bad", 200, completed(0.5)).await,
        Err(StoreError::LeaseMismatch(_))
    ));
    assert!(matches!(
        store.heartbeat(TrialId(12345), "good", 200, 2_000).await,
        Err(StoreError::TrialNotFound(_))
    ));
    // Heartbeat extends the lease past its first expiry (1_100).
    store.heartbeat(t.id, "good", 900, 5_000).await.unwrap();
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
    // Reporting the same epoch again (a retried request) keeps the first report; another
    // value for it is refused.
    let again = store
        .report_epoch(
            t.id,
            "good",
            4_100,
            6_000,
            &epoch(1, 0.4, json!({"acc": 0.4})),
        )
        .await
        .unwrap();
    assert_eq!(again.epochs.len(), 1);
    assert_eq!(again.epochs[0].value, Some(0.4));
    assert!(matches!(
        store
            .report_epoch(t.id, "good", 4_200, 6_000, &epoch(1, 0.45, json!({"acc": 0.45})))
            .await,
        Err(StoreError::EpochConflict {
            epoch: 1,
            value: Some(v),
            ..
        }) if v == 0.4
    ));

    let done = store
        .finish_trial(t.id, "good", 5_000, completed(0.9))
        .await
        .unwrap();
    assert_eq!((done.state, done.value), (TrialState::Completed, Some(0.9)));
    assert_eq!(done.lease_expires_at, None);

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
            .finish_trial(
                t.id,
                "good",
                5_001,
                Finish {
                    state: TrialState::Failed,
                    value: None,
                    metrics: None,
                    reason: Some("late".into()),
                },
            )
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
    assert_eq!(store.get_trial(t.id).await.unwrap().value, Some(0.9));
}

#[tokio::test]
async fn the_schema_itself_refuses_changes_to_finished_trials() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path).await.unwrap();
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
    store.close().await;

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let err = sqlx::query("UPDATE trials SET value = 0 WHERE id = ?")
        .bind(t.id.0)
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("immutable"), "{err}");
}

#[tokio::test]
async fn expired_leases_are_requeued_then_failed_after_retries() {
    let (_dir, store) = open().await;
    let study = store
        .create_study(new_study(Direction::Maximize, 1), 0)
        .await
        .unwrap();
    let t = store
        .insert_leased_trial(study.id, &params(7), &grant("a", 0, 100))
        .await
        .unwrap();
    // Not expired yet.
    assert!(store.reap_expired_leases(50).await.unwrap().is_empty());
    // An expired lease cannot be used any more, even before it is reaped.
    assert!(matches!(
        store.finish_trial(t.id, "a", 200, completed(0.1)).await,
        Err(StoreError::LeaseExpired(_))
    ));
    let reaped = store.reap_expired_leases(200).await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0].state, TrialState::Pending);
    // Re-queued, not leased again yet: the late holder hears its lease expired.
    assert!(matches!(
        store.heartbeat(t.id, "a", 201, 300).await,
        Err(StoreError::LeaseExpired(_))
    ));
    assert!(matches!(
        store.heartbeat(t.id, "someone", 201, 300).await,
        Err(StoreError::NotRunning {
            state: TrialState::Pending,
            ..
        })
    ));

    // Re-leased with the same params and number; a second attempt.
    let again = store
        .lease_pending_trial(study.id, &grant("b", 300, 100))
        .await
        .unwrap()
        .expect("the re-queued trial is handed out again");
    assert_eq!((again.id, again.number, again.attempts), (t.id, 0, 2));
    assert_eq!(again.params, params(7));
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
    assert!(failed.failure_reason.unwrap().contains("lease expired"));
    assert_eq!(store.consecutive_failures(study.id, 5).await.unwrap(), 1);
}

#[tokio::test]
async fn best_trial_follows_the_direction_and_prefers_earlier_ties() {
    for (direction, want) in [(Direction::Maximize, 1), (Direction::Minimize, 0)] {
        let (_dir, store) = open().await;
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
        let best = store.best_trial(study.id).await.unwrap().unwrap();
        assert_eq!(best.number, want, "{direction:?}");
        let counts = store.trial_counts(study.id).await.unwrap();
        assert_eq!(counts.completed, 4);
    }
}

#[tokio::test]
async fn data_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let (study, trial) = {
        let store = SqliteStore::open(&path).await.unwrap();
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
    let store = SqliteStore::open(&path).await.unwrap();
    let t = store.get_trial(trial).await.unwrap();
    assert_eq!(
        (t.study_id, t.state, t.value),
        (study, TrialState::Completed, Some(0.8))
    );
}

#[tokio::test]
async fn every_trial_change_is_logged_as_an_event() {
    let (_dir, store) = open().await;
    let study = store
        .create_study(new_study(Direction::Maximize, 1), 0)
        .await
        .unwrap();
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
    let b = store
        .insert_leased_trial(study.id, &params(2), &grant("b", 0, 100))
        .await
        .unwrap();
    store.reap_expired_leases(1_000).await.unwrap();
    store
        .lease_pending_trial(study.id, &grant("c", 1_000, 100))
        .await
        .unwrap();
    store.release_trial(b.id, "c", 1_010).await.unwrap();

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
    // Resuming after an event gives only what came later.
    let later = store
        .events_since(study.id, events[6].id, 100)
        .await
        .unwrap();
    assert_eq!(later.len(), 2);
}

#[tokio::test]
async fn counts_follow_every_state_change() {
    let (_dir, store) = open().await;
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
        .finish_trial(
            ids[1],
            "t1",
            10,
            Finish {
                state: TrialState::Failed,
                value: None,
                metrics: None,
                reason: Some("x".into()),
            },
        )
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
}

/// Many finishes at once share commits: the ones refused (a wrong token, an unknown
/// trial, a retry of a finished trial) get their own answers and disturb none of the
/// others, and everything acknowledged is on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_finishes_are_answered_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let study = store
        .create_study(new_study(Direction::Maximize, 2), 0)
        .await
        .unwrap();
    let mut trials = Vec::new();
    for i in 0..60 {
        let t = store
            .insert_leased_trial(study.id, &params(i), &grant(&format!("t{i}"), 0, 1_000))
            .await
            .unwrap();
        trials.push(t.id);
    }
    let mut tasks = Vec::new();
    for (i, id) in trials.iter().copied().enumerate() {
        let store = store.clone();
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
    let unknown = store
        .finish_trial(TrialId(9_999), "t0", 10, completed(1.0))
        .await;
    assert!(
        matches!(unknown, Err(StoreError::TrialNotFound(_))),
        "{unknown:?}"
    );
    for t in tasks {
        t.await.unwrap();
    }
    store.close().await;
    drop(store);

    let reopened = SqliteStore::open(&path).await.unwrap();
    let counts = reopened.trial_counts(study.id).await.unwrap();
    assert_eq!((counts.completed, counts.running), (60, 0));
    let trials = reopened.trial_summaries(study.id).await.unwrap();
    assert!(trials.iter().all(|t| t.value == Some(t.number as f64)));
}
