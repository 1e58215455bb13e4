//! Naming a store on the command line and opening it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use weft_crdt::store::StoreError;
use weft_crdt::DocStore;

/// A store, as the tools name it: `sled:DIR` (the embedded database in DIR) or a PostgreSQL URL
/// (`postgres://user:password@host:port/db`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// The sled database in this directory.
    Sled(PathBuf),
    /// PostgreSQL at this URL.
    Postgres(String),
}

impl FromStr for StoreSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(dir) = s.strip_prefix("sled:") {
            if dir.is_empty() {
                return Err("sled: needs a directory, e.g. sled:./data".into());
            }
            return Ok(StoreSpec::Sled(PathBuf::from(dir)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(StoreSpec::Postgres(s.to_string()));
        }
        Err(format!(
            "a store is sled:DIR or a postgres:// URL, not {s:?}"
        ))
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Sled(dir) => write!(f, "sled:{}", dir.display()),
            // Never print a password.
            StoreSpec::Postgres(url) => match url.split_once('@') {
                Some((_, host)) => write!(f, "postgres://…@{host}"),
                None => f.write_str(url),
            },
        }
    }
}

/// Opens the store (the sled database must not be in use by a running server).
pub async fn open(spec: &StoreSpec) -> Result<Arc<dyn DocStore>, StoreError> {
    match spec {
        StoreSpec::Sled(dir) => Ok(Arc::new(weft_store_sled::SledStore::open(dir)?)),
        StoreSpec::Postgres(url) => open_postgres(url).await,
    }
}

/// Opens a store that must already exist: a tool reading a store (`fsck`, `export`, the source
/// of `migrate`) given a mistyped sled directory must say so, not create an empty database and
/// report "0 documents".
pub async fn open_existing(spec: &StoreSpec) -> Result<Arc<dyn DocStore>, StoreError> {
    if let StoreSpec::Sled(dir) = spec {
        if !dir.join("db").is_file() {
            return Err(StoreError::Other(format!(
                "no Weft store in {} (no sled database there)",
                dir.display()
            )));
        }
    }
    open(spec).await
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str) -> Result<Arc<dyn DocStore>, StoreError> {
    Ok(Arc::new(
        weft_store_postgres::PostgresStore::connect(url, 4).await?,
    ))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_url: &str) -> Result<Arc<dyn DocStore>, StoreError> {
    Err(StoreError::Other(
        "this build of weft has no PostgreSQL support (cargo feature `postgres`)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_hide_passwords() {
        assert_eq!(
            "sled:/var/lib/weft".parse::<StoreSpec>(),
            Ok(StoreSpec::Sled("/var/lib/weft".into()))
        );
        let pg: StoreSpec = "postgres://weft:secret@db:5432/weft".parse().unwrap();
        assert_eq!(pg.to_string(), "postgres://…@db:5432/weft");
        assert!("sled:".parse::<StoreSpec>().is_err());
        assert!("mysql://x".parse::<StoreSpec>().is_err());
    }
}
