//! One running server: the API on a listener, with its lease reaper. Every way of
//! running a server (`serve`, `tune`, the benchmarks) starts it here, so they reap
//! alike.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{sync::oneshot, task::JoinHandle};
use tuner_store::Store;

use crate::{ApiError, AppState, ServerConfig, app, settle::reap_once};

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The leases that ran out while no server ran could not be taken back.
    #[error("cannot take back expired leases: {0}")]
    Reap(ApiError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// A server serving the API until [`Server::shutdown`] (or until dropped: then at
/// once, open requests included).
pub struct Server {
    state: AppState,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    serving: JoinHandle<io::Result<()>>,
    reaper: JoinHandle<()>,
}

/// How often expired leases are looked for: a quarter of a lease, so a lost trial
/// goes back to the queue soon after its lease ends, but not more often than 10 times
/// a second nor less often than every 5 s.
fn reap_period(lease: Duration) -> Duration {
    (lease / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

impl Server {
    /// Takes back the leases that ran out while no server ran, then serves on `addr`
    /// (port 0: any free port) and reaps every [`reap_period`] of the lease.
    pub async fn start(
        store: Arc<dyn Store>,
        config: ServerConfig,
        addr: SocketAddr,
    ) -> Result<Server, StartError> {
        let period = reap_period(config.lease);
        let state = AppState::new(store, config);
        reap_once(&state).await.map_err(StartError::Reap)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let reaper = spawn_reaper(state.clone(), period);
        let (stop, stopped) = oneshot::channel::<()>();
        let router = app(state.clone());
        let serving = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Server {
            state,
            addr,
            stop: Some(stop),
            serving,
            reaper,
        })
    }

    /// The address it listens on (with the port chosen when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` and its address.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops taking connections and waits for the open requests to finish.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.begin_shutdown();
        let served = (&mut self.serving).await;
        self.reaper.abort();
        served.map_err(io::Error::other)?
    }

    /// Like [`Server::shutdown`], but requests still open after `grace` are cut off
    /// (event streams last as long as their study). Returns whether any were.
    pub async fn shutdown_within(mut self, grace: Duration) -> io::Result<bool> {
        self.begin_shutdown();
        let served = tokio::time::timeout(grace, &mut self.serving).await;
        self.reaper.abort();
        match served {
            Ok(served) => served.map_err(io::Error::other)?.map(|()| false),
            Err(_) => {
                self.serving.abort();
                Ok(true)
            }
        }
    }

    fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.serving.abort();
        self.reaper.abort();
    }
}

/// Takes back expired leases every `period` until aborted.
fn spawn_reaper(state: AppState, period: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = reap_once(&state).await {
                tracing::error!(error = %e, "lease reaper failed");
            }
        }
    })
}
