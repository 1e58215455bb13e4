//! Group commit: one task takes every append waiting and commits them in one transaction.
//!
//! Positions come from each document's row: the transaction first bumps `next_seq` of every
//! document it appends to (`INSERT ... ON CONFLICT DO UPDATE`, which locks the row until the
//! commit, in name order so that nodes appending to the same documents cannot deadlock), then
//! writes the records at the positions it reserved. Two nodes appending to one document
//! therefore commit in the order of their positions, which is the store contract's prefix rule.

use std::collections::HashMap;

use bytes::Bytes;
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};
use weft_crdt::store::{LogPos, StoreError};
use weft_crdt::DocName;

use crate::support::{now_ms, postgres_error};

/// Most appends committed in one transaction.
const MAX_GROUP: usize = 1024;

/// One append waiting for its commit.
pub(crate) struct AppendJob {
    pub name: DocName,
    pub records: Vec<Bytes>,
    /// Answered with the position after the job's last record.
    pub done: oneshot::Sender<Result<LogPos, StoreError>>,
}

/// The writer task: commits every append waiting in the queue in one transaction.
pub(crate) async fn write_loop(pool: Pool, mut jobs: mpsc::Receiver<AppendJob>) {
    let mut group = Vec::with_capacity(64);
    while jobs.recv_many(&mut group, MAX_GROUP).await > 0 {
        let answers: Vec<Result<LogPos, StoreError>> = match commit_group(&pool, &group).await {
            Ok(ends) => ends,
            Err(error) => {
                tracing::error!(%error, appends = group.len(), "PostgreSQL append failed");
                let reason = error.to_string();
                group
                    .iter()
                    .map(|_| Err(StoreError::Unavailable(reason.clone())))
                    .collect()
            }
        };
        for (job, answer) in group.drain(..).zip(answers) {
            let _ = job.done.send(answer);
        }
    }
}

/// Commits a group; the position after each job's last record (or why that job was refused),
/// in job order.
async fn commit_group(
    pool: &Pool,
    group: &[AppendJob],
) -> Result<Vec<Result<LogPos, StoreError>>, StoreError> {
    // Records per document, documents in name order (the row-lock order).
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for job in group {
        *counts.entry(job.name.as_str()).or_default() += job.records.len() as i64;
    }
    let mut names: Vec<&str> = counts.keys().copied().collect();
    names.sort_unstable();
    let added: Vec<i64> = names.iter().map(|n| counts[n]).collect();

    let mut client = pool.get().await.map_err(postgres_error)?;
    let txn = client.transaction().await.map_err(postgres_error)?;
    let rows = txn
        .query(
            "INSERT INTO weft_docs (name, next_seq, updated_at_ms)
             SELECT n, c, $3 FROM UNNEST($1::text[], $2::bigint[]) AS t(n, c) ORDER BY n
             ON CONFLICT (name) DO UPDATE
                 SET next_seq = weft_docs.next_seq + EXCLUDED.next_seq,
                     updated_at_ms = EXCLUDED.updated_at_ms
                 WHERE NOT weft_docs.deleted
             RETURNING name, next_seq",
            &[&names, &added, &now_ms()],
        )
        .await
        .map_err(postgres_error)?;
    // The first position reserved for each document (a deleted one gets none: its tombstone
    // refuses the append).
    let mut next: HashMap<String, i64> = HashMap::with_capacity(rows.len());
    for row in rows {
        let name: String = row.get(0);
        let end: i64 = row.get(1);
        let first = end - counts.get(name.as_str()).copied().unwrap_or(0);
        next.insert(name, first);
    }
    let mut docs: Vec<&str> = Vec::new();
    let mut seqs: Vec<i64> = Vec::new();
    let mut updates: Vec<&[u8]> = Vec::new();
    let mut ends = Vec::with_capacity(group.len());
    for job in group {
        let Some(pos) = next.get_mut(job.name.as_str()) else {
            ends.push(Err(StoreError::Deleted(job.name.to_string())));
            continue;
        };
        for record in &job.records {
            docs.push(job.name.as_str());
            seqs.push(*pos);
            updates.push(record);
            *pos += 1;
        }
        ends.push(Ok(*pos as LogPos));
    }
    txn.execute(
        "INSERT INTO weft_log (doc, seq, update)
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bytea[])",
        &[&docs, &seqs, &updates],
    )
    .await
    .map_err(postgres_error)?;
    txn.commit().await.map_err(postgres_error)?;
    Ok(ends)
}
