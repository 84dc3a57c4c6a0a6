//! Which database `serve` opens: a SQLite file (the embedded default) or PostgreSQL,
//! shared by any number of server replicas.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result};
use tuner_store::{PgStore, SqliteStore, Store};

/// Where the studies live, as the user wrote it.
#[derive(Debug, Clone, PartialEq)]
pub enum DbTarget {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DbTarget {
    /// `postgres://…` or `postgresql://…` is PostgreSQL; `sqlite:PATH`, `sqlite://PATH`
    /// or a plain path is a SQLite file.
    pub fn parse(text: &str) -> Self {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Self::Postgres(text.to_owned());
        }
        let path = text
            .strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"))
            .unwrap_or(text);
        Self::Sqlite(PathBuf::from(path))
    }

    /// Whether both name one database, as far as their text tells: the same file (after
    /// resolving links and `..`), or the same host, port and database name on
    /// PostgreSQL (user, password and options aside; `localhost` and the loopback
    /// addresses count as one host).
    pub fn same_database(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Sqlite(a), Self::Sqlite(b)) => resolved(a) == resolved(b),
            (Self::Postgres(a), Self::Postgres(b)) => pg_identity(a) == pg_identity(b),
            _ => false,
        }
    }

    /// For messages: the path, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Postgres(url) => redact_password(url),
        }
    }
}

/// The file's absolute path with links resolved; for a file not there yet, its folder's
/// (so a target that does not exist yet still compares).
fn resolved(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match (parent.canonicalize(), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_owned(),
    }
}

/// (host, port, database) of a `postgres://` URL.
fn pg_identity(url: &str) -> (String, u16, String) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.rsplit_once(':') {
        // Not the colons of a bracketed IPv6 address.
        Some((h, p)) if !p.contains(']') => (h, p.parse().unwrap_or(0)),
        _ => (host_port, 5432),
    };
    let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
    let host = match host.as_str() {
        "" | "localhost" | "127.0.0.1" | "::1" => "localhost".to_owned(),
        _ => host,
    };
    (host, port, db.to_owned())
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => url.to_owned(),
    }
}

/// An open store of either kind.
#[derive(Clone)]
pub enum OpenStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl OpenStore {
    pub async fn open(target: &DbTarget) -> Result<Self> {
        Ok(match target {
            DbTarget::Sqlite(path) => Self::Sqlite(
                SqliteStore::open(path)
                    .await
                    .with_context(|| format!("cannot open the database {}", path.display()))?,
            ),
            DbTarget::Postgres(url) => Self::Postgres(
                PgStore::connect(url)
                    .await
                    .with_context(|| format!("cannot open the database {}", target.describe()))?,
            ),
        })
    }

    pub fn shared(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(s) => Arc::new(s.clone()),
            Self::Postgres(s) => Arc::new(s.clone()),
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_pick_the_backend() {
        assert_eq!(
            DbTarget::parse("tuner.db"),
            DbTarget::Sqlite("tuner.db".into())
        );
        assert_eq!(
            DbTarget::parse("sqlite:/var/lib/t.db"),
            DbTarget::Sqlite("/var/lib/t.db".into())
        );
        assert_eq!(
            DbTarget::parse("sqlite:///var/lib/t.db"),
            DbTarget::Sqlite("/var/lib/t.db".into())
        );
        assert!(matches!(
            DbTarget::parse("postgres://u@127.0.0.1:5432/tuner"),
            DbTarget::Postgres(_)
        ));
        assert!(matches!(
            DbTarget::parse("postgresql://u@h/db"),
            DbTarget::Postgres(_)
        ));
        assert_eq!(
            DbTarget::parse("postgres://u:hunter2@h:5432/db").describe(),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            DbTarget::parse("postgres://u@h/db").describe(),
            "postgres://u@h/db"
        );
    }

    #[test]
    fn the_same_database_is_recognized_however_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.db");
        std::fs::write(&file, b"").unwrap();
        let same = |a: &str, b: &str| DbTarget::parse(a).same_database(&DbTarget::parse(b));
        let plain = file.display().to_string();
        let dotted = format!("sqlite:{}/./t.db", dir.path().display());
        assert!(same(&plain, &dotted));
        // A file not there yet compares by its folder.
        let missing = format!(
            "{}/../{}/new.db",
            dir.path().display(),
            dir.path().file_name().unwrap().to_str().unwrap()
        );
        assert!(same(&missing, &format!("{}/new.db", dir.path().display())));
        assert!(!same(&plain, &format!("{}/other.db", dir.path().display())));
        assert!(same(
            "postgres://a:x@localhost/tuner",
            "postgresql://b@127.0.0.1:5432/tuner?sslmode=disable"
        ));
        assert!(same("postgres://[::1]:5432/t", "postgres://localhost/t"));
        assert!(!same("postgres://h/tuner", "postgres://h:5433/tuner"));
        assert!(!same("postgres://h/tuner", "postgres://h/other"));
        assert!(!same("postgres://h/tuner", "postgres://g/tuner"));
        assert!(!same(&plain, "postgres://localhost/t.db"));
    }
}
