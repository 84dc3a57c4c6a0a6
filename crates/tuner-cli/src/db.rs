//! Which database `serve` opens: a SQLite file (the embedded default) or PostgreSQL,
//! shared by any number of server replicas.

use std::{path::PathBuf, sync::Arc};

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

    /// For messages: the path, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Postgres(url) => redact_password(url),
        }
    }
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
}
