//! `ApiClient` against the real server on loopback: a trial query arrives as written;
//! `watch` sees every trial event once, in order, also across a connection cut
//! mid-stream (the reconnection sends the stream's last `id` as `Last-Event-ID`).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tuner_api::{
    ApiClient, AskAnswer, AskRequest, CompleteRequest, DocFormat, ReportRequest, SortKey,
    SortOrder, TrialEvent, TrialQuery, TrialView,
};
use tuner_core::{StudyId, StudyState, TrialState};
use tuner_server::{Server, ServerConfig};
use tuner_store::SqliteStore;

const STUDY: &str = "version: 1\nname: sse\nobjective: {metric: acc, direction: maximize}\n\
    trainer: {kind: external, epochs: 2}\nbudget: {max_trials: 2, parallelism: 1}\n\
    optimizer: {kind: random, seed: 1}\nparameters:\n  x: {type: float, min: 0.0, max: 1.0}\n";

/// A server on a fresh SQLite file, with one study run to its end.
struct Finished {
    _dir: tempfile::TempDir,
    server: Server,
    client: ApiClient,
    study: StudyId,
}

async fn a_finished_study() -> Finished {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("api.db")).await.unwrap();
    let server = Server::start(
        Arc::new(store),
        ServerConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let client = ApiClient::new(server.url());
    let study = run_to_the_end(&client).await;
    Finished {
        _dir: dir,
        server,
        client,
        study,
    }
}

/// Runs a new study to its end: each trial reports two epochs, then completes with its
/// number as its value.
async fn run_to_the_end(client: &ApiClient) -> StudyId {
    let study = client
        .create_study(STUDY, DocFormat::Yaml)
        .await
        .unwrap()
        .id;
    while let AskAnswer::Leased(a) = client.ask(study, &AskRequest::default()).await.unwrap() {
        let token = Some(a.lease.token.clone());
        for epoch in 1..=2 {
            let report = ReportRequest {
                lease_token: token.clone(),
                epoch,
                value: Some(f64::from(epoch) / 10.0),
                metrics: Default::default(),
            };
            client.report(a.trial.id, &report).await.unwrap();
        }
        let complete = CompleteRequest {
            lease_token: token,
            value: Some(a.trial.number as f64),
            metrics: Default::default(),
        };
        client.complete(a.trial.id, &complete).await.unwrap();
    }
    study
}

async fn watch_all(client: &ApiClient, study: StudyId, after: i64) -> Vec<TrialEvent> {
    let mut seen = Vec::new();
    let end = client
        .watch(study, after, Duration::from_secs(20), |e| {
            seen.push(e.clone())
        })
        .await
        .unwrap();
    assert_eq!(end.state, StudyState::Completed);
    seen
}

fn kinds(events: &[TrialEvent]) -> Vec<(u64, &str)> {
    events.iter().map(|e| (e.number, e.kind.as_str())).collect()
}

#[tokio::test]
async fn a_trial_query_reaches_the_server_as_written() {
    let f = a_finished_study().await;
    let (client, study) = (&f.client, f.study);
    let best = TrialQuery {
        state: Some(TrialState::Completed),
        view: Some(TrialView::Summary),
        sort: Some(SortKey::Value),
        order: Some(SortOrder::Desc),
        limit: Some(1),
        ..TrialQuery::default()
    };
    let list = client.list_trials_where(study, &best).await.unwrap();
    assert_eq!(list.total, 2);
    assert_eq!(list.trials.len(), 1);
    assert_eq!(list.trials[0].value, Some(1.0));
    assert!(list.trials[0].intermediate.is_empty(), "summary view");
    let second = TrialQuery {
        offset: Some(1),
        ..TrialQuery::default()
    };
    let list = client.list_trials_where(study, &second).await.unwrap();
    assert_eq!(list.trials.len(), 1);
    assert_eq!(list.trials[0].number, 1);
    assert_eq!(list.trials[0].intermediate.len(), 2, "full view");
}

#[tokio::test]
async fn watching_replays_a_studys_events_from_any_point() {
    let f = a_finished_study().await;
    let (client, study) = (&f.client, f.study);

    let all = watch_all(client, study, 0).await;
    let per_trial = ["created", "started", "epoch", "epoch", "completed"];
    let expected: Vec<(u64, &str)> = (0..2)
        .flat_map(|n| per_trial.iter().map(move |k| (n, *k)))
        .collect();
    assert_eq!(kinds(&all), expected);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let epochs: Vec<Option<u32>> = all.iter().map(|e| e.epoch).collect();
    assert_eq!(&epochs[2..4], [Some(1), Some(2)]);

    let rest = watch_all(client, study, all[3].id).await;
    assert_eq!(kinds(&rest), kinds(&all[4..]));
}

/// A TCP forwarder to `target` that cuts its first connection once the answer has
/// carried `events` whole events (each ends in a blank line), and keeps every
/// request it forwards.
async fn cutting_forwarder(target: SocketAddr, events: usize) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let kept = requests.clone();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((inbound, _)) = listener.accept().await {
            let outbound = tokio::net::TcpStream::connect(target).await.unwrap();
            let (mut from_client, mut to_client) = inbound.into_split();
            let (mut from_server, mut to_server) = outbound.into_split();
            let requests = requests.clone();
            let upstream = tokio::spawn(async move {
                let mut buf = vec![0; 16 * 1024];
                while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                    let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                    requests.lock().unwrap().push(text);
                    if to_server.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
            let cut_after = first.then_some(events);
            first = false;
            tokio::spawn(async move {
                let mut buf = vec![0; 16 * 1024];
                let mut ended = 0;
                let mut previous = 0u8;
                while let Ok(n @ 1..) = from_server.read(&mut buf).await {
                    let mut upto = n;
                    if let Some(cut) = cut_after {
                        for (i, &b) in buf[..n].iter().enumerate() {
                            if b == b'\n' && previous == b'\n' {
                                ended += 1;
                                if ended == cut {
                                    upto = i + 1;
                                    break;
                                }
                            }
                            previous = b;
                        }
                    }
                    if to_client.write_all(&buf[..upto]).await.is_err() || upto < n {
                        break;
                    }
                    if cut_after.is_some_and(|cut| ended >= cut) {
                        break;
                    }
                }
                // Both directions close: the client sees the stream break off.
                upstream.abort();
            });
        }
    });
    (url, kept)
}

#[tokio::test]
async fn a_stream_cut_mid_way_resumes_after_its_last_event_id() {
    let f = a_finished_study().await;
    let all = watch_all(&f.client, f.study, 0).await;

    let (url, requests) = cutting_forwarder(f.server.addr(), 3).await;
    let through_cut = watch_all(&ApiClient::new(url), f.study, 0).await;
    assert_eq!(
        kinds(&through_cut),
        kinds(&all),
        "every event once, in order"
    );
    let requests = requests.lock().unwrap();
    assert_eq!(requests.len(), 2, "one reconnection: {requests:?}");
    assert!(
        requests[0].contains("last-event-id: 0\r\n"),
        "{}",
        requests[0]
    );
    let resume = format!("last-event-id: {}\r\n", all[2].id);
    assert!(requests[1].contains(&resume), "{}", requests[1]);
}
