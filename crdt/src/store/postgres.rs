//! The cluster store: PostgreSQL, shared by every Weft node of a cluster.
//!
//! Schema (created or migrated at start-up, under an advisory lock so nodes starting together
//! do not race):
//! - `weft_docs (name TEXT PRIMARY KEY, snapshot BYTEA, updated_at_ms BIGINT)`
//! - `weft_log (id BIGSERIAL PRIMARY KEY, doc TEXT, update BYTEA)`, indexed by `(doc, id)`.
//!
//! Several nodes may append to one document at once, so the log's order comes from the
//! database (`id`), not from the caller: the `first_seq` of [`DocStore::append`] is ignored.
//! Appends from every document go through one writer task that commits everything waiting in
//! one transaction (group commit); a commit is durable when it returns (`synchronous_commit`).
//!
//! Compaction must not drop a log entry another node wrote and this node has not seen yet. So it
//! folds the caller's snapshot, the stored snapshot and exactly the log entries it read into a
//! new snapshot, and deletes exactly those entries, in one transaction. A transaction-scoped
//! advisory lock per document makes a second node skip compaction while one is running.

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{IsolationLevel, NoTls};
use yrs::{Doc, ReadTxn, StateVector, Transact};

use super::{DocInfo, DocStore, LogEntry, StoreError, StoredDoc};
use crate::name::DocName;
use crate::recovery;

/// Schema version this build writes; older schemas are migrated at start-up.
const SCHEMA_VERSION: i32 = 1;
/// Advisory lock key held while migrating (any constant shared by all nodes).
const MIGRATION_LOCK: i64 = 0x5746_5453_4348_454d;
/// Most appends committed in one transaction.
const MAX_GROUP: usize = 1024;

/// PostgreSQL-backed [`DocStore`] for cluster mode.
pub struct PostgresStore {
    pool: Pool,
    writer: mpsc::Sender<AppendJob>,
}

struct AppendJob {
    name: DocName,
    updates: Vec<Bytes>,
    done: oneshot::Sender<Result<(), StoreError>>,
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        StoreError::Postgres(error.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        StoreError::Postgres(format!("connection pool: {error}"))
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`), creates or migrates
    /// the schema, and starts the writer task. Connections are plain TCP (no TLS): run the
    /// database on a private network or a local socket.
    pub async fn connect(url: &str, max_connections: usize) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Postgres(format!("invalid PostgreSQL URL: {e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(2))
            .build()
            .map_err(|e| StoreError::Postgres(format!("connection pool: {e}")))?;
        migrate(&pool).await?;
        let (writer, jobs) = mpsc::channel(4096);
        tokio::spawn(write_loop(pool.clone(), jobs));
        Ok(PostgresStore { pool, writer })
    }
}

/// Creates the tables if missing and records the schema version.
async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS weft_schema (version INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS weft_docs (
             name TEXT PRIMARY KEY,
             snapshot BYTEA,
             updated_at_ms BIGINT NOT NULL DEFAULT 0
         );
         CREATE TABLE IF NOT EXISTS weft_log (
             id BIGSERIAL PRIMARY KEY,
             doc TEXT NOT NULL,
             update BYTEA NOT NULL
         );
         CREATE INDEX IF NOT EXISTS weft_log_doc_id ON weft_log (doc, id);",
    )
    .await?;
    let current: Option<i32> = txn
        .query_opt("SELECT max(version) FROM weft_schema", &[])
        .await?
        .and_then(|row| row.get(0));
    match current {
        Some(version) if version > SCHEMA_VERSION => {
            return Err(StoreError::Postgres(format!(
                "the database has schema version {version}; this build knows up to {SCHEMA_VERSION}"
            )));
        }
        Some(version) if version == SCHEMA_VERSION => {}
        _ => {
            // Version 1 is the first schema: nothing older to convert.
            txn.execute("DELETE FROM weft_schema", &[]).await?;
            txn.execute(
                "INSERT INTO weft_schema (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )
            .await?;
        }
    }
    txn.commit().await?;
    Ok(())
}

/// The writer task: commits every append waiting in the queue in one transaction.
async fn write_loop(pool: Pool, mut jobs: mpsc::Receiver<AppendJob>) {
    let mut group = Vec::with_capacity(64);
    while jobs.recv_many(&mut group, MAX_GROUP).await > 0 {
        let result = commit_group(&pool, &group).await;
        if let Err(error) = &result {
            tracing::error!(%error, appends = group.len(), "PostgreSQL append failed");
        }
        for job in group.drain(..) {
            let answer = match &result {
                Ok(()) => Ok(()),
                Err(error) => Err(StoreError::Postgres(error.to_string())),
            };
            let _ = job.done.send(answer);
        }
    }
}

async fn commit_group(pool: &Pool, group: &[AppendJob]) -> Result<(), StoreError> {
    let mut docs: Vec<&str> = Vec::new();
    let mut updates: Vec<&[u8]> = Vec::new();
    for job in group {
        for update in &job.updates {
            docs.push(job.name.as_str());
            updates.push(update);
        }
    }
    let mut touched: Vec<&str> = group.iter().map(|job| job.name.as_str()).collect();
    // Sorted, so concurrent nodes lock the document rows in the same order.
    touched.sort_unstable();
    touched.dedup();
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    txn.execute(
        "INSERT INTO weft_log (doc, update)
         SELECT d, u FROM UNNEST($1::text[], $2::bytea[]) WITH ORDINALITY AS t(d, u, n)
         ORDER BY n",
        &[&docs, &updates],
    )
    .await?;
    txn.execute(
        "INSERT INTO weft_docs (name, updated_at_ms) SELECT unnest($1::text[]), $2
         ON CONFLICT (name) DO UPDATE SET updated_at_ms = EXCLUDED.updated_at_ms",
        &[&touched, &now_ms()],
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Reads a document's snapshot and log inside `txn` (locking its row when `lock`).
async fn read_records(
    txn: &tokio_postgres::Transaction<'_>,
    name: &DocName,
    lock: bool,
) -> Result<(Option<Bytes>, Vec<LogEntry>), StoreError> {
    let query = if lock {
        "SELECT snapshot FROM weft_docs WHERE name = $1 FOR UPDATE"
    } else {
        "SELECT snapshot FROM weft_docs WHERE name = $1"
    };
    let snapshot: Option<Vec<u8>> = txn
        .query_opt(query, &[&name.as_str()])
        .await?
        .and_then(|row| row.get(0));
    let rows = txn
        .query(
            "SELECT id, update FROM weft_log WHERE doc = $1 ORDER BY id",
            &[&name.as_str()],
        )
        .await?;
    let log = rows
        .into_iter()
        .map(|row| LogEntry {
            seq: row.get::<_, i64>(0) as u64,
            update: Bytes::from(row.get::<_, Vec<u8>>(1)),
        })
        .collect();
    Ok((snapshot.map(Bytes::from), log))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Folds snapshots and updates into one snapshot, by applying them to a fresh document.
/// Damaged records are logged and left out (they could not be loaded either).
fn fold(name: &DocName, records: StoredDoc) -> Vec<u8> {
    let doc = Doc::new();
    for damage in recovery::rebuild_into(&doc, &records) {
        tracing::error!(doc = %name, record = %damage.record, reason = %damage.reason,
            "damaged record left out of the compacted snapshot");
    }
    let txn = doc.transact();
    txn.encode_state_as_update_v1(&StateVector::default())
}

#[async_trait]
impl DocStore for PostgresStore {
    async fn load(&self, name: &DocName) -> Result<StoredDoc, StoreError> {
        let mut client = self.pool.get().await?;
        // One snapshot of the database for both reads, so a compaction committing in between
        // cannot hide log entries from us.
        let txn = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let (snapshot, log) = read_records(&txn, name, false).await?;
        txn.commit().await?;
        let next_seq = log.last().map_or(0, |e| e.seq + 1);
        Ok(StoredDoc {
            snapshot,
            log,
            next_seq,
        })
    }

    async fn append(
        &self,
        name: &DocName,
        _first_seq: u64,
        updates: Vec<Bytes>,
    ) -> Result<(), StoreError> {
        let (done, result) = oneshot::channel();
        self.writer
            .send(AppendJob {
                name: name.clone(),
                updates,
                done,
            })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        result.await.map_err(|_| StoreError::WriterGone)?
    }

    async fn compact(
        &self,
        name: &DocName,
        snapshot: Vec<u8>,
        _next_seq: u64,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let locked: bool = txn
            .query_one(
                "SELECT pg_try_advisory_xact_lock(hashtextextended('weft-compact:' || $1, 0))",
                &[&name.as_str()],
            )
            .await?
            .get(0);
        if !locked {
            tracing::debug!(doc = %name, "another node is compacting this document; skipped");
            return Ok(());
        }
        let (stored, entries) = read_records(&txn, name, true).await?;
        let ids: Vec<i64> = entries.iter().map(|e| e.seq as i64).collect();
        let mut log = vec![LogEntry {
            seq: 0,
            update: Bytes::from(snapshot),
        }];
        log.extend(entries);
        let records = StoredDoc {
            snapshot: stored,
            log,
            next_seq: 0,
        };
        let doc_name = name.clone();
        let folded = tokio::task::spawn_blocking(move || fold(&doc_name, records))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?;
        txn.execute(
            "INSERT INTO weft_docs (name, snapshot, updated_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET snapshot = EXCLUDED.snapshot,
                 updated_at_ms = EXCLUDED.updated_at_ms",
            &[&name.as_str(), &folded, &now_ms()],
        )
        .await?;
        // Exactly the entries folded in: one committed meanwhile by another node stays.
        txn.execute("DELETE FROM weft_log WHERE id = ANY($1)", &[&ids])
            .await?;
        txn.commit().await?;
        Ok(())
    }

    async fn create(&self, name: &DocName) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let inserted = client
            .execute(
                "INSERT INTO weft_docs (name, updated_at_ms)
                 SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM weft_log WHERE doc = $1)
                 ON CONFLICT (name) DO NOTHING",
                &[&name.as_str(), &now_ms()],
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn exists(&self, name: &DocName) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM weft_docs WHERE name = $1)
                     OR EXISTS (SELECT 1 FROM weft_log WHERE doc = $1)",
                &[&name.as_str()],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn delete(&self, name: &DocName) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let log = txn
            .execute("DELETE FROM weft_log WHERE doc = $1", &[&name.as_str()])
            .await?;
        let docs = txn
            .execute("DELETE FROM weft_docs WHERE name = $1", &[&name.as_str()])
            .await?;
        txn.commit().await?;
        Ok(log + docs > 0)
    }

    async fn list(&self) -> Result<Vec<DocInfo>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT d.name,
                        COALESCE(octet_length(d.snapshot), 0)
                            + COALESCE((SELECT sum(octet_length(l.update)) FROM weft_log l
                                        WHERE l.doc = d.name), 0)::BIGINT,
                        d.updated_at_ms
                 FROM weft_docs d ORDER BY d.name",
                &[],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| DocInfo {
                name: row.get(0),
                size_bytes: row.get::<_, i64>(1).max(0) as u64,
                updated_at_ms: row.get::<_, i64>(2).max(0) as u64,
            })
            .collect())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every commit is already durable; this checks the database still answers (readiness).
        let client = self.pool.get().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }
}
