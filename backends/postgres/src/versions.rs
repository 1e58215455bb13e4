//! A document's versions in PostgreSQL: the `weft_versions (doc, seq, meta, data)` table (see
//! `schema`), listing them, reading their `data`, and the two version writes.
//!
//! A write first takes the document's row the way an append does (`INSERT ... ON CONFLICT DO
//! UPDATE ... WHERE NOT deleted`, which creates it if missing and locks it until the commit), in
//! the same transaction as the version rows: a deletion, which locks that row too, either
//! commits first (the write sees the tombstone and is refused) or waits and then removes what the
//! write committed. Two nodes keeping the same number meet at the primary key: the second insert
//! does nothing, and says so.

use bytes::Bytes;
use deadpool_postgres::{Pool, Transaction};
use weft_crdt::store::{StoreError, VersionRecord, VersionSeq};
use weft_crdt::DocName;

use crate::support::{now_ms, postgres_error};

/// A version number as stored (`BIGINT`).
fn to_db(seq: VersionSeq) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Other(format!("version number {seq} out of range")))
}

/// A stored version number.
fn from_db(doc: &DocName, seq: i64) -> Result<VersionSeq, StoreError> {
    VersionSeq::try_from(seq).map_err(|_| StoreError::Corrupt {
        doc: doc.to_string(),
        reason: format!("negative version number {seq}"),
    })
}

/// Takes the document's row for this transaction (created if missing), or `Deleted`.
async fn lock_live(txn: &Transaction<'_>, doc: &DocName) -> Result<(), StoreError> {
    let live = txn
        .query_opt(
            "INSERT INTO weft_docs (name, updated_at_ms) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET deleted = false WHERE NOT weft_docs.deleted
             RETURNING name",
            &[&doc.as_str(), &now_ms()],
        )
        .await
        .map_err(postgres_error)?;
    match live {
        Some(_) => Ok(()),
        None => Err(StoreError::Deleted(doc.to_string())),
    }
}

/// Keeps `record` unless its number is taken (false); a deleted document refuses.
pub(crate) async fn add(
    pool: &Pool,
    doc: &DocName,
    record: VersionRecord,
) -> Result<bool, StoreError> {
    let seq = to_db(record.seq)?;
    let mut client = pool.get().await.map_err(postgres_error)?;
    let txn = client.transaction().await.map_err(postgres_error)?;
    lock_live(&txn, doc).await?;
    let inserted = txn
        .execute(
            "INSERT INTO weft_versions (doc, seq, meta, data) VALUES ($1, $2, $3, $4)
             ON CONFLICT (doc, seq) DO NOTHING",
            &[&doc.as_str(), &seq, &&record.meta[..], &&record.data[..]],
        )
        .await
        .map_err(postgres_error)?;
    txn.commit().await.map_err(postgres_error)?;
    Ok(inserted == 1)
}

/// Every version's number and `meta`, in number order (`data` is not read).
pub(crate) async fn list(
    pool: &Pool,
    doc: &DocName,
) -> Result<Vec<(VersionSeq, Bytes)>, StoreError> {
    let client = pool.get().await.map_err(postgres_error)?;
    let rows = client
        .query(
            "SELECT seq, meta FROM weft_versions WHERE doc = $1 ORDER BY seq",
            &[&doc.as_str()],
        )
        .await
        .map_err(postgres_error)?;
    numbered(doc, rows)
}

/// Rows of (seq, bytes) as the contract answers them.
fn numbered(
    doc: &DocName,
    rows: Vec<tokio_postgres::Row>,
) -> Result<Vec<(VersionSeq, Bytes)>, StoreError> {
    rows.into_iter()
        .map(|row| {
            Ok((
                from_db(doc, row.get(0))?,
                Bytes::from(row.get::<_, Vec<u8>>(1)),
            ))
        })
        .collect()
}

/// The `data` of the versions numbered `from..=to` that exist, in number order.
pub(crate) async fn data(
    pool: &Pool,
    doc: &DocName,
    from: VersionSeq,
    to: VersionSeq,
) -> Result<Vec<(VersionSeq, Bytes)>, StoreError> {
    // Numbers beyond BIGINT cannot be stored, so a range reaching past it ends there.
    let Ok(from) = i64::try_from(from) else {
        return Ok(Vec::new());
    };
    let to = i64::try_from(to).unwrap_or(i64::MAX);
    if from > to {
        return Ok(Vec::new());
    }
    let client = pool.get().await.map_err(postgres_error)?;
    let rows = client
        .query(
            "SELECT seq, data FROM weft_versions WHERE doc = $1 AND seq BETWEEN $2 AND $3
             ORDER BY seq",
            &[&doc.as_str(), &from, &to],
        )
        .await
        .map_err(postgres_error)?;
    numbered(doc, rows)
}

/// Removes the versions numbered in `drop` and stores `put`, in one transaction; a deleted
/// document refuses.
pub(crate) async fn rewrite(
    pool: &Pool,
    doc: &DocName,
    drop: &[VersionSeq],
    put: Vec<VersionRecord>,
) -> Result<(), StoreError> {
    // Numbers beyond BIGINT were never stored: nothing to drop there.
    let drop: Vec<i64> = drop
        .iter()
        .filter_map(|&seq| i64::try_from(seq).ok())
        .collect();
    // Of two puts of one number the last wins (one statement cannot write a row twice).
    let mut latest = std::collections::BTreeMap::new();
    for record in put {
        latest.insert(to_db(record.seq)?, record);
    }
    let seqs: Vec<i64> = latest.keys().copied().collect();
    let metas: Vec<&[u8]> = latest.values().map(|r| &r.meta[..]).collect();
    let datas: Vec<&[u8]> = latest.values().map(|r| &r.data[..]).collect();

    let mut client = pool.get().await.map_err(postgres_error)?;
    let txn = client.transaction().await.map_err(postgres_error)?;
    lock_live(&txn, doc).await?;
    if !drop.is_empty() {
        txn.execute(
            "DELETE FROM weft_versions WHERE doc = $1 AND seq = ANY($2)",
            &[&doc.as_str(), &drop],
        )
        .await
        .map_err(postgres_error)?;
    }
    if !seqs.is_empty() {
        txn.execute(
            "INSERT INTO weft_versions (doc, seq, meta, data)
             SELECT $1, * FROM UNNEST($2::bigint[], $3::bytea[], $4::bytea[])
             ON CONFLICT (doc, seq) DO UPDATE SET meta = EXCLUDED.meta, data = EXCLUDED.data",
            &[&doc.as_str(), &seqs, &metas, &datas],
        )
        .await
        .map_err(postgres_error)?;
    }
    txn.commit().await.map_err(postgres_error)?;
    Ok(())
}
