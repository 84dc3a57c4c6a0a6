//! The HTTP API through the router (`app()` + `oneshot`), on a real SQLite file.

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use tuner_server::{AppState, ManualClock, ServerConfig, app};
use tuner_store::SqliteStore;

struct TestServer {
    _dir: tempfile::TempDir,
    state: AppState,
    router: Router,
    /// The server's clock: it moves only when a test moves it.
    clock: ManualClock,
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl TestServer {
    async fn new() -> Self {
        Self::with_config(ServerConfig::default()).await
    }

    async fn with_config(config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("api.db")).await.unwrap();
        Self::on_store(dir, store, config)
    }

    /// A server on `store` whose clock is a [`ManualClock`] at the system time.
    fn on_store(dir: tempfile::TempDir, store: SqliteStore, config: ServerConfig) -> Self {
        let clock = ManualClock::at_system_time();
        let config = ServerConfig {
            clock: clock.clone().into(),
            ..config
        };
        let state = AppState::new(Arc::new(store), config);
        Self {
            _dir: dir,
            router: app(state.clone()),
            state,
            clock,
        }
    }

    async fn send(&self, req: Request<Body>) -> Answer {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "non-JSON body ({status}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Answer {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    async fn post(&self, uri: &str, body: Value) -> Answer {
        self.send(
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    async fn post_yaml(&self, uri: &str, yaml: &str) -> Answer {
        self.send(
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/yaml")
                .body(Body::from(yaml.to_owned()))
                .unwrap(),
        )
        .await
    }

    async fn create(&self, yaml: &str) -> i64 {
        let a = self.post_yaml("/studies", yaml).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body["id"].as_i64().unwrap()
    }

    /// Asks for a trial; returns (trial id, token) or None on 204.
    async fn ask(&self, study: i64) -> Option<(i64, String)> {
        let a = self.post(&format!("/studies/{study}/ask"), json!({})).await;
        match a.status {
            StatusCode::OK => Some((
                a.body["trial"]["id"].as_i64().unwrap(),
                a.body["lease"]["token"].as_str().unwrap().to_owned(),
            )),
            StatusCode::NO_CONTENT => None,
            other => panic!("ask answered {other}: {}", a.body),
        }
    }

    async fn fail(&self, trial: i64, token: &str, reason: &str) -> Answer {
        self.post(
            &format!("/trials/{trial}/fail"),
            json!({"lease_token": token, "reason": reason}),
        )
        .await
    }

    async fn complete(&self, trial: i64, token: &str, value: f64) -> Answer {
        self.post(
            &format!("/trials/{trial}/complete"),
            json!({"lease_token": token, "value": value}),
        )
        .await
    }
}

fn space(max_trials: u32, parallelism: u32, extra: &str) -> String {
    format!(
        "version: 1\nname: api-test\nobjective: {{metric: acc, direction: maximize}}\n\
         budget: {{max_trials: {max_trials}, parallelism: {parallelism}}}\n{extra}\
         parameters:\n  lr: {{type: float, min: 1.0e-4, max: 1.0e-1, log: true}}\n  \
         act: {{type: categorical, values: [relu, tanh]}}\nfixed: {{pool_size: 1}}\n"
    )
}

/// A study for the built-in trainer: only parameters it knows.
const BUILTIN_SPACE: &str = "version: 1\nname: cnn\nobjective: {metric: val_accuracy, direction: maximize}\n\
    trainer: {kind: fashion-mnist-cnn, epochs: 1}\nbudget: {max_trials: 2}\nparameters:\n  \
    learning_rate: {type: float, min: 1.0e-4, max: 1.0e-2, log: true}\n  \
    conv_activation: {type: categorical, values: [relu, tanh]}\n";

fn assert_error(a: &Answer, status: StatusCode, code: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.body["error"]["code"], code, "{}", a.body);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

#[tokio::test]
async fn create_get_and_list_studies() {
    let s = TestServer::new().await;
    let a = s.post_yaml("/studies", &space(5, 1, "")).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let id = a.body["id"].as_i64().unwrap();
    assert_eq!(a.headers[header::LOCATION], format!("/studies/{id}"));
    assert_eq!(a.body["state"], "running");
    assert_eq!(a.body["spec"]["parameters"]["lr"]["log"], true);

    // The same document as JSON.
    let doc: Value = serde_yaml_ng::from_str(&space(5, 1, "")).unwrap();
    let b = s.post("/studies", doc).await;
    assert_eq!(b.status, StatusCode::CREATED);

    let list = s.get("/studies").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["studies"].as_array().unwrap().len(), 2);
    assert!(list.body["studies"][0].get("spec").is_none());

    let one = s.get(&format!("/studies/{id}")).await;
    assert_eq!(one.body["counts"]["total"], 0);
    assert_eq!(one.body["max_trials"], 5);
}

#[tokio::test]
async fn bad_requests_get_the_error_envelope() {
    let s = TestServer::with_config(ServerConfig {
        max_body_bytes: 4_096,
        ..ServerConfig::default()
    })
    .await;
    let a = s
        .post_yaml(
            "/studies",
            "version: 1\nname: x\nobjective: {metric: m, direction: up}\nbudget: {max_trials: 0}\nparameters:\n  a: {type: float, min: 2, max: 1}\n",
        )
        .await;
    assert_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "invalid_search_space");
    let paths: Vec<&str> = a.body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "objective.direction",
            "budget.max_trials",
            "parameters.a.min"
        ]
    );

    let form = s
        .send(
            Request::post("/studies")
                .header(header::CONTENT_TYPE, "multipart/form-data")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await;
    assert_error(
        &form,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    let big = s.post_yaml("/studies", &"#".repeat(10_000)).await;
    assert_error(&big, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    let binary = s
        .send(
            Request::post("/studies")
                .header(header::CONTENT_TYPE, "application/yaml")
                .body(Body::from(vec![0xff, 0xfe, 0x00]))
                .unwrap(),
        )
        .await;
    assert_error(&binary, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");

    assert_error(
        &s.get("/studies/999").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.get("/studies/abc").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.get("/studies/999/trials").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(&s.get("/nowhere").await, StatusCode::NOT_FOUND, "not_found");
    assert_error(
        &s.post("/studies/999/ask", json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.send(Request::put("/studies").body(Body::empty()).unwrap())
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let id = s.create(&space(5, 1, "")).await;
    let typo = s
        .post(&format!("/studies/{id}/ask"), json!({"wroker": "w1"}))
        .await;
    assert_error(&typo, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let filter = s.get(&format!("/studies/{id}/trials?state=done")).await;
    assert_error(&filter, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let no_best = s.get(&format!("/studies/{id}/best")).await;
    assert_error(&no_best, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn ask_report_complete_and_best() {
    let s = TestServer::new().await;
    let id = s
        .create(&space(3, 1, "trainer: {kind: external, epochs: 2}\n"))
        .await;
    let a = s
        .post(&format!("/studies/{id}/ask"), json!({"worker": "w1"}))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let trial = a.body["trial"]["id"].as_i64().unwrap();
    let token = a.body["lease"]["token"].as_str().unwrap().to_owned();
    assert_eq!(a.body["trial"]["number"], 0);
    assert_eq!(a.body["trial"]["attempt"], 1);
    assert_eq!(a.body["trial"]["config"]["pool_size"], 1);
    assert_eq!(a.body["trial"]["trainer"]["epochs"], 2);
    assert_eq!(a.body["trial"]["objective"]["metric"], "acc");
    assert!(
        a.body["lease"]["expires_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    let hb = s
        .post(
            &format!("/trials/{trial}/heartbeat"),
            json!({"lease_token": token}),
        )
        .await;
    assert_eq!(hb.status, StatusCode::OK, "{}", hb.body);
    // The token may also come in a header.
    let hb = s
        .send(
            Request::post(format!("/trials/{trial}/heartbeat"))
                .header("x-lease-token", &token)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(hb.status, StatusCode::OK, "{}", hb.body);

    let wrong = s
        .post(
            &format!("/trials/{trial}/report"),
            json!({"lease_token": "nope", "epoch": 1, "metrics": {"acc": 0.5}}),
        )
        .await;
    assert_error(&wrong, StatusCode::FORBIDDEN, "lease_mismatch");
    let missing = s
        .post(&format!("/trials/{trial}/complete"), json!({"value": 0.5}))
        .await;
    assert_error(
        &missing,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    );
    let novalue = s
        .post(
            &format!("/trials/{trial}/complete"),
            json!({"lease_token": token, "metrics": {"loss": 0.1}}),
        )
        .await;
    assert_error(
        &novalue,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    );
    assert_eq!(novalue.body["error"]["details"][0]["path"], "value");
    let notnum = s
        .post(
            &format!("/trials/{trial}/complete"),
            json!({"lease_token": token, "metrics": {"acc": "high"}}),
        )
        .await;
    assert_eq!(notnum.body["error"]["details"][0]["path"], "metrics.acc");

    let rep = s
        .post(
            &format!("/trials/{trial}/report"),
            json!({"lease_token": token, "epoch": 1, "metrics": {"acc": 0.5, "loss": 1.2}}),
        )
        .await;
    assert_eq!(rep.status, StatusCode::OK, "{}", rep.body);
    assert_eq!(rep.body["action"], "continue");

    let done = s
        .post(
            &format!("/trials/{trial}/complete"),
            json!({"lease_token": token, "metrics": {"acc": 0.75, "confusion": [[1, 0], [0, 1]]}}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["state"], "completed");
    assert_eq!(done.body["value"], 0.75);
    assert_eq!(done.body["intermediate"][0]["value"], 0.5);

    // A retried completion (its answer lost) gets the same answer; nothing changes. One
    // with another value is refused.
    let again = s.complete(trial, &token, 0.75).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["value"], 0.75);
    let other = s.complete(trial, &token, 0.9).await;
    assert_error(&other, StatusCode::CONFLICT, "trial_already_finished");
    let late = s
        .post(
            &format!("/trials/{trial}/fail"),
            json!({"lease_token": token, "reason": "too late"}),
        )
        .await;
    assert_error(&late, StatusCode::CONFLICT, "trial_not_running");

    let best = s.get(&format!("/studies/{id}/best")).await;
    assert_eq!(best.status, StatusCode::OK);
    assert_eq!(best.body["trial"]["value"], 0.75);
    assert_eq!(best.body["config"]["pool_size"], 1);
    assert!(best.body["config"]["lr"].is_number());

    let trials = s.get(&format!("/studies/{id}/trials")).await;
    let t = &trials.body["trials"][0];
    assert_eq!(t["worker"], "w1");
    assert_eq!(t["metrics"]["confusion"][1][1], 1);
    let filtered = s.get(&format!("/studies/{id}/trials?state=running")).await;
    assert!(filtered.body["trials"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn budget_and_parallelism_are_global() {
    let s = TestServer::new().await;
    let id = s.create(&space(3, 2, "")).await;
    let (t1, k1) = s.ask(id).await.unwrap();
    let (t2, k2) = s.ask(id).await.unwrap();
    // Parallelism 2: a third worker is told to come back.
    let a = s.post(&format!("/studies/{id}/ask"), json!({})).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(a.headers[header::RETRY_AFTER], "1");
    s.complete(t1, &k1, 0.1).await;
    let (t3, k3) = s.ask(id).await.unwrap();
    // Budget spent (3), two in flight: wait.
    let a = s.post(&format!("/studies/{id}/ask"), json!({})).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(a.headers.contains_key(header::RETRY_AFTER));
    s.complete(t2, &k2, 0.2).await;
    s.complete(t3, &k3, 0.3).await;
    // All done: a plain 204, and the study is completed.
    let a = s.post(&format!("/studies/{id}/ask"), json!({})).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(!a.headers.contains_key(header::RETRY_AFTER));
    let study = s.get(&format!("/studies/{id}")).await;
    assert_eq!(study.body["state"], "completed");
    assert_eq!(study.body["counts"]["completed"], 3);
    assert_eq!(study.body["best"]["value"], 0.3);
}

/// A space of two configurations, and budget for ten.
const TWO_CONFIGS: &str = "version: 1\nname: tiny\nobjective: {metric: acc, direction: maximize}\nbudget: {max_trials: 10, parallelism: 10}\nparameters:\n  k: {type: categorical, values: [3, 5]}\n";

#[tokio::test]
async fn a_finite_space_is_never_repeated_and_says_when_exhausted() {
    let s = TestServer::new().await;
    let id = s.create(TWO_CONFIGS).await;
    let (t1, k1) = s.ask(id).await.unwrap();
    let (t2, k2) = s.ask(id).await.unwrap();
    assert!(s.ask(id).await.is_none());
    s.complete(t1, &k1, 0.5).await;
    s.complete(t2, &k2, 0.6).await;
    assert!(s.ask(id).await.is_none());
    let study = s.get(&format!("/studies/{id}")).await;
    assert_eq!(study.body["state"], "completed");
    assert!(
        study.body["state_reason"]
            .as_str()
            .unwrap()
            .contains("exhausted"),
        "{}",
        study.body
    );
    let trials = s.get(&format!("/studies/{id}/trials")).await;
    let ks: Vec<&Value> = trials.body["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["params"]["k"])
        .collect();
    assert_ne!(ks[0], ks[1]);
}

#[tokio::test]
async fn lost_leases_are_retried_then_failed_and_failures_stop_the_study() {
    let lease = Duration::from_secs(60);
    let s = TestServer::with_config(ServerConfig {
        lease,
        ..ServerConfig::default()
    })
    .await;
    let id = s
        .create(&space(5, 1, "").replace(
            "parallelism: 1}",
            "parallelism: 1, max_retries: 1, max_consecutive_failures: 2}",
        ))
        .await;
    let first = s.post(&format!("/studies/{id}/ask"), json!({})).await;
    let trial = first.body["trial"]["id"].as_i64().unwrap();
    let params = first.body["trial"]["params"].clone();
    let old_token = first.body["lease"]["token"].as_str().unwrap().to_owned();

    // The lease holds up to its last millisecond: parallelism 1 is still taken.
    s.clock.advance(lease);
    let waiting = s.post(&format!("/studies/{id}/ask"), json!({})).await;
    assert_eq!(waiting.status, StatusCode::NO_CONTENT, "{}", waiting.body);
    assert!(waiting.headers.contains_key(header::RETRY_AFTER));

    // The expired trial is handed out again: same trial, same params, attempt 2.
    s.clock.advance(Duration::from_millis(1));
    let second = s.post(&format!("/studies/{id}/ask"), json!({})).await;
    assert_eq!(second.body["trial"]["id"], trial);
    assert_eq!(second.body["trial"]["params"], params);
    assert_eq!(second.body["trial"]["attempt"], 2);
    let late = s.complete(trial, &old_token, 0.9).await;
    assert_error(&late, StatusCode::FORBIDDEN, "lease_mismatch");
    s.clock.advance(lease + Duration::from_millis(1));

    // Out of retries: failed with the reason; a new trial takes its place.
    let (next, token) = s.ask(id).await.unwrap();
    assert_ne!(next, trial);
    let t = s.get(&format!("/trials/{trial}")).await;
    assert_eq!(t.body["state"], "failed");
    assert!(
        t.body["failure_reason"]
            .as_str()
            .unwrap()
            .contains("lease expired")
    );

    // A second failure in a row trips max_consecutive_failures = 2.
    let f = s.fail(next, &token, "CUDA on fire").await;
    assert_eq!(f.status, StatusCode::OK, "{}", f.body);
    assert_eq!(f.body["failure_reason"], "CUDA on fire");
    let study = s.get(&format!("/studies/{id}")).await;
    assert_eq!(study.body["state"], "failed", "{}", study.body);
    assert!(s.ask(id).await.is_none());

    // A failed study resumes with a fresh streak: the failures before the resume do
    // not count, so one more failure leaves it running and a second fails it again.
    s.clock.advance(Duration::from_millis(1));
    let resumed = s.post(&format!("/studies/{id}/resume"), json!({})).await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.body);
    assert_eq!(resumed.body["state"], "running");
    s.clock.advance(Duration::from_millis(1));
    for expected in ["running", "failed"] {
        let (next, token) = s.ask(id).await.unwrap();
        let f = s.fail(next, &token, "CUDA on fire").await;
        assert_eq!(f.status, StatusCode::OK, "{}", f.body);
        let study = s.get(&format!("/studies/{id}")).await;
        assert_eq!(study.body["state"], expected, "{}", study.body);
    }
}

#[tokio::test]
async fn a_completed_study_is_extended_and_resumed_only_with_budget_left() {
    let s = TestServer::new().await;
    let id = s.create(&space(2, 2, "")).await;
    for _ in 0..2 {
        let (trial, token) = s.ask(id).await.unwrap();
        assert_eq!(s.complete(trial, &token, 0.5).await.status, StatusCode::OK);
    }
    assert_eq!(
        s.get(&format!("/studies/{id}")).await.body["state"],
        "completed"
    );

    // Spent: resume says to extend.
    let r = s.post(&format!("/studies/{id}/resume"), json!({})).await;
    assert_error(&r, StatusCode::CONFLICT, "invalid_study_state");
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("extend"), "{message}");

    // The new total must be above the current one.
    for (max_trials, said) in [(1, "above the study's current 2"), (2, "above")] {
        let e = s
            .post(
                &format!("/studies/{id}/extend"),
                json!({"max_trials": max_trials}),
            )
            .await;
        assert_error(&e, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        assert!(e.body["error"]["message"].as_str().unwrap().contains(said));
    }
    let bad = s
        .post(
            &format!("/studies/{id}/extend"),
            json!({"max_trials": "lots"}),
        )
        .await;
    assert_error(&bad, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");

    let e = s
        .post(&format!("/studies/{id}/extend"), json!({"max_trials": 3}))
        .await;
    assert_eq!(e.status, StatusCode::OK, "{}", e.body);
    assert_eq!(e.body["state"], "running");
    assert_eq!(e.body["max_trials"], 3);
    assert_eq!(e.body["spec"]["budget"]["max_trials"], 3);
    let (trial, token) = s
        .ask(id)
        .await
        .expect("the extended budget hands out one more");
    assert!(s.ask(id).await.is_none(), "and only one");
    s.complete(trial, &token, 0.7).await;
    let study = s.get(&format!("/studies/{id}")).await;
    assert_eq!(study.body["state"], "completed");
    assert_eq!(study.body["counts"]["completed"], 3);

    // A running or paused study keeps its state when extended.
    let other = s.create(&space(2, 1, "")).await;
    s.post(&format!("/studies/{other}/pause"), json!({})).await;
    let e = s
        .post(
            &format!("/studies/{other}/extend"),
            json!({"max_trials": 5}),
        )
        .await;
    assert_eq!(
        (e.status, &e.body["state"]),
        (StatusCode::OK, &json!("paused"))
    );
    assert_error(
        &s.post("/studies/999/extend", json!({"max_trials": 5}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn studies_of_one_file_get_fresh_seeds_unless_it_sets_one() {
    let s = TestServer::new().await;
    let first_params = |id: i64| {
        let s = &s;
        async move {
            let a = s.post(&format!("/studies/{id}/ask"), json!({})).await;
            (
                a.body["trial"]["params"].clone(),
                s.get(&format!("/studies/{id}")).await.body,
            )
        }
    };
    let unseeded = space(5, 1, "optimizer: {kind: random}\n");
    let (a, study_a) = first_params(s.create(&unseeded).await).await;
    let (b, study_b) = first_params(s.create(&unseeded).await).await;
    let seed = |study: &Value| study["spec"]["optimizer"]["seed"].as_u64().unwrap();
    assert_ne!(
        seed(&study_a),
        seed(&study_b),
        "each study stores its own seed"
    );
    assert_ne!(a, b, "and does not replay the other's sequence");

    let seeded = space(5, 1, "optimizer: {kind: random, seed: 7}\n");
    let (c, study_c) = first_params(s.create(&seeded).await).await;
    let (d, _) = first_params(s.create(&seeded).await).await;
    assert_eq!(seed(&study_c), 7);
    assert_eq!(c, d, "an explicit seed replays");
}

#[tokio::test]
async fn a_completed_study_with_budget_left_resumes() {
    let s = TestServer::new().await;
    let id = s.create(TWO_CONFIGS).await;
    for _ in 0..2 {
        let (trial, token) = s.ask(id).await.unwrap();
        s.complete(trial, &token, 0.5).await;
    }
    assert!(s.ask(id).await.is_none());
    assert_eq!(
        s.get(&format!("/studies/{id}")).await.body["state"],
        "completed"
    );
    // Completed by exhaustion with 8 trials of budget left: resuming is allowed (and the
    // study completes again at the next ask, the space still being used up).
    let r = s.post(&format!("/studies/{id}/resume"), json!({})).await;
    assert_eq!(
        (r.status, &r.body["state"]),
        (StatusCode::OK, &json!("running"))
    );
    assert!(s.ask(id).await.is_none());
    assert_eq!(
        s.get(&format!("/studies/{id}")).await.body["state"],
        "completed"
    );
}

#[tokio::test]
async fn a_finished_trial_keeps_its_value_and_epochs_keep_theirs() {
    let s = TestServer::new().await;
    let id = s
        .create(&space(5, 2, "trainer: {kind: external, epochs: 3}\n"))
        .await;

    // Completions: an identical retry is answered again; another value is refused.
    let (trial, token) = s.ask(id).await.unwrap();
    assert_eq!(s.complete(trial, &token, 0.5).await.status, StatusCode::OK);
    assert_eq!(s.complete(trial, &token, 0.5).await.status, StatusCode::OK);
    let other = s.complete(trial, &token, 0.7).await;
    assert_error(&other, StatusCode::CONFLICT, "trial_already_finished");
    assert!(
        other.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("0.5"),
        "{}",
        other.body
    );
    assert_eq!(s.get(&format!("/trials/{trial}")).await.body["value"], 0.5);

    // 32 concurrent completions with different values: one wins, the rest are told.
    let (trial, token) = s.ask(id).await.unwrap();
    let answers = futures_util::future::join_all(
        (0..32).map(|k| s.complete(trial, &token, f64::from(k) / 100.0)),
    )
    .await;
    let won: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .collect();
    assert_eq!(won.len(), 1, "exactly one completion is accepted");
    for a in answers.iter().filter(|a| a.status != StatusCode::OK) {
        assert_error(a, StatusCode::CONFLICT, "trial_already_finished");
    }
    let stored = s.get(&format!("/trials/{trial}")).await;
    assert_eq!(stored.body["value"], won[0].body["value"]);

    // Epochs count from 1 to trainer.epochs; a re-report must repeat its value.
    let (trial, token) = s.ask(id).await.unwrap();
    let (server, token) = (&s, &token);
    let report = |epoch: i64, value: f64| async move {
        server
            .post(
                &format!("/trials/{trial}/report"),
                json!({"lease_token": token, "epoch": epoch, "value": value}),
            )
            .await
    };
    assert_error(
        &report(0, 0.1).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    );
    let beyond = report(4, 0.1).await;
    assert_error(&beyond, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    assert_eq!(beyond.body["error"]["details"][0]["path"], "epoch");
    assert_eq!(report(1, 0.1).await.status, StatusCode::OK);
    assert_eq!(report(1, 0.1).await.status, StatusCode::OK);
    assert_error(
        &report(1, 0.2).await,
        StatusCode::CONFLICT,
        "epoch_already_reported",
    );
    let t = s.get(&format!("/trials/{trial}")).await;
    assert_eq!(
        t.body["intermediate"].as_array().unwrap().len(),
        1,
        "{}",
        t.body
    );
    assert_eq!(t.body["intermediate"][0]["value"], 0.1, "{}", t.body);
}

#[tokio::test]
async fn a_requeued_trial_starts_afresh_and_its_late_holder_hears_why() {
    let lease = Duration::from_secs(60);
    let s = TestServer::with_config(ServerConfig {
        lease,
        ..ServerConfig::default()
    })
    .await;
    let id = s.create(&space(5, 1, "")).await;
    let (trial, old) = s.ask(id).await.unwrap();
    s.clock.advance(lease / 2);
    let r = s
        .post(
            &format!("/trials/{trial}/report"),
            json!({"lease_token": old, "epoch": 1, "value": 0.3}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A report renews the lease from its own time: past the ask's term, still held.
    s.clock.advance(lease / 2 + Duration::from_millis(1));
    assert!(s.ask(id).await.is_none());
    s.clock.advance(lease / 2);
    // Another worker's ask re-queues the expired trial (parallelism 1 frees up)...
    let again = s.post(&format!("/studies/{id}/ask"), json!({})).await;
    assert_eq!(again.body["trial"]["id"], trial, "{}", again.body);
    let new = again.body["lease"]["token"].as_str().unwrap().to_owned();
    // ...without the dead attempt's epochs.
    let t = s.get(&format!("/trials/{trial}")).await;
    assert_eq!(t.body["intermediate"], json!([]), "{}", t.body);
    assert_eq!(t.body["last_epoch"], Value::Null, "{}", t.body);
    // The new attempt reports its own epoch 1.
    let r = s
        .post(
            &format!("/trials/{trial}/report"),
            json!({"lease_token": new, "epoch": 1, "value": 0.6}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_error(
        &s.complete(trial, &old, 0.9).await,
        StatusCode::FORBIDDEN,
        "lease_mismatch",
    );

    // Expired and re-queued but not leased again yet: the late holder is told the
    // lease expired (not that the trial is "not running").
    s.clock.advance(lease + Duration::from_millis(1));
    tuner_server::reap_once(&s.state).await.unwrap();
    let t = s.get(&format!("/trials/{trial}")).await;
    assert_eq!(t.body["state"], "pending", "{}", t.body);
    assert_error(
        &s.complete(trial, &new, 0.9).await,
        StatusCode::CONFLICT,
        "lease_expired",
    );
}

#[tokio::test]
async fn ids_in_paths_are_plain_decimal() {
    let s = TestServer::new().await;
    let id = s.create(&space(5, 1, "")).await;
    let (trial, _) = s.ask(id).await.unwrap();
    assert_eq!(
        s.get(&format!("/trials/{trial}")).await.status,
        StatusCode::OK
    );
    for bad in [
        format!("/trials/+{trial}"),
        format!("/trials/0{trial}"),
        format!("/trials/{trial}%20"),
        format!("/studies/+{id}"),
        format!("/studies/0{id}/trials"),
        "/trials/-0".to_owned(),
    ] {
        assert_error(&s.get(&bad).await, StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn stop_pause_resume_and_delete() {
    let s = TestServer::new().await;
    let id = s.create(&space(5, 2, "")).await;
    let (trial, token) = s.ask(id).await.unwrap();

    let p = s.post(&format!("/studies/{id}/pause"), json!({})).await;
    assert_eq!(p.body["state"], "paused");
    let a = s.post(&format!("/studies/{id}/ask"), json!({})).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(a.headers.contains_key(header::RETRY_AFTER));
    let r = s.post(&format!("/studies/{id}/resume"), json!({})).await;
    assert_eq!(r.body["state"], "running");

    let stop = s.post(&format!("/studies/{id}/stop"), json!({})).await;
    assert_eq!(stop.body["state"], "stopped");
    let a = s.post(&format!("/studies/{id}/ask"), json!({})).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(!a.headers.contains_key(header::RETRY_AFTER));
    // The running trial is told to stop, and may still complete.
    let rep = s
        .post(
            &format!("/trials/{trial}/report"),
            json!({"lease_token": token, "epoch": 1, "value": 0.4}),
        )
        .await;
    assert_eq!(rep.body["action"], "stop");
    assert_eq!(s.complete(trial, &token, 0.4).await.status, StatusCode::OK);
    let again = s.post(&format!("/studies/{id}/pause"), json!({})).await;
    assert_error(&again, StatusCode::CONFLICT, "invalid_study_state");

    let del = s
        .send(
            Request::delete(format!("/studies/{id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_error(
        &s.get(&format!("/studies/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.get(&format!("/trials/{trial}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn the_median_rule_prunes_trials_behind_the_median() {
    let s = TestServer::new().await;
    let id = s
        .create(&space(
            5,
            2,
            "pruner: {kind: median, warmup_epochs: 1, min_trials: 1}\n",
        ))
        .await;
    let (a, ka) = s.ask(id).await.unwrap();
    for (epoch, v) in [(1, 0.5), (2, 0.7)] {
        let r = s
            .post(
                &format!("/trials/{a}/report"),
                json!({"lease_token": ka, "epoch": epoch, "metrics": {"acc": v}}),
            )
            .await;
        assert_eq!(r.body["action"], "continue");
    }
    s.complete(a, &ka, 0.8).await;

    let (b, kb) = s.ask(id).await.unwrap();
    // Epoch 1 is warm-up: never pruned, however bad.
    let r = s
        .post(
            &format!("/trials/{b}/report"),
            json!({"lease_token": kb, "epoch": 1, "value": 0.1}),
        )
        .await;
    assert_eq!(r.body["action"], "continue");
    let r = s
        .post(
            &format!("/trials/{b}/report"),
            json!({"lease_token": kb, "epoch": 2, "value": 0.6}),
        )
        .await;
    assert_eq!(r.body["action"], "stop", "{}", r.body);
    let t = s.get(&format!("/trials/{b}")).await;
    assert_eq!(t.body["state"], "pruned");
    assert_eq!(t.body["value"], 0.6);
    // A pruned trial is finished: the worker cannot complete it any more.
    assert_error(
        &s.complete(b, &kb, 0.9).await,
        StatusCode::CONFLICT,
        "trial_not_running",
    );

    let (c, kc) = s.ask(id).await.unwrap();
    let r = s
        .post(
            &format!("/trials/{c}/report"),
            json!({"lease_token": kc, "epoch": 2, "value": 0.75}),
        )
        .await;
    assert_eq!(
        r.body["action"], "continue",
        "above the median (0.65) goes on"
    );
}

#[tokio::test]
async fn no_pruner_stops_a_trial_at_the_trainers_last_epoch() {
    // At the last epoch the training is done: stopping would save nothing and turn a
    // fully trained trial's value into a pruned one.
    for pruner in [
        "{kind: median, warmup_epochs: 0, min_trials: 1}",
        "{kind: asha, min_resource: 1, reduction_factor: 2}",
    ] {
        let s = TestServer::new().await;
        let extra = format!("trainer: {{kind: external, epochs: 2}}\npruner: {pruner}\n");
        let id = s.create(&space(5, 1, &extra)).await;
        let report = |trial: i64, token: String, epoch: u32, value: f64| {
            let s = &s;
            async move {
                s.post(
                    &format!("/trials/{trial}/report"),
                    json!({"lease_token": token, "epoch": epoch, "value": value}),
                )
                .await
            }
        };
        let (a, ka) = s.ask(id).await.unwrap();
        report(a, ka.clone(), 1, 0.5).await;
        report(a, ka.clone(), 2, 0.8).await;
        s.complete(a, &ka, 0.8).await;

        // The pruner is live before the last epoch...
        let (b, kb) = s.ask(id).await.unwrap();
        let r = report(b, kb, 1, 0.1).await;
        assert_eq!(r.body["action"], "stop", "{pruner}: {}", r.body);

        // ...and never at it, however far behind.
        let (c, kc) = s.ask(id).await.unwrap();
        let r = report(c, kc.clone(), 1, 0.6).await;
        assert_eq!(r.body["action"], "continue", "{pruner}: {}", r.body);
        let r = report(c, kc.clone(), 2, 0.2).await;
        assert_eq!(r.body["action"], "continue", "{pruner}: {}", r.body);
        s.complete(c, &kc, 0.2).await;
        let t = s.get(&format!("/trials/{c}")).await;
        assert_eq!(t.body["state"], "completed", "{pruner}");
    }
}

#[tokio::test]
async fn worker_pools_ask_any_study_and_release_trials_on_shutdown() {
    let s = TestServer::new().await;
    // Nothing to do yet: a pool is told to wait, never that it is done.
    let idle = s.post("/ask", json!({"worker": "pool-1"})).await;
    assert_eq!(idle.status, StatusCode::NO_CONTENT);
    assert!(idle.headers.contains_key(header::RETRY_AFTER));

    let external = s.create(&space(2, 1, "")).await;
    let builtin = s.create(BUILTIN_SPACE).await;
    let a = s
        .post(
            "/ask",
            json!({"worker": "pool-1", "trainer": "fashion-mnist-cnn"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["trial"]["study_id"], builtin);
    let trial = a.body["trial"]["id"].as_i64().unwrap();
    let token = a.body["lease"]["token"].as_str().unwrap().to_owned();
    // Parallelism 1 on the built-in study: nothing more of that kind.
    let none = s
        .post("/ask", json!({"trainer": "fashion-mnist-cnn"}))
        .await;
    assert_eq!(none.status, StatusCode::NO_CONTENT);
    let any = s.post("/ask", json!({})).await;
    assert_eq!(any.body["trial"]["study_id"], external);
    let bad = s.post("/ask", json!({"trainer": "resnet"})).await;
    assert_error(&bad, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");

    // A worker shutting down gives its trial back without using up a retry.
    let r = s
        .post(
            &format!("/trials/{trial}/release"),
            json!({"lease_token": token}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["state"], "pending");
    assert_eq!(r.body["attempts"], 0);
    let again = s
        .post("/ask", json!({"trainer": "fashion-mnist-cnn"}))
        .await;
    assert_eq!(again.body["trial"]["id"], trial);
    assert_eq!(again.body["trial"]["attempt"], 1);
    let old = s
        .post(
            &format!("/trials/{trial}/release"),
            json!({"lease_token": token}),
        )
        .await;
    assert_error(&old, StatusCode::FORBIDDEN, "lease_mismatch");
}

#[tokio::test]
async fn built_in_trainer_studies_may_only_tune_what_the_trainer_knows() {
    let s = TestServer::new().await;
    let bad = s
        .post_yaml(
            "/studies",
            "version: 1\nname: cnn\nobjective: {metric: val_accuracy, direction: maximize}\n\
             trainer: {kind: fashion-mnist-cnn}\nbudget: {max_trials: 2}\nparameters:\n  \
             kernel_size: {type: categorical, values: [3, 4]}\n  \
             conv_filters: {type: int, min: 16, max: 64}\nfixed: {conv2_filters: 0}\n",
        )
        .await;
    assert_error(
        &bad,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_search_space",
    );
    let details = bad.body["error"]["details"].as_array().unwrap();
    let paths: Vec<&str> = details
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("parameters.kernel_size")),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("parameters.conv_filters")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.starts_with("fixed.conv2_filters")),
        "{paths:?}"
    );
    // An external trainer may tune anything.
    s.create(&space(2, 1, "")).await;
    s.create(BUILTIN_SPACE).await;
}

#[tokio::test]
async fn a_token_guards_every_route_but_health() {
    let s = TestServer::with_config(ServerConfig {
        token: Some("s3cret".into()),
        ..ServerConfig::default()
    })
    .await;
    assert_eq!(s.get("/health").await.status, StatusCode::OK);
    assert_error(
        &s.get("/studies").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let wrong = s
        .send(
            Request::get("/studies")
                .header(header::AUTHORIZATION, "Bearer s3cre")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "unauthorized");
    // Unknown routes do not reveal themselves to strangers either.
    assert_error(
        &s.get("/nowhere").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let ok = s
        .send(
            Request::get("/studies")
                .header(header::AUTHORIZATION, "Bearer s3cret")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test]
async fn a_blank_configured_token_fails_closed() {
    // `serve` refuses blank tokens; a library user who builds this config anyway gets a
    // server that lets nobody in, never one that lets everybody in.
    for blank in ["", " "] {
        let s = TestServer::with_config(ServerConfig {
            token: Some(blank.into()),
            ..ServerConfig::default()
        })
        .await;
        assert_error(
            &s.get("/studies").await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
        for header_value in ["Bearer ", "Bearer  ", "Bearer"] {
            let a = s
                .send(
                    Request::get("/studies")
                        .header(header::AUTHORIZATION, header_value)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
            assert_error(&a, StatusCode::UNAUTHORIZED, "unauthorized");
        }
    }
}

#[tokio::test]
async fn gp_studies_suggest_fresh_configs_and_explain_importance() {
    let s = TestServer::new().await;
    let id = s
        .create(
            "version: 1\nname: gp\nobjective: {metric: score, direction: maximize}\n\
             budget: {max_trials: 9}\noptimizer: {kind: gp, initial_trials: 4, seed: 5}\n\
             parameters:\n  x: {type: float, min: 0.0, max: 1.0}\n  \
             noise: {type: float, min: 0.0, max: 1.0}\n  k: {type: categorical, values: [a, b]}\n",
        )
        .await;
    let early = s.get(&format!("/studies/{id}/importance")).await;
    assert_eq!(early.status, StatusCode::OK);
    assert!(early.body["parameters"].as_array().unwrap().is_empty());
    assert!(early.body["note"].is_string());

    let mut seen = std::collections::HashSet::new();
    while let Some((trial, token)) = s.ask(id).await {
        let t = s.get(&format!("/trials/{trial}")).await;
        let p = &t.body["params"];
        assert!(seen.insert(p.to_string()), "repeated {p}");
        // Only x matters.
        let x = p["x"].as_f64().unwrap();
        assert_eq!(
            s.complete(trial, &token, -(x - 0.3).powi(2)).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(seen.len(), 9);
    let study = s.get(&format!("/studies/{id}")).await;
    assert_eq!(study.body["state"], "completed");
    assert_eq!(study.body["optimizer"], "gp");

    let imp = s.get(&format!("/studies/{id}/importance")).await;
    assert_eq!(imp.status, StatusCode::OK, "{}", imp.body);
    let params = imp.body["parameters"].as_array().unwrap();
    assert_eq!(params.len(), 3);
    let total: f64 = params
        .iter()
        .map(|p| p["importance"].as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-6);
    assert_eq!(
        params[0]["name"], "x",
        "the one parameter that matters comes first: {}",
        imp.body
    );
    assert_error(
        &s.get("/studies/999/importance").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

/// Parses a whole SSE body into (id, event, data) triples.
fn sse_events(text: &str) -> Vec<(Option<i64>, String, Value)> {
    text.split("\n\n")
        .filter(|block| block.lines().any(|l| l.starts_with("event:")))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_owned())
            };
            (
                field("id:").and_then(|v| v.parse().ok()),
                field("event:").unwrap(),
                serde_json::from_str(&field("data:").unwrap_or_default()).unwrap_or(Value::Null),
            )
        })
        .collect()
}

#[tokio::test]
async fn trial_events_stream_and_resume_from_the_last_event_id() {
    let s = TestServer::new().await;
    let id = s.create(&space(2, 1, "")).await;
    for _ in 0..2 {
        let (trial, token) = s.ask(id).await.unwrap();
        s.post(
            &format!("/trials/{trial}/report"),
            json!({"lease_token": token, "epoch": 1, "value": 0.5}),
        )
        .await;
        s.complete(trial, &token, 0.7).await;
    }
    let watch = |last: Option<i64>, query: &str| {
        let mut req = Request::get(format!("/studies/{id}/trials{query}"))
            .header(header::ACCEPT, "text/event-stream");
        if let Some(last) = last {
            req = req.header("last-event-id", last.to_string());
        }
        let router = s.router.clone();
        async move {
            let resp = router
                .oneshot(req.body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert!(
                resp.headers()[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with("text/event-stream")
            );
            // The study is over, so the stream ends by itself.
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            sse_events(std::str::from_utf8(&bytes).unwrap())
        }
    };
    let all = watch(None, "").await;
    let kinds: Vec<&str> = all.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "created",
            "started",
            "epoch",
            "completed",
            "created",
            "started",
            "epoch",
            "completed",
            "end"
        ]
    );
    assert_eq!(all[2].2["epoch"], 1);
    assert_eq!(all[3].2["value"], 0.7);
    assert_eq!(all[8].2["state"], "completed");

    let resumed = watch(all[3].0, "").await;
    assert_eq!(
        resumed.len(),
        5,
        "only what came after event {:?}",
        all[3].0
    );
    assert_eq!(resumed[0].2["number"], 1);
    // The same from the query; the header (a reconnect) wins over it.
    let after = all[3].0.unwrap();
    assert_eq!(watch(None, &format!("?after={after}")).await.len(), 5);
    assert_eq!(watch(all[6].0, &format!("?after={after}")).await.len(), 2);
    // `now` skips the log so far: here only the end is left.
    let now = watch(None, "?after=now").await;
    assert_eq!(
        now.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
        ["end"]
    );
    let bad = s
        .send(
            Request::get(format!("/studies/{id}/trials?after=soon"))
                .header(header::ACCEPT, "text/event-stream")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_error(&bad, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");

    let missing = s
        .send(
            Request::get("/studies/999/trials")
                .header(header::ACCEPT, "text/event-stream")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_error(&missing, StatusCode::NOT_FOUND, "not_found");
}

/// Reports a scripted learning curve epoch by epoch; returns the epoch at which the
/// server said stop, if it did.
async fn run_curve(s: &TestServer, study: i64, curve: &[f64]) -> Option<u32> {
    let (trial, token) = s.ask(study).await.unwrap();
    for (i, v) in curve.iter().enumerate() {
        let epoch = i as u32 + 1;
        let r = s
            .post(
                &format!("/trials/{trial}/report"),
                json!({"lease_token": token, "epoch": epoch, "value": v}),
            )
            .await;
        if r.body["action"] == "stop" {
            return Some(epoch);
        }
    }
    s.complete(trial, &token, *curve.last().unwrap()).await;
    None
}

#[tokio::test]
async fn asha_promotes_only_the_top_third_at_each_rung() {
    let s = TestServer::new().await;
    // Rungs at epochs 1, 3, 9 (min_resource 1, η 3).
    let id = s
        .create(&space(
            8,
            1,
            "pruner: {kind: asha, min_resource: 1, reduction_factor: 3}\n",
        ))
        .await;
    // Epoch 1: the first trial is alone at the rung, so it goes on.
    assert_eq!(run_curve(&s, id, &[0.50, 0.6, 0.70, 0.8]).await, None);
    // Two at rung 1: only the better one (0.50 beats 0.40) goes on.
    assert_eq!(run_curve(&s, id, &[0.40, 0.9, 0.95]).await, Some(1));
    // Better than everything at rung 1, then at rung 3 (0.75 > 0.70).
    assert_eq!(run_curve(&s, id, &[0.55, 0.6, 0.75, 0.9]).await, None);
    // Rung 1 has 0.50, 0.40, 0.55 and this 0.52: 4/3 = 1 promoted, it is not the best.
    assert_eq!(run_curve(&s, id, &[0.52, 0.9]).await, Some(1));
    // Epoch 2 is no rung: never pruned there; at rung 3, 0.65 is not in the top third.
    assert_eq!(run_curve(&s, id, &[0.60, 0.1, 0.65]).await, Some(3));
    let trials = s.get(&format!("/studies/{id}/trials?state=pruned")).await;
    let pruned = trials.body["trials"].as_array().unwrap();
    assert_eq!(pruned.len(), 3);
    assert!(
        pruned[0]["failure_reason"]
            .as_str()
            .unwrap()
            .contains("ASHA")
    );
}

#[tokio::test]
async fn the_curve_pruner_stops_hopeless_curves_and_keeps_its_prediction() {
    let s = TestServer::new().await;
    let id = s
        .create(&space(
            10,
            1,
            "trainer: {kind: external, epochs: 3}\n\
             pruner: {kind: curve, min_trials: 4, warmup_epochs: 1}\n",
        ))
        .await;
    // Four completed curves: final ≈ epoch-2 value + 0.01 (none pruned: too few peers).
    for curve in [
        [0.80, 0.83, 0.84],
        [0.82, 0.85, 0.861],
        [0.84, 0.87, 0.879],
        [0.86, 0.89, 0.902],
    ] {
        assert_eq!(run_curve(&s, id, &curve).await, None);
    }
    // Far behind and flat at epoch 2 (the first after the warmup): stopped there.
    assert_eq!(run_curve(&s, id, &[0.60, 0.62, 0.95]).await, Some(2));
    // Behind at epoch 2 but still climbing steeply: not stopped.
    assert_eq!(run_curve(&s, id, &[0.70, 0.86, 0.91]).await, None);
    let trials = s.get(&format!("/studies/{id}/trials?state=pruned")).await;
    let pruned = trials.body["trials"].as_array().unwrap();
    assert_eq!(pruned.len(), 1, "{}", trials.body);
    let reason = pruned[0]["failure_reason"].as_str().unwrap();
    assert!(reason.contains("its curve predicts"), "{reason}");
    let trial = s.get(&format!("/trials/{}", pruned[0]["id"])).await;
    let predicted = trial.body["metrics"]["predicted_value"].as_f64().unwrap();
    assert!((predicted - 0.63).abs() < 0.02, "{}", trial.body);

    // The pruner needs to know the last epoch.
    let bad = s
        .post_yaml("/studies", &space(5, 1, "pruner: {kind: curve}\n"))
        .await;
    assert_error(
        &bad,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_search_space",
    );
    assert_eq!(bad.body["error"]["details"][0]["path"], "pruner.kind");
    let bad = s
        .post_yaml(
            "/studies",
            &space(
                5,
                1,
                "trainer: {kind: external, epochs: 3}\npruner: {kind: curve, min_trials: 2}\n",
            ),
        )
        .await;
    assert_eq!(bad.body["error"]["details"][0]["path"], "pruner.min_trials");
}

#[tokio::test]
async fn pruner_sections_are_checked_per_kind() {
    let s = TestServer::new().await;
    let bad = s
        .post_yaml(
            "/studies",
            &space(5, 1, "pruner: {kind: median, reduction_factor: 3}\n"),
        )
        .await;
    assert_error(
        &bad,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_search_space",
    );
    assert_eq!(
        bad.body["error"]["details"][0]["path"],
        "pruner.reduction_factor"
    );
    let bad = s
        .post_yaml(
            "/studies",
            &space(5, 1, "pruner: {kind: asha, reduction_factor: 1}\n"),
        )
        .await;
    assert_eq!(
        bad.body["error"]["details"][0]["path"],
        "pruner.reduction_factor"
    );
}

#[tokio::test]
async fn trial_lists_filter_sort_page_and_summarize() {
    let s = TestServer::new().await;
    let study = s.create(&space(7, 7, "")).await;
    let mut leased = Vec::new();
    for _ in 0..7 {
        leased.push(s.ask(study).await.unwrap());
    }
    let values = [0.5, 0.9, 0.1, 0.7, 0.3];
    let (first, first_token) = &leased[0];
    let r = s
        .post(
            &format!("/trials/{first}/report"),
            json!({"lease_token": first_token, "epoch": 1, "value": 0.4}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for ((id, token), v) in leased.iter().zip(values) {
        assert_eq!(s.complete(*id, token, v).await.status, StatusCode::OK);
    }
    let numbers = |a: &Answer| -> Vec<i64> {
        a.body["trials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["number"].as_i64().unwrap())
            .collect()
    };
    let path = format!("/studies/{study}/trials");

    let all = s.get(&path).await;
    assert_eq!(all.body["total"], 7);
    assert_eq!(numbers(&all), [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(all.body["trials"][0]["intermediate"][0]["value"], 0.4);

    // Best first; the two trials still running have no value and come last.
    let top = s
        .get(&format!("{path}?sort=value&order=desc&limit=2"))
        .await;
    assert_eq!(
        (top.body["total"].clone(), numbers(&top)),
        (json!(7), vec![1, 3])
    );
    let tail = s.get(&format!("{path}?sort=value&offset=4&limit=10")).await;
    assert_eq!(numbers(&tail), [1, 5, 6]);
    let past_the_end = s.get(&format!("{path}?offset=50")).await;
    assert_eq!(
        (
            past_the_end.body["total"].clone(),
            numbers(&past_the_end).len()
        ),
        (json!(7), 0)
    );

    let running = s
        .get(&format!("{path}?state=running&sort=number&order=desc"))
        .await;
    assert_eq!(
        (running.body["total"].clone(), numbers(&running)),
        (json!(2), vec![6, 5])
    );

    // Summaries leave out metrics and epochs, and keep everything else.
    let summary = s.get(&format!("{path}?view=summary&limit=1")).await;
    let t = &summary.body["trials"][0];
    assert_eq!(t["intermediate"], json!([]));
    assert!(t.get("metrics").is_none(), "{t}");
    assert_eq!(
        (t["value"].clone(), t["last_epoch"].clone()),
        (json!(0.5), json!(1))
    );

    // What changed since a list: only the trials touched after its last event.
    let mark = all.body["last_event_id"].as_i64().unwrap();
    assert!(mark > 0);
    let nothing = s.get(&format!("{path}?changed_after={mark}")).await;
    assert_eq!(
        (
            nothing.body["total"].clone(),
            nothing.body["last_event_id"].clone()
        ),
        (json!(0), json!(mark))
    );
    let (sixth, sixth_token) = &leased[5];
    assert_eq!(
        s.complete(*sixth, sixth_token, 0.2).await.status,
        StatusCode::OK
    );
    let changed = s
        .get(&format!("{path}?changed_after={mark}&view=summary"))
        .await;
    assert_eq!(numbers(&changed), [5]);
    assert_eq!(changed.body["trials"][0]["state"], "completed");
    assert!(changed.body["last_event_id"].as_i64().unwrap() > mark);
    let from_start = s
        .get(&format!("{path}?changed_after=0&state=running"))
        .await;
    assert_eq!(numbers(&from_start), [6]);
    assert_error(
        &s.get("/studies/999/trials?changed_after=0").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // Each refusal names the parameter at fault.
    for (bad, name) in [
        ("sort=bogus", "sort"),
        ("order=up", "order"),
        ("view=tiny", "view"),
        ("limit=-1", "limit"),
        ("state=done", "state"),
        ("page=2", "page"),
        ("changed_after=x", "changed_after"),
    ] {
        let a = s.get(&format!("{path}?{bad}")).await;
        assert_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        assert_eq!(a.body["error"]["details"][0]["path"], name, "{}", a.body);
    }
}

/// The dashboard's files, as text with their headers.
async fn raw_get(s: &TestServer, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = s
        .router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn the_dashboard_is_served_from_the_binary_without_a_token() {
    let s = TestServer::with_config(ServerConfig {
        token: Some("s3cret".into()),
        ..ServerConfig::default()
    })
    .await;
    let (status, headers, page) = raw_get(&s, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    assert!(
        page.contains("/assets/app.js") && page.contains("/assets/app.css"),
        "{page}"
    );
    let (status, headers, script) = raw_get(&s, "/assets/app.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(script.len() > 1000, "the real script, not a placeholder");
    let (status, _, css) = raw_get(&s, "/assets/app.css").await;
    assert_eq!((status, css.is_empty()), (StatusCode::OK, false));
    // No other files, and the data itself still needs the token.
    assert_error(
        &s.get("/assets/secrets.txt").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.get("/assets/../Cargo.toml").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.get("/studies").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}

/// Every `$ref` in the document, for checking they all resolve.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_matches_the_router() {
    let s = TestServer::with_config(ServerConfig {
        token: Some("s3cret".into()),
        ..ServerConfig::default()
    })
    .await;
    let (status, _, text) = raw_get(&s, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK, "public, like /health");
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "post", "put", "patch", "delete"].contains(&m.as_str()))
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    documented.sort();
    let expected = [
        ("delete", "/studies/{id}"),
        ("get", "/"),
        ("get", "/assets/{name}"),
        ("get", "/health"),
        ("get", "/openapi.json"),
        ("get", "/studies"),
        ("get", "/studies/{id}"),
        ("get", "/studies/{id}/best"),
        ("get", "/studies/{id}/importance"),
        ("get", "/studies/{id}/trials"),
        ("get", "/trials/{id}"),
        ("post", "/ask"),
        ("post", "/studies"),
        ("post", "/studies/{id}/ask"),
        ("post", "/studies/{id}/extend"),
        ("post", "/studies/{id}/pause"),
        ("post", "/studies/{id}/resume"),
        ("post", "/studies/{id}/stop"),
        ("post", "/trials/{id}/complete"),
        ("post", "/trials/{id}/fail"),
        ("post", "/trials/{id}/heartbeat"),
        ("post", "/trials/{id}/release"),
        ("post", "/trials/{id}/report"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, expected);

    // Every schema the document names is in it.
    let mut named = Vec::new();
    refs(&doc, &mut named);
    assert!(named.len() > 20);
    for r in named {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{r} is missing"
        );
    }

    // Every documented route answers (whatever it makes of an empty request), rather
    // than falling through to "no such route" or "method not allowed". Deletion last.
    let authed = |method: &str, uri: &str| {
        Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(uri)
            .header(header::AUTHORIZATION, "Bearer s3cret")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap()
    };
    let study = s
        .send(
            Request::post("/studies")
                .header(header::AUTHORIZATION, "Bearer s3cret")
                .header(header::CONTENT_TYPE, "application/yaml")
                .body(Body::from(space(3, 1, "")))
                .unwrap(),
        )
        .await;
    assert_eq!(study.status, StatusCode::CREATED);
    let id = study.body["id"].as_i64().unwrap();
    documented.sort_by_key(|(m, _)| m == "delete");
    for (method, path) in documented {
        let uri = path
            .replace("{id}", &id.to_string())
            .replace("{name}", "app.js");
        let resp = s
            .router
            .clone()
            .oneshot(authed(&method, &uri))
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}: {text}"
        );
        assert!(!text.contains("no such route"), "{method} {uri}: {text}");
        assert_ne!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{method} {uri}: {text}"
        );
    }
    // And the fallback really says so, so the check above can fail.
    let (status, _, text) = raw_get(&s, "/nowhere/at/all").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    let resp = s
        .router
        .clone()
        .oneshot(authed("get", "/nowhere"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&bytes).contains("no such route"));
}

/// Every route of the OpenAPI document but the public ones refuses a missing or wrong
/// token with 401, and none of those refused requests changes anything.
#[tokio::test]
async fn every_guarded_route_refuses_a_bad_token_without_side_effects() {
    let s = TestServer::with_config(ServerConfig {
        token: Some("s3cret".into()),
        ..ServerConfig::default()
    })
    .await;
    let authed = |method: &str, uri: &str, body: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, "Bearer s3cret")
            .header(header::CONTENT_TYPE, "application/yaml")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let study = s.send(authed("POST", "/studies", &space(5, 2, ""))).await;
    let id = study.body["id"].as_i64().unwrap();
    let asked = s
        .send(authed("POST", &format!("/studies/{id}/ask"), "{}"))
        .await;
    let trial = asked.body["trial"]["id"].as_i64().unwrap();
    let token = asked.body["lease"]["token"].as_str().unwrap().to_owned();
    let snapshot = |s: &TestServer| {
        let study = s
            .router
            .clone()
            .oneshot(authed("GET", &format!("/studies/{id}"), ""));
        let trials = s
            .router
            .clone()
            .oneshot(authed("GET", &format!("/studies/{id}/trials"), ""));
        let studies = s.router.clone().oneshot(authed("GET", "/studies", ""));
        async move {
            let mut out = Vec::new();
            for resp in [study.await, trials.await, studies.await] {
                let bytes = resp
                    .unwrap()
                    .into_body()
                    .collect()
                    .await
                    .unwrap()
                    .to_bytes();
                let mut v: Value = serde_json::from_slice(&bytes).unwrap();
                // Reading a study is no change; its clock may tick.
                redact_updated(&mut v);
                out.push(v);
            }
            out
        }
    };
    let before = snapshot(&s).await;

    let (_, _, text) = raw_get(&s, "/openapi.json").await;
    let doc: Value = serde_json::from_str(&text).unwrap();
    let public = ["/", "/assets/{name}", "/health", "/openapi.json"];
    let mut guarded = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if public.contains(&path.as_str()) {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            let uri = path.replace(
                "{id}",
                &if path.starts_with("/trials") {
                    trial
                } else {
                    id
                }
                .to_string(),
            );
            let body =
                json!({"lease_token": token, "epoch": 1, "value": 0.5, "reason": "x"}).to_string();
            for auth in [None, Some("Bearer s3cre"), Some("s3cret"), Some("Bearer ")] {
                let mut req = Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .header(header::CONTENT_TYPE, "application/json");
                if let Some(auth) = auth {
                    req = req.header(header::AUTHORIZATION, auth);
                }
                let a = s.send(req.body(Body::from(body.clone())).unwrap()).await;
                assert_error(&a, StatusCode::UNAUTHORIZED, "unauthorized");
            }
            guarded += 1;
        }
    }
    assert_eq!(guarded, 19, "every route but the four public ones");
    assert_eq!(
        snapshot(&s).await,
        before,
        "refused requests changed nothing"
    );
    // The lease is still good for its holder.
    let ok = s
        .send(authed(
            "POST",
            &format!("/trials/{trial}/complete"),
            &json!({"lease_token": token, "value": 0.5}).to_string(),
        ))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
}

fn redact_updated(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("updated_at");
            m.values_mut().for_each(redact_updated);
        }
        Value::Array(a) => a.iter_mut().for_each(redact_updated),
        _ => {}
    }
}

/// Reads stream chunks into `text` until `pattern` occurs `count` times.
async fn wait_for(
    text: &mut String,
    received: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    pattern: &str,
    count: usize,
) {
    while text.matches(pattern).count() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(20), received.recv())
            .await
            .unwrap_or_else(|_| panic!("no `{pattern}` #{count} in: {text}"))
            .expect("the stream is open");
        text.push_str(&chunk);
    }
}

/// Opens a study's live stream from now on; its body is not read yet.
async fn open_live_stream(s: &TestServer, id: i64) -> axum::response::Response {
    s.router
        .clone()
        .oneshot(
            Request::get(format!("/studies/{id}/trials?after=now"))
                .header(header::ACCEPT, "text/event-stream")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap()
}

/// Reads a stream's chunks in the background, for [`wait_for`].
fn read_in_background(
    resp: axum::response::Response,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (chunks, received) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut body = resp.into_body();
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data()
                && chunks
                    .send(String::from_utf8_lossy(&data).into_owned())
                    .is_err()
            {
                return;
            }
        }
    });
    received
}

/// Stop, pause and resume are not trial events, yet a live stream says them: a
/// `study` event with the study, then `end` once nothing runs any more.
#[tokio::test]
async fn live_streams_announce_study_state_changes() {
    let s = TestServer::new().await;
    let id = s.create(&space(3, 1, "")).await;
    let (trial, token) = s.ask(id).await.unwrap();
    let stream = open_live_stream(&s, id).await;
    // Act on the study only once the stream has shown the previous change, so no
    // change can fall between two of its polls.
    let mut received = read_in_background(stream);
    let mut text = String::new();
    for (n, action) in ["pause", "resume", "stop"].into_iter().enumerate() {
        let a = s.post(&format!("/studies/{id}/{action}"), json!({})).await;
        assert_eq!(a.status, StatusCode::OK, "{action}: {}", a.body);
        wait_for(&mut text, &mut received, "event: study", n + 1).await;
    }
    let completed = s.complete(trial, &token, 0.5).await;
    wait_for(&mut text, &mut received, "event: end", 1).await;
    assert_eq!(completed.status, StatusCode::OK);
    let events = sse_events(&text);
    let kinds: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        kinds,
        ["study", "study", "study", "completed", "end"],
        "{text}"
    );
    let states: Vec<&str> = events[..3]
        .iter()
        .map(|e| e.2["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["paused", "running", "stopped"]);
    assert_eq!(events[0].0, None, "study events are not in the log: no id");
}

/// A pause made as soon as the stream is open, before the stream has read anything,
/// is announced too: the stream knows the study's state from when it was asked for.
#[tokio::test]
async fn a_pause_right_after_opening_a_stream_is_announced() {
    let s = TestServer::new().await;
    let id = s.create(&space(3, 1, "")).await;
    let stream = open_live_stream(&s, id).await;
    let paused = s.post(&format!("/studies/{id}/pause"), json!({})).await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.body);
    let mut received = read_in_background(stream);
    let mut text = String::new();
    wait_for(&mut text, &mut received, "event: study", 1).await;
    let events = sse_events(&text);
    assert_eq!(events[0].1, "study", "{text}");
    assert_eq!(events[0].2["state"], "paused", "{text}");
}

/// A tmpfs of a few megabytes mounted on a fresh folder, unmounted when dropped; `None`
/// where this process may not mount one (not root, or no CAP_SYS_ADMIN).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Self { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a filler file until the filesystem refuses (ENOSPC).
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 16 << 10];
        while file.write_all(&chunk).is_ok() {}
        // Single bytes to the last free block.
        while file.write_all(&[0]).and_then(|_| file.flush()).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Every answered write is in the database; every write that could not be stored is
/// answered 503; the service works again once there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_never_acknowledges_a_write_it_did_not_store() {
    let Some(disk) = SmallDisk::mount("4m") else {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root); CI runs this as root");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the full-disk test"
        );
        return;
    };
    let db = disk.path().join("full.db");
    let store = SqliteStore::open(&db).await.unwrap();
    let s = TestServer::on_store(
        tempfile::tempdir().unwrap(),
        store.clone(),
        ServerConfig::default(),
    );
    let study = s
        .create(
            "version: 1\nname: full\nobjective: {metric: acc, direction: maximize}\n\
             budget: {max_trials: 100000, parallelism: 4096}\noptimizer: {kind: random, seed: 1}\n\
             parameters:\n  x: {type: float, min: 0.0, max: 1.0}\n",
        )
        .await;
    // Some trials leased and completed before the disk fills, some left running.
    let mut leased = Vec::new();
    for i in 0..20 {
        let (id, token) = s.ask(study).await.expect("a trial");
        if i % 2 == 0 {
            assert_eq!(s.complete(id, &token, 0.5).await.status, StatusCode::OK);
        } else {
            leased.push((id, token));
        }
    }
    let filler = disk.fill();

    // Concurrent asks and completions, so writes are group-committed together and alone.
    let (mut asked, mut completed, mut refused) = (Vec::new(), Vec::new(), 0);
    let mut outstanding = leased;
    for round in 0..12 {
        let to_complete = std::mem::take(&mut outstanding);
        let server = &s;
        let ask_uri = format!("/studies/{study}/ask");
        let asks =
            futures_util::future::join_all((0..24).map(|_| server.post(&ask_uri, json!({}))));
        let completes = futures_util::future::join_all(to_complete.into_iter().enumerate().map(
            |(k, (id, token))| async move {
                let value = 0.001 * (round * 100 + k) as f64;
                let a = server
                    .post(
                        &format!("/trials/{id}/complete"),
                        json!({"lease_token": token, "value": value}),
                    )
                    .await;
                (id, token, value, a)
            },
        ));
        let (asks, completes) = tokio::join!(asks, completes);
        for a in asks {
            match a.status {
                StatusCode::OK => {
                    let lease = (
                        a.body["trial"]["id"].as_i64().unwrap(),
                        a.body["lease"]["token"].as_str().unwrap().to_owned(),
                    );
                    asked.push(lease.clone());
                    outstanding.push(lease);
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_eq!(a.body["error"]["code"], "storage_unavailable", "{}", a.body);
                    refused += 1;
                }
                other => panic!("ask on a full disk answered {other}: {}", a.body),
            }
        }
        for (id, token, value, a) in completes {
            match a.status {
                StatusCode::OK => completed.push((id, value)),
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_eq!(a.body["error"]["code"], "storage_unavailable", "{}", a.body);
                    refused += 1;
                    outstanding.push((id, token));
                }
                other => panic!("complete on a full disk answered {other}: {}", a.body),
            }
        }
    }
    assert!(refused > 0, "the disk never filled: nothing was refused");

    // Every answered write is in the file, read by a fresh store.
    std::fs::remove_file(&filler).unwrap();
    let check = SqliteStore::open(&db).await.unwrap();
    use tuner_store::Store;
    for (id, token) in &asked {
        let trial = check
            .get_trial(tuner_core::TrialId(*id))
            .await
            .unwrap_or_else(|e| panic!("trial {id} was answered 200 but is not stored: {e}"));
        if trial.state == tuner_core::TrialState::Running {
            assert_eq!(trial.lease_token.as_deref(), Some(token.as_str()));
        }
    }
    for (id, value) in &completed {
        let trial = check.get_trial(tuner_core::TrialId(*id)).await.unwrap();
        assert_eq!(trial.state, tuner_core::TrialState::Completed, "trial {id}");
        assert_eq!(trial.value, Some(*value), "trial {id}");
    }
    // Distinct answered leases name distinct trials.
    let mut ids: Vec<i64> = asked.iter().map(|(id, _)| *id).collect();
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "two answered asks named the same trial");
    check.close().await;

    // The same server recovers once there is room again: what was left running can be
    // completed, and new trials are handed out and stored.
    for (id, token) in outstanding {
        let a = s.complete(id, &token, 0.25).await;
        assert_eq!(a.status, StatusCode::OK, "trial {id}: {}", a.body);
    }
    for _ in 0..5 {
        let (id, token) = s.ask(study).await.expect("a trial after recovery");
        assert_eq!(s.complete(id, &token, 0.75).await.status, StatusCode::OK);
    }
    let counts = s.get(&format!("/studies/{study}")).await.body["counts"].clone();
    assert_eq!(counts["running"], 0, "{counts}");
    let stored = store
        .trial_counts(tuner_core::StudyId(study))
        .await
        .unwrap();
    assert_eq!(counts["completed"], stored.completed, "{counts}");
    store.close().await;
}
