//! Weft's cluster store: documents in PostgreSQL, shared by every node of a cluster.
//!
//! # Layout
//! - this file: [`PostgresStore`], implementing `weft_crdt::DocStore` (its conformance suite
//!   runs in `tests/conformance.rs`);
//! - `schema`: the tables, created or migrated at start-up;
//! - `support`: error mapping and the clock;
//! - `versions`: a document's versions (listing, reading, keeping and rewriting them);
//! - `writer`: group commit of appends, and how positions are handed out so that several nodes
//!   appending to one document commit in position order.
//!
//! Connections are plain TCP (no TLS): run the database on a private network or a local socket.
//! A commit is durable when it returns (`synchronous_commit`, PostgreSQL's default).

mod schema;
mod support;
mod versions;
mod writer;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{IsolationLevel, NoTls};
use weft_crdt::store::{
    DocInfo, DocStatus, DocStore, LogEntry, LogPos, StoreError, StoredDoc, VersionRecord,
    VersionSeq,
};
use weft_crdt::DocName;

use support::{now_ms, postgres_error};
use writer::{write_loop, AppendJob};

/// PostgreSQL-backed store for cluster mode.
pub struct PostgresStore {
    pool: Pool,
    writer: mpsc::Sender<AppendJob>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`), creates or migrates
    /// the schema, and starts the writer task, opening at most `max_connections` connections.
    pub async fn connect(url: &str, max_connections: usize) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Other(format!("invalid PostgreSQL URL: {e}")))?;
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
            .map_err(|e| StoreError::Other(format!("connection pool: {e}")))?;
        schema::migrate(&pool).await?;
        let (writer, jobs) = mpsc::channel(4096);
        tokio::spawn(write_loop(pool.clone(), jobs));
        Ok(PostgresStore { pool, writer })
    }
}

#[async_trait]
impl DocStore for PostgresStore {
    async fn load(&self, doc: &DocName) -> Result<StoredDoc, StoreError> {
        let mut client = self.pool.get().await.map_err(postgres_error)?;
        // One snapshot of the database for both reads, so a compaction committing in between
        // cannot hide records from us.
        let txn = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(postgres_error)?;
        let row = txn
            .query_opt(
                "SELECT snapshot, next_seq, deleted FROM weft_docs WHERE name = $1",
                &[&doc.as_str()],
            )
            .await
            .map_err(postgres_error)?;
        let Some(row) = row else {
            txn.commit().await.map_err(postgres_error)?;
            return Ok(StoredDoc::default());
        };
        if row.get::<_, bool>(2) {
            return Err(StoreError::Deleted(doc.to_string()));
        }
        let snapshot: Option<Vec<u8>> = row.get(0);
        let next_seq: i64 = row.get(1);
        let rows = txn
            .query(
                "SELECT seq, update FROM weft_log WHERE doc = $1 ORDER BY seq",
                &[&doc.as_str()],
            )
            .await
            .map_err(postgres_error)?;
        txn.commit().await.map_err(postgres_error)?;
        let log: Vec<LogEntry> = rows
            .into_iter()
            .map(|row| LogEntry {
                pos: row.get::<_, i64>(0).max(0) as u64,
                update: Bytes::from(row.get::<_, Vec<u8>>(1)),
            })
            .collect();
        let after_log = log.last().map_or(0, |e| e.pos + 1);
        Ok(StoredDoc {
            snapshot: snapshot.map(Bytes::from),
            log,
            next_pos: (next_seq.max(0) as u64).max(after_log),
        })
    }

    async fn append(&self, doc: &DocName, records: Vec<Bytes>) -> Result<LogPos, StoreError> {
        let gone = || StoreError::Unavailable("the PostgreSQL writer has stopped".into());
        let (done, result) = oneshot::channel();
        self.writer
            .send(AppendJob {
                name: doc.clone(),
                records,
                done,
            })
            .await
            .map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }

    async fn compact(
        &self,
        doc: &DocName,
        snapshot: Bytes,
        upto: LogPos,
    ) -> Result<(), StoreError> {
        let upto = i64::try_from(upto)
            .map_err(|_| StoreError::Other(format!("log position {upto} out of range")))?;
        let mut client = self.pool.get().await.map_err(postgres_error)?;
        let txn = client.transaction().await.map_err(postgres_error)?;
        // The row lock also holds this document's appends back until the commit.
        let current = txn
            .query_opt(
                "SELECT snapshot IS NOT NULL, snapshot_upto, deleted FROM weft_docs
                 WHERE name = $1 FOR UPDATE",
                &[&doc.as_str()],
            )
            .await
            .map_err(postgres_error)?;
        if let Some(row) = &current {
            let (has_snapshot, stored_upto): (bool, i64) = (row.get(0), row.get(1));
            if row.get::<_, bool>(2) {
                return Err(StoreError::Deleted(doc.to_string()));
            }
            if has_snapshot && stored_upto >= upto {
                // Another node compacted further already.
                return Ok(());
            }
        }
        txn.execute(
            "INSERT INTO weft_docs (name, snapshot, snapshot_upto, next_seq, updated_at_ms)
             VALUES ($1, $2, $3, $3, $4)
             ON CONFLICT (name) DO UPDATE SET snapshot = EXCLUDED.snapshot,
                 snapshot_upto = EXCLUDED.snapshot_upto,
                 next_seq = GREATEST(weft_docs.next_seq, EXCLUDED.next_seq),
                 updated_at_ms = EXCLUDED.updated_at_ms",
            &[&doc.as_str(), &&snapshot[..], &upto, &now_ms()],
        )
        .await
        .map_err(postgres_error)?;
        txn.execute(
            "DELETE FROM weft_log WHERE doc = $1 AND seq < $2",
            &[&doc.as_str(), &upto],
        )
        .await
        .map_err(postgres_error)?;
        txn.commit().await.map_err(postgres_error)?;
        Ok(())
    }

    async fn create(&self, doc: &DocName) -> Result<bool, StoreError> {
        let client = self.pool.get().await.map_err(postgres_error)?;
        // Deleting removed the versions already; clearing them again in the same statement
        // makes sure a document created again starts without history even if a node of an
        // older build (which knows no versions) deleted it.
        let created: i64 = client
            .query_one(
                "WITH created AS (
                     INSERT INTO weft_docs (name, updated_at_ms) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET deleted = false,
                         updated_at_ms = EXCLUDED.updated_at_ms
                     WHERE weft_docs.deleted
                     RETURNING name
                 ), cleared AS (
                     DELETE FROM weft_versions WHERE doc IN (SELECT name FROM created)
                 )
                 SELECT count(*) FROM created",
                &[&doc.as_str(), &now_ms()],
            )
            .await
            .map_err(postgres_error)?
            .get(0);
        Ok(created == 1)
    }

    async fn status(&self, doc: &DocName) -> Result<DocStatus, StoreError> {
        let client = self.pool.get().await.map_err(postgres_error)?;
        let row = client
            .query_opt(
                "SELECT deleted FROM weft_docs WHERE name = $1",
                &[&doc.as_str()],
            )
            .await
            .map_err(postgres_error)?;
        Ok(match row.map(|row| row.get::<_, bool>(0)) {
            None => DocStatus::Absent,
            Some(false) => DocStatus::Exists,
            Some(true) => DocStatus::Deleted,
        })
    }

    async fn delete(&self, doc: &DocName) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await.map_err(postgres_error)?;
        let txn = client.transaction().await.map_err(postgres_error)?;
        // The row lock holds this document's appends back; once committed, the tombstone
        // refuses them.
        let existed = txn
            .query_opt(
                "SELECT NOT deleted FROM weft_docs WHERE name = $1 FOR UPDATE",
                &[&doc.as_str()],
            )
            .await
            .map_err(postgres_error)?
            .is_some_and(|row| row.get::<_, bool>(0));
        txn.execute(
            "INSERT INTO weft_docs (name, deleted, updated_at_ms) VALUES ($1, true, $2)
             ON CONFLICT (name) DO UPDATE SET deleted = true, snapshot = NULL,
                 snapshot_upto = 0, next_seq = 0, updated_at_ms = EXCLUDED.updated_at_ms",
            &[&doc.as_str(), &now_ms()],
        )
        .await
        .map_err(postgres_error)?;
        txn.execute("DELETE FROM weft_log WHERE doc = $1", &[&doc.as_str()])
            .await
            .map_err(postgres_error)?;
        txn.execute("DELETE FROM weft_versions WHERE doc = $1", &[&doc.as_str()])
            .await
            .map_err(postgres_error)?;
        txn.commit().await.map_err(postgres_error)?;
        Ok(existed)
    }

    async fn list(&self) -> Result<Vec<DocInfo>, StoreError> {
        let client = self.pool.get().await.map_err(postgres_error)?;
        let rows = client
            .query(
                "SELECT d.name,
                        COALESCE(octet_length(d.snapshot), 0)
                            + COALESCE((SELECT sum(octet_length(l.update)) FROM weft_log l
                                        WHERE l.doc = d.name), 0)::BIGINT,
                        d.updated_at_ms
                 FROM weft_docs d WHERE NOT d.deleted ORDER BY d.name COLLATE \"C\"",
                &[],
            )
            .await
            .map_err(postgres_error)?;
        Ok(rows
            .into_iter()
            .map(|row| DocInfo {
                name: row.get(0),
                size_bytes: row.get::<_, i64>(1).max(0) as u64,
                updated_at_ms: row.get::<_, i64>(2).max(0) as u64,
            })
            .collect())
    }

    async fn deleted(&self) -> Result<Vec<String>, StoreError> {
        let client = self.pool.get().await.map_err(postgres_error)?;
        let rows = client
            .query(
                "SELECT name FROM weft_docs WHERE deleted ORDER BY name COLLATE \"C\"",
                &[],
            )
            .await
            .map_err(postgres_error)?;
        Ok(rows.into_iter().map(|row| row.get(0)).collect())
    }

    async fn add_version(&self, doc: &DocName, record: VersionRecord) -> Result<bool, StoreError> {
        versions::add(&self.pool, doc, record).await
    }

    async fn versions(&self, doc: &DocName) -> Result<Vec<(VersionSeq, Bytes)>, StoreError> {
        versions::list(&self.pool, doc).await
    }

    async fn version_data(
        &self,
        doc: &DocName,
        from: VersionSeq,
        to: VersionSeq,
    ) -> Result<Vec<(VersionSeq, Bytes)>, StoreError> {
        versions::data(&self.pool, doc, from, to).await
    }

    async fn rewrite_versions(
        &self,
        doc: &DocName,
        drop: &[VersionSeq],
        put: Vec<VersionRecord>,
    ) -> Result<(), StoreError> {
        versions::rewrite(&self.pool, doc, drop, put).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(postgres_error)?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(postgres_error)?;
        Ok(())
    }
}
