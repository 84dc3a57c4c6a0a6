//! The backends the conformance suite runs against, one fresh database per test.

pub mod pg;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use sqlx::{Connection, PgConnection, SqliteConnection};
use tuner_store::{PgStore, SqliteStore, Store};

pub enum Backend {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Pg {
        server: String,
        name: String,
        url: String,
    },
}

impl Backend {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        Self::Sqlite { _dir: dir, path }
    }

    /// A new, empty database on the test server; `None` when there is no server (the
    /// reason is printed).
    pub async fn pg() -> Option<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let server = pg::server_url()?.to_owned();
        let name = format!(
            "t_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            pg::nanos() % 1_000_000_000
        );
        let mut admin = PgConnection::connect(&server).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = with_database(&server, &name);
        Some(Self::Pg { server, name, url })
    }

    /// The PostgreSQL database's URL, for tests that need a raw connection.
    pub fn pg_url(&self) -> Option<&str> {
        match self {
            Self::Pg { url, .. } => Some(url),
            Self::Sqlite { .. } => None,
        }
    }

    /// A new handle on the database (as a server process would open it at start).
    pub async fn open(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite { path, .. } => Arc::new(SqliteStore::open(path).await.unwrap()),
            Self::Pg { url, .. } => Arc::new(PgStore::connect(url).await.unwrap()),
        }
    }

    /// Another server on the same database: a second `PgStore` (a replica); SQLite has
    /// one server per database, so it is the same store.
    pub async fn replica(&self, store: &Arc<dyn Store>) -> Arc<dyn Store> {
        match self {
            Self::Sqlite { .. } => store.clone(),
            Self::Pg { .. } => self.open().await,
        }
    }

    /// Runs one statement outside the store; the error's text when it fails.
    pub async fn exec(&self, sql: &str) -> Result<u64, String> {
        let done = match self {
            Self::Sqlite { path, .. } => {
                let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .map(|d| d.rows_affected())
            }
            Self::Pg { url, .. } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .map(|d| d.rows_affected())
            }
        };
        done.map_err(|e| e.to_string())
    }

    /// Drops the test's database (kept when the test failed, for a look).
    pub async fn finish(self) {
        if let Self::Pg { server, name, .. } = self {
            let mut admin = PgConnection::connect(&server).await.unwrap();
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .unwrap();
        }
    }
}

/// `server` (a URL) with its database replaced by `name`.
fn with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    // The path starts at the first '/' after "scheme://authority".
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}
