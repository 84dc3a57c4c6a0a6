//! Parameter importance, cached per study until a trial finishes.

use std::sync::Arc;

use tuner_core::StudyId;

use crate::{ApiError, AppState};

/// Identifies what an importance answer depends on: which trials have finished, and
/// how (finished trials never change, so this only moves when one finishes).
fn finished_fingerprint(history: &[tuner_optim::Observation]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (i, o) in history.iter().enumerate() {
        let (kind, value) = match o.outcome {
            tuner_optim::Outcome::Completed(v) => (1u8, Some(v)),
            tuner_optim::Outcome::Pruned(v) => (2, v),
            tuner_optim::Outcome::Failed => (3, None),
            tuner_optim::Outcome::Pending => continue,
        };
        (i, kind, value.map(f64::to_bits)).hash(&mut hasher);
    }
    hasher.finish()
}

/// Parameter importance from a GP fitted to the study's completed trials; computed
/// again only when a trial has finished since the last answer.
pub async fn importance(
    state: &AppState,
    id: StudyId,
) -> Result<Arc<tuner_api::Importance>, ApiError> {
    let record = state.study(id).await?;
    let spec = state.spec_of(&record)?;
    let store = state.store();
    let history = if state.is_shared() {
        // Other servers' trials too.
        state
            .histories()
            .catch_up(store, id, |next, unfinished| async move {
                store.trials_from(id, next, &unfinished).await
            })
            .await?
    } else {
        state.histories().snapshot(store, id).await?
    }
    .observations;
    let fingerprint = finished_fingerprint(&history);
    if let Some(answer) = state.cached_importance(id, fingerprint) {
        return Ok(answer);
    }
    let completed = history
        .iter()
        .filter(|o| matches!(o.outcome, tuner_optim::Outcome::Completed(_)))
        .count() as u64;
    let fitted = tokio::task::spawn_blocking(move || {
        tuner_optim::parameter_importance(
            &spec.parameters,
            spec.objective.direction,
            &history,
            spec.optimizer.seed,
        )
    })
    .await
    .map_err(|e| ApiError::Internal(format!("importance task panicked: {e}")))?;
    let (parameters, note) = match fitted {
        Some(list) => (
            list.into_iter()
                .map(|(name, importance)| tuner_api::ParamImportance { name, importance })
                .collect(),
            None,
        ),
        None => (
            Vec::new(),
            Some("needs at least 5 completed trials with different values".to_owned()),
        ),
    };
    let answer = Arc::new(tuner_api::Importance {
        study_id: id,
        method: "total-effect Sobol' indices of a Gaussian-process posterior mean".into(),
        parameters,
        completed_trials: completed,
        note,
    });
    state.cache_importance(id, fingerprint, answer.clone());
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::{body::Body, http::Request};
    use http_body_util::BodyExt;
    use serde_json::{Value, json};
    use tower::ServiceExt;
    use tuner_store::SqliteStore;

    use crate::{AppState, ServerConfig, app};

    async fn call(state: &AppState, uri: &str, body: Value) -> Value {
        let req = Request::post(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = app(state.clone()).oneshot(req).await.unwrap();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    async fn run_trial(state: &AppState, study: i64, k: u32) {
        let a = call(state, &format!("/studies/{study}/ask"), json!({})).await;
        let x = a["trial"]["params"]["x"].as_f64().unwrap();
        let id = a["trial"]["id"].as_i64().unwrap();
        let token = a["lease"]["token"].as_str().unwrap();
        let value = x * x + f64::from(k) * 1e-3;
        call(
            state,
            &format!("/trials/{id}/complete"),
            json!({"lease_token": token, "value": value}),
        )
        .await;
    }

    /// The GP behind `importance` is fitted again only after a trial finishes.
    #[tokio::test]
    async fn importance_is_computed_once_per_set_of_finished_trials() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("i.db")).await.unwrap();
        let state = AppState::new(Arc::new(store), ServerConfig::default());
        let spec = json!({
            "version": 1, "name": "imp",
            "objective": {"metric": "v", "direction": "minimize"},
            "budget": {"max_trials": 20, "parallelism": 1},
            "optimizer": {"kind": "random", "seed": 3},
            "parameters": {
                "x": {"type": "float", "min": -1.0, "max": 1.0},
                "y": {"type": "float", "min": 0.0, "max": 1.0}
            }
        });
        let study = call(&state, "/studies", spec).await["id"].as_i64().unwrap();
        for k in 0..6 {
            run_trial(&state, study, k).await;
        }
        let id = tuner_core::StudyId(study);
        let first = super::importance(&state, id).await.unwrap();
        assert_eq!(first.completed_trials, 6);
        assert!(!first.parameters.is_empty());
        let again = super::importance(&state, id).await.unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "computed again with nothing new"
        );
        run_trial(&state, study, 6).await;
        let after = super::importance(&state, id).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &after));
        assert_eq!(after.completed_trials, 7);
    }
}
