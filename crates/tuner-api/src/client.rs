//! A typed client for the tuner HTTP API.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use reqwest::{Method, StatusCode};
use serde::{Serialize, de::DeserializeOwned};
use tuner_core::{StudyId, TrialId};

use crate::{
    AskAnyRequest, AskRequest, AskResponse, Best, CompleteRequest, ErrorBody, ErrorDetail,
    FailRequest, HeartbeatRequest, HeartbeatResponse, Importance, ReleaseRequest, ReportRequest,
    ReportResponse, Study, StudyList, Trial, TrialEvent, TrialList, TrialQuery,
    sse::EventStreamParser,
};

/// What `ask` got.
#[derive(Debug)]
pub enum AskAnswer {
    Leased(Box<AskResponse>),
    /// Nothing to hand out now (parallelism limit, paused, trials in flight that may
    /// be re-queued): ask again after this long.
    Wait(Duration),
    /// The study will hand out nothing more.
    Done,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached or the connection broke (with several
    /// servers: none of them could, and `url` names them all).
    #[error("cannot reach the tuner server at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error envelope.
    #[error("{message} ({status}, {code}){}", details_text(.details))]
    Api {
        status: u16,
        code: String,
        message: String,
        details: Vec<ErrorDetail>,
    },
    #[error("unexpected answer from the server ({status}): {body}")]
    Unexpected { status: u16, body: String },
    /// A client was given an empty list of servers.
    #[error("no tuner server URL given")]
    NoServer,
}

fn details_text(details: &[ErrorDetail]) -> String {
    details
        .iter()
        .map(|d| format!("\n  - {}: {}", d.path, d.message))
        .collect()
}

impl ClientError {
    /// The HTTP status, where the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Unexpected { status, .. } => Some(*status),
            Self::Connect { .. } | Self::NoServer => None,
        }
    }
}

/// A client of one server, or of several replicas of one service, by base URL
/// (e.g. `http://127.0.0.1:8470`).
///
/// Every request goes to the current server. When it gives no HTTP answer at all
/// (refused, reset, timed out), the request is sent again to the next server in the
/// list, and that one becomes the current server for every clone of this client. Any
/// HTTP answer, 5xx included, is the answer: replicas share one database, so another
/// would say the same. Resending is safe because the service answers a retried
/// ask/report/complete by the same lease holder idempotently and refuses contradictions.
#[derive(Debug, Clone)]
pub struct ApiClient {
    servers: Arc<[String]>,
    /// Index into `servers` of the one requests go to first; shared by clones so that a
    /// worker's heartbeat and its reports move together.
    current: Arc<AtomicUsize>,
    http: reqwest::Client,
    token: Option<String>,
}

/// How long to wait for a TCP connection: a host that drops packets would otherwise hold
/// a request for the operating system's timeout (minutes) before the next server is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A study document in the syntax it was written in.
#[derive(Debug, Clone, Copy)]
pub enum DocFormat {
    Json,
    Yaml,
}

impl ApiClient {
    /// A client of one server.
    pub fn new(base: impl Into<String>) -> Self {
        Self::from_urls(vec![normalize(&base.into())])
    }

    /// A client of several replicas, tried in this order (blank entries are skipped).
    pub fn with_servers<S: AsRef<str>>(
        urls: impl IntoIterator<Item = S>,
    ) -> Result<Self, ClientError> {
        let urls: Vec<String> = urls
            .into_iter()
            .map(|u| normalize(u.as_ref()))
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Err(ClientError::NoServer);
        }
        Ok(Self::from_urls(urls))
    }

    fn from_urls(servers: Vec<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            // Fails only where `reqwest::Client::new` would panic as well.
            .unwrap_or_default();
        Self {
            servers: servers.into(),
            current: Arc::new(AtomicUsize::new(0)),
            http,
            token: None,
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// The server requests go to now.
    pub fn base_url(&self) -> &str {
        &self.servers[self.current_index()]
    }

    /// Every server this client knows, in the order they are tried.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    fn current_index(&self) -> usize {
        self.current.load(Ordering::SeqCst) % self.servers.len()
    }

    /// Runs `attempt` against the current server, then against each next one for as long
    /// as the answer is a connection error.
    async fn on_any_server<T, Fut>(
        &self,
        mut attempt: impl FnMut(String) -> Fut,
    ) -> Result<T, ClientError>
    where
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let count = self.servers.len();
        let first = self.current_index();
        let mut last_failure = None;
        for step in 0..count {
            let at = (first + step) % count;
            match attempt(self.servers[at].clone()).await {
                Err(ClientError::Connect { url, source }) => {
                    // Only the first caller to see this server fail moves everyone on;
                    // a concurrent one may already have moved past it.
                    let _ = self.current.compare_exchange(
                        at,
                        (at + 1) % count,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                    last_failure = Some((url, source));
                }
                answered => return answered,
            }
        }
        let (url, source) = last_failure.expect("at least one server was tried");
        let url = if count == 1 {
            url
        } else {
            format!("any of {}", self.servers.join(", "))
        };
        Err(ClientError::Connect { url, source })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &'static str)>,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        self.send_with_query(method, path, None, body).await
    }

    /// [`Self::send`] with a trial-list query string.
    async fn send_with_query(
        &self,
        method: Method,
        path: &str,
        query: Option<&TrialQuery>,
        body: Option<(Vec<u8>, &'static str)>,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        // The futures borrow these (not the closure), as `Send` futures must.
        let (method, body) = (&method, &body);
        self.on_any_server(|base| async move {
            let url = format!("{base}{path}");
            let mut req = self.authorized(self.http.request(method.clone(), &url));
            if let Some(query) = query {
                req = req.query(query);
            }
            if let Some((bytes, content_type)) = body {
                req = req
                    .header("content-type", *content_type)
                    .body(bytes.clone());
            }
            let connect = |source| ClientError::Connect {
                url: base.clone(),
                source,
            };
            let resp = req.send().await.map_err(connect)?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(connect)?.to_vec();
            if status.is_client_error() || status.is_server_error() {
                return Err(error_from(status, &bytes));
            }
            Ok((status, bytes))
        })
        .await
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let body = body
            .map(|b| serde_json::to_vec(b).map(|v| (v, "application/json")))
            .transpose()
            .map_err(|e| ClientError::Unexpected {
                status: 0,
                body: e.to_string(),
            })?;
        let (status, bytes) = self.send(method, path, body).await?;
        decode(status, &bytes)
    }

    /// `POST /studies` with a document as written (JSON or YAML).
    pub async fn create_study(&self, doc: &str, format: DocFormat) -> Result<Study, ClientError> {
        let content_type = match format {
            DocFormat::Json => "application/json",
            DocFormat::Yaml => "application/yaml",
        };
        let (status, bytes) = self
            .send(
                Method::POST,
                "/studies",
                Some((doc.as_bytes().to_vec(), content_type)),
            )
            .await?;
        decode(status, &bytes)
    }

    pub async fn list_studies(&self) -> Result<StudyList, ClientError> {
        self.json(Method::GET, "/studies", None::<&()>).await
    }

    pub async fn get_study(&self, id: StudyId) -> Result<Study, ClientError> {
        self.json(Method::GET, &format!("/studies/{id}"), None::<&()>)
            .await
    }

    pub async fn list_trials(&self, id: StudyId) -> Result<TrialList, ClientError> {
        self.json(Method::GET, &format!("/studies/{id}/trials"), None::<&()>)
            .await
    }

    /// Some of a study's trials: filtered, sorted, a page of them.
    pub async fn list_trials_where(
        &self,
        id: StudyId,
        query: &TrialQuery,
    ) -> Result<TrialList, ClientError> {
        let path = format!("/studies/{id}/trials");
        let (status, bytes) = self
            .send_with_query(Method::GET, &path, Some(query), None)
            .await?;
        decode(status, &bytes)
    }

    pub async fn best(&self, id: StudyId) -> Result<Best, ClientError> {
        self.json(Method::GET, &format!("/studies/{id}/best"), None::<&()>)
            .await
    }

    pub async fn importance(&self, id: StudyId) -> Result<Importance, ClientError> {
        self.json(
            Method::GET,
            &format!("/studies/{id}/importance"),
            None::<&()>,
        )
        .await
    }

    /// Follows a study's trial events (Server-Sent Events) from after event `after`
    /// until the study ends, calling `on_event` for each; returns the final study.
    /// Reconnects with `Last-Event-ID` (the stream's last `id`) if the connection drops
    /// (e.g. a server restart), for up to `patience` without progress.
    pub async fn watch(
        &self,
        id: StudyId,
        after: i64,
        patience: Duration,
        mut on_event: impl FnMut(&TrialEvent),
    ) -> Result<Study, ClientError> {
        let mut last_event_id = after.to_string();
        // Between reconnections: the stream's `retry` once it has sent one.
        let mut reconnect_delay = Duration::from_millis(500);
        let mut last_progress = std::time::Instant::now();
        let mut unreachable_in_a_row = 0;
        loop {
            // Reconnects go to the current server: after a connection error, the next one
            // (replicas share events, so `last-event-id` means the same on each).
            let at = self.current_index();
            let base = &self.servers[at];
            let req = self
                .authorized(self.http.get(format!("{base}/studies/{id}/trials")))
                .header("accept", "text/event-stream")
                .header("last-event-id", &last_event_id);
            let mut parser = EventStreamParser::resuming(last_event_id.clone());
            let attempt: Result<Option<Study>, ClientError> = async {
                let connect = |source| ClientError::Connect {
                    url: base.clone(),
                    source,
                };
                let mut resp = req.send().await.map_err(connect)?;
                let status = resp.status();
                if !status.is_success() {
                    let bytes = resp.bytes().await.map_err(connect)?;
                    return Err(error_from(status, &bytes));
                }
                while let Some(chunk) = resp.chunk().await.map_err(connect)? {
                    for sse in parser.feed(&chunk) {
                        match sse.event.as_str() {
                            "end" => return Ok(serde_json::from_str(&sse.data).ok()),
                            "error" => {
                                return Err(ClientError::Unexpected {
                                    status: 200,
                                    body: sse.data,
                                });
                            }
                            // Study state changes: the caller gets the final study.
                            "study" => {}
                            _ => {
                                if let Ok(event) = serde_json::from_str::<TrialEvent>(&sse.data) {
                                    last_progress = std::time::Instant::now();
                                    on_event(&event);
                                }
                            }
                        }
                    }
                }
                // The server closed the stream without `end`: reconnect.
                Err(ClientError::Unexpected {
                    status: 0,
                    body: "event stream closed early".into(),
                })
            }
            .await;
            if !parser.last_event_id().is_empty() {
                last_event_id = parser.last_event_id().to_owned();
            }
            reconnect_delay = parser.retry().unwrap_or(reconnect_delay);
            match attempt {
                Ok(Some(study)) => return Ok(study),
                // Deleted while watching, or an unreadable `end`.
                Ok(None) => return self.get_study(id).await,
                Err(e @ ClientError::Api { .. }) => return Err(e),
                Err(e) => {
                    if matches!(e, ClientError::Connect { .. }) {
                        unreachable_in_a_row += 1;
                        let _ = self.current.compare_exchange(
                            at,
                            (at + 1) % self.servers.len(),
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        );
                        // Straight on to the next replica; a pause only after a round
                        // in which none answered.
                        if unreachable_in_a_row % self.servers.len() != 0
                            && last_progress.elapsed() <= patience
                        {
                            continue;
                        }
                    } else {
                        unreachable_in_a_row = 0;
                    }
                    if last_progress.elapsed() > patience {
                        return Err(e);
                    }
                    tokio::time::sleep(reconnect_delay).await;
                }
            }
        }
    }

    /// Study control: `stop`, `pause` or `resume`.
    pub async fn control(&self, id: StudyId, action: &str) -> Result<Study, ClientError> {
        self.json(
            Method::POST,
            &format!("/studies/{id}/{action}"),
            None::<&()>,
        )
        .await
    }

    /// Raises a study's `max_trials` to `max_trials` (a completed study runs again).
    pub async fn extend(&self, id: StudyId, max_trials: u32) -> Result<Study, ClientError> {
        self.json(
            Method::POST,
            &format!("/studies/{id}/extend"),
            Some(&crate::ExtendRequest { max_trials }),
        )
        .await
    }

    pub async fn delete_study(&self, id: StudyId) -> Result<(), ClientError> {
        self.send(Method::DELETE, &format!("/studies/{id}"), None)
            .await
            .map(|_| ())
    }

    /// Leases the next trial of a study.
    pub async fn ask(&self, id: StudyId, req: &AskRequest) -> Result<AskAnswer, ClientError> {
        let body = serde_json::to_vec(req).unwrap_or_default();
        self.ask_at(&format!("/studies/{id}/ask"), body).await
    }

    /// Leases the next trial of any running study (optionally of one trainer kind).
    pub async fn ask_any(&self, req: &AskAnyRequest) -> Result<AskAnswer, ClientError> {
        let body = serde_json::to_vec(req).unwrap_or_default();
        self.ask_at("/ask", body).await
    }

    async fn ask_at(&self, path: &str, body: Vec<u8>) -> Result<AskAnswer, ClientError> {
        let body = &body;
        self.on_any_server(|base| async move {
            let resp = self
                .authorized(self.http.post(format!("{base}{path}")))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let connect = |source| ClientError::Connect {
                url: base.clone(),
                source,
            };
            let resp = resp.map_err(connect)?;
            if resp.status() == StatusCode::NO_CONTENT {
                // 204 with Retry-After: nothing now, ask again; plain 204: the study is done.
                let retry = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok());
                return Ok(match retry {
                    Some(secs) => AskAnswer::Wait(Duration::from_secs_f64(secs.clamp(0.0, 3600.0))),
                    None => AskAnswer::Done,
                });
            }
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(connect)?;
            if !status.is_success() {
                return Err(error_from(status, &bytes));
            }
            decode(status, &bytes).map(|a| AskAnswer::Leased(Box::new(a)))
        })
        .await
    }

    pub async fn heartbeat(
        &self,
        trial: TrialId,
        req: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        self.json(
            Method::POST,
            &format!("/trials/{trial}/heartbeat"),
            Some(req),
        )
        .await
    }

    pub async fn report(
        &self,
        trial: TrialId,
        req: &ReportRequest,
    ) -> Result<ReportResponse, ClientError> {
        self.json(Method::POST, &format!("/trials/{trial}/report"), Some(req))
            .await
    }

    pub async fn complete(
        &self,
        trial: TrialId,
        req: &CompleteRequest,
    ) -> Result<Trial, ClientError> {
        self.json(
            Method::POST,
            &format!("/trials/{trial}/complete"),
            Some(req),
        )
        .await
    }

    pub async fn release(
        &self,
        trial: TrialId,
        req: &ReleaseRequest,
    ) -> Result<Trial, ClientError> {
        self.json(Method::POST, &format!("/trials/{trial}/release"), Some(req))
            .await
    }

    pub async fn get_trial(&self, trial: TrialId) -> Result<Trial, ClientError> {
        self.json(Method::GET, &format!("/trials/{trial}"), None::<&()>)
            .await
    }

    pub async fn fail(&self, trial: TrialId, req: &FailRequest) -> Result<Trial, ClientError> {
        self.json(Method::POST, &format!("/trials/{trial}/fail"), Some(req))
            .await
    }
}

/// A base URL without trailing slashes or surrounding blanks (`a, b` lists have them).
fn normalize(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

fn error_from(status: StatusCode, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => ClientError::Api {
            status: status.as_u16(),
            code: body.error.code,
            message: body.error.message,
            details: body.error.details,
        },
        Err(_) => ClientError::Unexpected {
            status: status.as_u16(),
            body: String::from_utf8_lossy(bytes).into_owned(),
        },
    }
}

fn decode<T: DeserializeOwned>(status: StatusCode, bytes: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(bytes).map_err(|e| ClientError::Unexpected {
        status: status.as_u16(),
        body: format!("{e}: {}", String::from_utf8_lossy(bytes)),
    })
}
