//! The schema, created or migrated at start-up under an advisory lock (nodes starting together
//! do not race):
//!
//! - `weft_docs (name TEXT PRIMARY KEY, snapshot BYTEA, snapshot_upto BIGINT, next_seq BIGINT,
//!   updated_at_ms BIGINT, deleted BOOLEAN)`: one row per document; `next_seq` is the position
//!   its next log record gets, `snapshot_upto` the position the snapshot covers up to; a deleted
//!   document keeps its row as a tombstone (`deleted`, nothing else stored).
//! - `weft_log (doc TEXT, seq BIGINT, update BYTEA, PRIMARY KEY (doc, seq))`.
//! - `weft_versions (doc TEXT, seq BIGINT, meta BYTEA, data BYTEA, PRIMARY KEY (doc, seq))`:
//!   a document's versions (see `versions`).
//! - `weft_schema (version INTEGER)`.
//!
//! Version 1 (before positions were per document) kept `weft_log (id BIGSERIAL, doc, update)`
//! ordered by `id`; migrating numbers each document's records 0, 1, ... in `id` order.
//! Version 2 had no `weft_versions`; migrating adds it, empty. Migrations run in order, each in
//! the one transaction, so a database is at one version or the next, never in between.

use deadpool_postgres::Pool;
use weft_crdt::store::StoreError;

use crate::support::postgres_error;

/// Schema version this build writes.
pub(crate) const SCHEMA_VERSION: i32 = 3;

/// Advisory lock key held while migrating (any constant shared by all nodes).
const MIGRATION_LOCK: i64 = 0x5746_5453_4348_454d;

const CREATE: &str = "
    CREATE TABLE weft_docs (
        name TEXT PRIMARY KEY,
        snapshot BYTEA,
        snapshot_upto BIGINT NOT NULL DEFAULT 0,
        next_seq BIGINT NOT NULL DEFAULT 0,
        updated_at_ms BIGINT NOT NULL DEFAULT 0,
        deleted BOOLEAN NOT NULL DEFAULT false
    );
    CREATE TABLE weft_log (
        doc TEXT NOT NULL,
        seq BIGINT NOT NULL,
        update BYTEA NOT NULL,
        PRIMARY KEY (doc, seq)
    );
    CREATE TABLE weft_versions (
        doc TEXT NOT NULL,
        seq BIGINT NOT NULL,
        meta BYTEA NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (doc, seq)
    );";

const FROM_V1: &str = "
    ALTER TABLE weft_docs
        ADD COLUMN snapshot_upto BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN next_seq BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN deleted BOOLEAN NOT NULL DEFAULT false;
    ALTER TABLE weft_log ADD COLUMN seq BIGINT;
    UPDATE weft_log l SET seq = r.n
        FROM (SELECT id, row_number() OVER (PARTITION BY doc ORDER BY id) - 1 AS n
              FROM weft_log) r
        WHERE l.id = r.id;
    INSERT INTO weft_docs (name) SELECT DISTINCT doc FROM weft_log ON CONFLICT DO NOTHING;
    UPDATE weft_docs d SET next_seq =
        COALESCE((SELECT max(seq) + 1 FROM weft_log WHERE doc = d.name), 0);
    DROP INDEX IF EXISTS weft_log_doc_id;
    ALTER TABLE weft_log DROP CONSTRAINT weft_log_pkey;
    ALTER TABLE weft_log DROP COLUMN id;
    ALTER TABLE weft_log ALTER COLUMN seq SET NOT NULL;
    ALTER TABLE weft_log ADD PRIMARY KEY (doc, seq);";

const FROM_V2: &str = "
    CREATE TABLE IF NOT EXISTS weft_versions (
        doc TEXT NOT NULL,
        seq BIGINT NOT NULL,
        meta BYTEA NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (doc, seq)
    );";

/// Creates the tables if missing, or migrates older ones, and records the schema version.
pub(crate) async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(postgres_error)?;
    let txn = client.transaction().await.map_err(postgres_error)?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(postgres_error)?;
    txn.batch_execute("CREATE TABLE IF NOT EXISTS weft_schema (version INTEGER NOT NULL)")
        .await
        .map_err(postgres_error)?;
    let current: Option<i32> = txn
        .query_opt("SELECT max(version) FROM weft_schema", &[])
        .await
        .map_err(postgres_error)?
        .and_then(|row| row.get(0));
    let existing: bool = txn
        .query_one("SELECT to_regclass('weft_docs') IS NOT NULL", &[])
        .await
        .map_err(postgres_error)?
        .get(0);
    match (current, existing) {
        (Some(version), _) if version > SCHEMA_VERSION => {
            return Err(StoreError::Other(format!(
                "the database has schema version {version}; this build knows up to {SCHEMA_VERSION}"
            )));
        }
        (Some(SCHEMA_VERSION), _) => {}
        (_, false) => txn.batch_execute(CREATE).await.map_err(postgres_error)?,
        (Some(2), true) => {
            tracing::info!("migrating the PostgreSQL schema from version 2 to {SCHEMA_VERSION}");
            txn.batch_execute(FROM_V2).await.map_err(postgres_error)?;
        }
        // Version 1 (recorded, or its tables without a version row).
        (_, true) => {
            tracing::info!("migrating the PostgreSQL schema from version 1 to {SCHEMA_VERSION}");
            txn.batch_execute(FROM_V1).await.map_err(postgres_error)?;
            txn.batch_execute(FROM_V2).await.map_err(postgres_error)?;
        }
    }
    if current != Some(SCHEMA_VERSION) {
        txn.execute("DELETE FROM weft_schema", &[])
            .await
            .map_err(postgres_error)?;
        txn.execute(
            "INSERT INTO weft_schema (version) VALUES ($1)",
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(postgres_error)?;
    }
    txn.commit().await.map_err(postgres_error)?;
    Ok(())
}
