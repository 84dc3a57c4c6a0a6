//! tuner-server: the HTTP service.
//!
//! Modules:
//! - `lib.rs`: [`AppState`] (the store, settings and per-study caches; the only place
//!   that touches their fields) and [`ServerConfig`];
//! - `server`: [`Server`], a running server: reaps once at start, serves [`app`],
//!   reaps every quarter lease;
//! - `routes`: the axum routes, their extractors (path ids, JSON bodies, query strings)
//!   and their OpenAPI document; `dashboard`: the web page;
//! - `ask`: which trial a worker gets (a server alone on its database decides from
//!   memory); `shared_ask`: the same for replicas, decided in the database; `lease`:
//!   what both share (the lease granted, the answer, the sampler run);
//! - `settle`: when a study is over, and taking back expired leases (reap);
//! - `pruning`: the answer to an epoch report (median and ASHA pruners);
//! - `importance`: parameter importance, cached until a trial finishes;
//! - `history`: each study's trial outcomes in memory, for the sampler and the counts;
//! - `read_models`: wire views read from the state (a study with its counts and best);
//!   `views`: store records to wire types; `watch`: live events as Server-Sent Events;
//! - `clock`: [`Clock`], where the server reads the time (a [`ManualClock`] in tests);
//! - `error`: every error mapped to one JSON envelope.
//!
//! Only servers open the database. Depends on `tuner-core`, `tuner-api`,
//! `tuner-optim` and `tuner-store`; must not depend on the trainer (workers reach it
//! over HTTP like anyone else).

mod ask;
mod clock;
mod curve;
mod dashboard;
mod error;
mod history;
mod importance;
mod lease;
mod pruning;
mod read_models;
mod routes;
mod server;
mod settle;
mod shared_ask;
mod views;
mod watch;

pub use clock::{Clock, ManualClock};
pub use error::{ApiError, ConflictCode};
pub use routes::{openapi, studies::check_supported};
pub use server::{Server, StartError};
pub use settle::reap_once;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use axum::Router;
use tuner_api::Importance;
use tuner_core::{StudyId, StudySpec, StudyState, TrialId, parse_spec_value};
use tuner_store::{Store, StoreError, StudyRecord};

/// Settings an operator may change.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How long a lease lasts without a heartbeat or report.
    pub lease: Duration,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// When set, every route but `/health` needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Where the server reads the time (the system clock but in tests).
    pub clock: Clock,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            max_body_bytes: 1 << 20,
            token: None,
            clock: Clock::System,
        }
    }
}

/// Shared state of one server: the store, settings and per-study caches.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct CachedSpec {
    stored: serde_json::Value,
    parsed: Arc<StudySpec>,
}

struct Inner {
    store: Arc<dyn Store>,
    /// Other servers write to the same database (replicas on PostgreSQL): decisions are
    /// made in the database, and this server's memory only caches what never changes
    /// (which study a trial is in), what it checks against the record it reads (specs)
    /// or what it catches up on under a lock.
    shared: bool,
    config: ServerConfig,
    /// Parsed specs by study, each with the stored document it was parsed from: an
    /// extend (here or on another replica) changes `budget.max_trials`, so a cached spec
    /// is used only while the study's record still holds that document.
    specs: Mutex<HashMap<StudyId, CachedSpec>>,
    /// One lock per study serializes `ask`, so budget counting and trial numbering
    /// cannot race between concurrent workers.
    ask_locks: Mutex<HashMap<StudyId, Arc<tokio::sync::Mutex<()>>>>,
    /// Asks waiting per study when the database is shared (served in batches).
    ask_queues: Mutex<HashMap<StudyId, Arc<shared_ask::AskQueue>>>,
    /// Trial outcomes by study, kept current by every handler that changes a trial.
    histories: history::Histories,
    /// Study records (read on every ask and completion), dropped whenever one changes.
    studies: Mutex<HashMap<StudyId, CachedStudy>>,
    /// No lease can expire before this time (Unix ms): a lower bound on the earliest
    /// `lease_expires_at` of running trials, so `ask` reaps only when one may be due.
    /// Starts at the minimum: a restarted server reaps on its first ask.
    next_expiry: AtomicI64,
    /// A reap holds it for writing, an ask for reading from its count check to its
    /// record of the lease: an ask cannot re-lease a trial between the reaper's commit
    /// and the reaper's update of the in-memory history (which would then overwrite
    /// the newer "running" with its older "pending").
    reaping: tokio::sync::RwLock<()>,
    /// The last importance answer per study, with the fingerprint of the finished
    /// trials it was computed from (a GP fit takes seconds on a large study).
    importance: Mutex<HashMap<StudyId, (u64, Arc<Importance>)>>,
}

/// A cached study record and a generation counter: a load that started before the
/// record changed must not put the old record back. While a change is being written
/// nothing is cached (a reader that saw the new row must not then get the old record
/// from memory).
#[derive(Default)]
struct CachedStudy {
    generation: u64,
    record: Option<StudyRecord>,
    changes_in_flight: u32,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, config: ServerConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                shared: store.is_shared(),
                store,
                config,
                specs: Mutex::default(),
                ask_locks: Mutex::default(),
                ask_queues: Mutex::default(),
                histories: history::Histories::default(),
                studies: Mutex::default(),
                next_expiry: AtomicI64::new(i64::MIN),
                reaping: tokio::sync::RwLock::new(()),
                importance: Mutex::default(),
            }),
        }
    }

    pub fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// The time now (Unix ms) on this server's clock.
    pub fn now_ms(&self) -> i64 {
        self.inner.config.clock.now_ms()
    }

    /// Whether other servers share this one's database.
    pub fn is_shared(&self) -> bool {
        self.inner.shared
    }

    fn ask_lock(&self, id: StudyId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .inner
            .ask_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        locks.entry(id).or_default().clone()
    }

    fn ask_queue(&self, id: StudyId) -> Arc<shared_ask::AskQueue> {
        let mut queues = self
            .inner
            .ask_queues
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        queues.entry(id).or_default().clone()
    }

    /// The study's record, from memory when possible (never when the database is
    /// shared: a stop or pause on another server must be obeyed here at once).
    async fn study(&self, id: StudyId) -> Result<StudyRecord, StoreError> {
        if self.is_shared() {
            return self.store().get_study(id).await;
        }
        let generation = {
            let studies = self.inner.studies.lock().unwrap_or_else(|e| e.into_inner());
            match studies.get(&id) {
                Some(CachedStudy {
                    record: Some(record),
                    ..
                }) => return Ok(record.clone()),
                Some(cached) => cached.generation,
                None => 0,
            }
        };
        let record = self.store().get_study(id).await?;
        let mut studies = self.inner.studies.lock().unwrap_or_else(|e| e.into_inner());
        let cached = studies.entry(id).or_default();
        if cached.generation == generation && cached.changes_in_flight == 0 {
            cached.record = Some(record.clone());
        }
        Ok(record)
    }

    /// Changes a study's state in the store, with its cached record dropped meanwhile.
    async fn set_study_state(
        &self,
        id: StudyId,
        to: StudyState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.changing_study(id, self.store().set_study_state(id, to, reason, now))
            .await
    }

    /// Runs `change` to the study's row with no record of it cached from before the
    /// change starts until after it ends.
    async fn changing_study<T>(
        &self,
        id: StudyId,
        change: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.mark_study_change(id, 1);
        let result = change.await;
        self.mark_study_change(id, -1);
        result
    }

    fn mark_study_change(&self, id: StudyId, delta: i32) {
        let mut studies = self.inner.studies.lock().unwrap_or_else(|e| e.into_inner());
        let cached = studies.entry(id).or_default();
        cached.changes_in_flight = cached.changes_in_flight.saturating_add_signed(delta);
        cached.generation += 1;
        cached.record = None;
    }

    fn drop_cached_study(&self, id: StudyId) {
        let mut studies = self.inner.studies.lock().unwrap_or_else(|e| e.into_inner());
        let cached = studies.entry(id).or_default();
        cached.generation += 1;
        cached.record = None;
    }

    /// Remembers a lease handed out, after its commit.
    fn note_lease(&self, expires_at: i64) {
        self.inner
            .next_expiry
            .fetch_min(expires_at, Ordering::SeqCst);
    }

    fn lease_may_have_expired(&self, now: i64) -> bool {
        now >= self.inner.next_expiry.load(Ordering::SeqCst)
    }

    /// Held by an ask from its count check to its record of the lease, so no reap
    /// runs in between (see `Inner::reaping`).
    async fn hold_off_reaping(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.inner.reaping.read().await
    }

    /// Starts a reap once the asks in progress are done: the expiry bound is raised
    /// before the reap looks, so a lease committed after the look still lowers it.
    async fn begin_reap(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        let reaping = self.inner.reaping.write().await;
        self.inner.next_expiry.store(i64::MAX, Ordering::SeqCst);
        reaping
    }

    /// A reap failed to look: the earliest expiry is unknown, so the next ask reaps.
    fn forget_expiry_bound(&self) {
        self.inner.next_expiry.store(i64::MIN, Ordering::SeqCst);
    }

    /// The parsed spec of a study, from the cache while it was parsed from the record's
    /// document, else from that document.
    fn spec_of(&self, record: &StudyRecord) -> Result<Arc<StudySpec>, ApiError> {
        if let Some(cached) = self
            .inner
            .specs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&record.id)
            .filter(|cached| cached.stored == record.spec)
        {
            return Ok(cached.parsed.clone());
        }
        let spec = parse_spec_value(&record.spec).map_err(|e| {
            ApiError::Internal(format!(
                "stored spec of study {} no longer parses: {e}",
                record.id
            ))
        })?;
        let spec = Arc::new(spec);
        self.inner
            .specs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                record.id,
                CachedSpec {
                    stored: record.spec.clone(),
                    parsed: spec.clone(),
                },
            );
        Ok(spec)
    }

    /// Any spec of the study parsed before, maybe older than the stored one: good for
    /// what an extend never changes (the objective, the trainer, the pruner).
    fn cached_spec(&self, id: StudyId) -> Option<Arc<StudySpec>> {
        self.inner
            .specs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .map(|cached| cached.parsed.clone())
    }

    /// The spec of the study a trial belongs to (what report and complete need to find
    /// the objective's metric).
    async fn spec_of_trial(&self, id: TrialId) -> Result<Arc<StudySpec>, ApiError> {
        let study = match self.histories().study_of(id) {
            Some(study) => study,
            None => self.store().study_of_trial(id).await?,
        };
        // Only `budget.max_trials` ever changes, which report and complete do not read:
        // no need to read the study again once a spec is cached.
        if let Some(spec) = self.cached_spec(study) {
            return Ok(spec);
        }
        let record = self.study(study).await?;
        self.spec_of(&record)
    }

    /// The last importance answer of a study, if it was computed from the finished
    /// trials `fingerprint` identifies.
    fn cached_importance(&self, id: StudyId, fingerprint: u64) -> Option<Arc<Importance>> {
        self.inner
            .importance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .filter(|(f, _)| *f == fingerprint)
            .map(|(_, answer)| answer.clone())
    }

    fn cache_importance(&self, id: StudyId, fingerprint: u64, answer: Arc<Importance>) {
        self.inner
            .importance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (fingerprint, answer));
    }

    fn histories(&self) -> &history::Histories {
        &self.inner.histories
    }

    fn forget_study(&self, id: StudyId) {
        self.inner.histories.forget(id);
        self.drop_cached_study(id);
        self.inner
            .specs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        self.inner
            .ask_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        self.inner
            .importance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        self.inner
            .ask_queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

/// The whole HTTP API.
pub fn app(state: AppState) -> Router {
    routes::router(state)
}
