//! `ApiClient` with several servers: it moves on when a server gives no HTTP answer,
//! and only then. The servers are small axum apps on loopback, each on its own runtime
//! so that one can die as in a crash (listener and open connections closed at once).

use std::{
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;
use tuner_api::{ApiClient, AskAnswer, AskRequest, ClientError};
use tuner_core::StudyId;

/// A fake replica: every route answers `status` (204 with no body, or an error envelope)
/// and counts the requests it got.
struct Replica {
    url: String,
    hits: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Replica {
    fn start(status: StatusCode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .fallback(answer)
            .with_state((hits.clone(), status));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            hits,
            runtime: Some(runtime),
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Dies as in a crash: no graceful shutdown, open connections reset.
    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn answer(State((hits, status)): State<(Arc<AtomicUsize>, StatusCode)>) -> Response {
    hits.fetch_add(1, Ordering::SeqCst);
    if status.is_success() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        let body = json!({"error": {"code": "storage_unavailable", "message": "try later"}});
        (status, Json(body)).into_response()
    }
}

/// A loopback address nothing listens on: connections to it are refused.
fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

const STUDY: StudyId = StudyId(1);

#[tokio::test]
async fn a_dead_first_server_is_skipped_and_the_next_one_stays_current() {
    let live = Replica::start(StatusCode::NO_CONTENT);
    let dead = dead_url();
    let client = ApiClient::with_servers([dead.as_str(), live.url.as_str()]).unwrap();
    let clone_made_before = client.clone();
    assert_eq!(client.base_url(), dead);

    client.delete_study(STUDY).await.unwrap();
    assert_eq!(live.hits(), 1);
    assert_eq!(client.base_url(), live.url);
    assert_eq!(
        clone_made_before.base_url(),
        live.url,
        "clones move together (a worker's heartbeats follow its reports)"
    );

    // Every kind of call fails over, and later calls start at the live server.
    let ask = AskRequest { worker: None };
    assert!(matches!(
        clone_made_before.ask(STUDY, &ask).await.unwrap(),
        AskAnswer::Done
    ));
    assert_eq!(live.hits(), 2);
    assert_eq!(client.servers(), [dead, live.url.clone()]);
}

#[tokio::test]
async fn an_error_answer_is_not_a_reason_to_switch() {
    let failing = Replica::start(StatusCode::SERVICE_UNAVAILABLE);
    let healthy = Replica::start(StatusCode::NO_CONTENT);
    let client = ApiClient::with_servers([&failing.url, &healthy.url]).unwrap();
    match client.delete_study(STUDY).await {
        Err(ClientError::Api { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (503, "storage_unavailable"));
        }
        other => panic!("the 503 is the answer: {other:?}"),
    }
    assert_eq!((failing.hits(), healthy.hits()), (1, 0));
    assert_eq!(client.base_url(), failing.url);
}

/// Waits until `url` refuses connections: a killed replica's runtime closes its
/// listener in the background.
async fn refused_soon(url: &str) {
    let addr = url.trim_start_matches("http://");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "{url} still accepts");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_server_that_dies_is_left_for_the_next() {
    let mut first = Replica::start(StatusCode::NO_CONTENT);
    let second = Replica::start(StatusCode::NO_CONTENT);
    let client = ApiClient::with_servers([&first.url, &second.url]).unwrap();
    client.delete_study(STUDY).await.unwrap();
    assert_eq!((first.hits(), second.hits()), (1, 0));

    // The client holds a kept-alive connection to the first: it is reset, then refused.
    first.kill();
    refused_soon(&first.url).await;
    client.delete_study(STUDY).await.unwrap();
    assert_eq!((first.hits(), second.hits()), (1, 1));
    assert_eq!(client.base_url(), second.url);
}

#[tokio::test]
async fn watching_reconnects_to_the_next_server() {
    // The live one refuses with 404: an answer, which ends the watch at once.
    let live = Replica::start(StatusCode::NOT_FOUND);
    let client = ApiClient::with_servers([dead_url(), live.url.clone()]).unwrap();
    let watched = client
        .watch(STUDY, 0, Duration::from_secs(10), |_| {})
        .await;
    assert!(
        matches!(watched, Err(ClientError::Api { status: 404, .. })),
        "{watched:?}"
    );
    assert_eq!(live.hits(), 1);
}

#[tokio::test]
async fn when_no_server_answers_the_error_names_them_all() {
    let (a, b) = (dead_url(), dead_url());
    let client = ApiClient::with_servers([&a, &b]).unwrap();
    let e = client.delete_study(STUDY).await.unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
    assert_eq!(e.status(), None);
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "cannot reach the tuner server at any of {a}, {b}: "
        )),
        "{text}"
    );

    // One server: the message it always had.
    let e = ApiClient::new(format!("{a}/"))
        .delete_study(STUDY)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("cannot reach the tuner server at {a}: ")),
        "{e}"
    );
}

#[test]
fn a_list_needs_one_url_and_blanks_are_skipped() {
    assert!(matches!(
        ApiClient::with_servers(["", " "]),
        Err(ClientError::NoServer)
    ));
    let client = ApiClient::with_servers([" http://a:1/", "", "http://b:2"]).unwrap();
    assert_eq!(client.servers(), ["http://a:1", "http://b:2"]);
}
