//! A document's versions in the sled store: listing them, reading their `data`, and the two
//! version writes the writer thread applies (`add_version`, `rewrite_versions`).
//!
//! A version is two keys in the `docs` tree (see `keys`): its `meta` under tag 2 and its `data`
//! under tag 3, both followed by the number, so listing scans only the `meta` keys and reading
//! `data` is one range. Both are under the document's prefix: deleting the document removes
//! them in the same batch as its records (`Writer::remove_data`), and re-creating a deleted one
//! removes whatever was left.

use bytes::Bytes;
use sled::transaction::{abort, TransactionError};
use sled::Transactional;
use weft_crdt::store::{StoreError, VersionRecord, VersionSeq};
use weft_crdt::DocName;

use crate::keys::{
    encode_meta, now_ms, sled_error, version_data_key, version_data_prefix, version_meta_key,
    version_meta_prefix, version_seq, Trees,
};

/// A failed transaction as the store contract names it.
fn transaction_error(error: TransactionError<StoreError>) -> StoreError {
    match error {
        TransactionError::Abort(error) => error,
        TransactionError::Storage(error) => sled_error(error),
    }
}

impl Trees {
    /// Every version's number and `meta`, in number order (no `data` is read).
    pub fn versions(&self, name: &DocName) -> Result<Vec<(VersionSeq, Bytes)>, StoreError> {
        let prefix = version_meta_prefix(name);
        self.docs
            .scan_prefix(&prefix)
            .map(|item| {
                let (key, meta) = item.map_err(sled_error)?;
                Ok((
                    version_seq(name, &prefix, &key)?,
                    Bytes::copy_from_slice(&meta),
                ))
            })
            .collect()
    }

    /// The `data` of the versions numbered `from..=to` that exist, in number order.
    pub fn version_data(
        &self,
        name: &DocName,
        from: VersionSeq,
        to: VersionSeq,
    ) -> Result<Vec<(VersionSeq, Bytes)>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        let prefix = version_data_prefix(name);
        self.docs
            .range(version_data_key(name, from)..=version_data_key(name, to))
            .map(|item| {
                let (key, data) = item.map_err(sled_error)?;
                Ok((
                    version_seq(name, &prefix, &key)?,
                    Bytes::copy_from_slice(&data),
                ))
            })
            .collect()
    }

    /// Keeps `record` unless its number is taken (false, nothing changes); a deleted document
    /// refuses. One transaction reads the tombstone and the number's `meta` key and writes both
    /// keys (and a listing entry for a document that had none), so nothing can come between
    /// the checks and the write.
    pub fn add_version(&self, name: &DocName, record: &VersionRecord) -> Result<bool, StoreError> {
        let meta_key = version_meta_key(name, record.seq);
        let data_key = version_data_key(name, record.seq);
        let listing = encode_meta(now_ms(), 0);
        (&self.docs, &self.meta, &self.tombstones)
            .transaction(|(docs, meta, tombstones)| {
                if tombstones.get(name.as_str())?.is_some() {
                    return abort(StoreError::Deleted(name.to_string()));
                }
                if docs.get(&meta_key)?.is_some() {
                    return Ok(false);
                }
                docs.insert(meta_key.as_slice(), record.meta.as_ref())?;
                docs.insert(data_key.as_slice(), record.data.as_ref())?;
                if meta.get(name.as_str())?.is_none() {
                    meta.insert(name.as_str(), &listing[..])?;
                }
                Ok(true)
            })
            .map_err(transaction_error)
    }

    /// Removes the versions numbered in `drop` and stores `put`, in one batch; a deleted
    /// document refuses. As for an append, the tombstone is checked first: only the writer
    /// thread writes, so nothing can delete the document in between.
    pub fn rewrite_versions(
        &self,
        name: &DocName,
        drop: &[VersionSeq],
        put: &[VersionRecord],
    ) -> Result<(), StoreError> {
        self.refuse_deleted(name)?;
        self.ensure_listed(name)?;
        let mut batch = sled::Batch::default();
        for seq in drop {
            batch.remove(version_meta_key(name, *seq));
            batch.remove(version_data_key(name, *seq));
        }
        // A number in both lists ends up stored; of two puts of one number, the last wins.
        for record in put {
            batch.insert(version_meta_key(name, record.seq), record.meta.as_ref());
            batch.insert(version_data_key(name, record.seq), record.data.as_ref());
        }
        self.docs.apply_batch(batch).map_err(sled_error)
    }

    /// Gives a document written only through its versions a listing entry (size 0), as an
    /// append would, so that `list` agrees with `status`; an existing entry is left alone.
    fn ensure_listed(&self, name: &DocName) -> Result<(), StoreError> {
        let listing = encode_meta(now_ms(), 0);
        // Err(current) just means it is listed already.
        let _ = self
            .meta
            .compare_and_swap(name.as_str(), None::<&[u8]>, Some(&listing[..]))
            .map_err(sled_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use weft_crdt::store::{DocStatus, DocStore};

    use super::*;
    use crate::SledStore;

    fn name(s: &str) -> DocName {
        DocName::new(s).expect("valid name")
    }

    fn version(seq: VersionSeq, tag: &str) -> VersionRecord {
        VersionRecord {
            seq,
            meta: Bytes::from(format!("meta-{tag}")),
            data: Bytes::from(format!("data-{tag}")),
        }
    }

    /// A name that extends another (or that another extends) never sees its versions, and
    /// deleting one leaves the others' alone.
    #[tokio::test]
    async fn versions_stay_with_their_document() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path()).expect("open");
        let docs = [name("a"), name("ab"), name("a/b"), name("b")];
        for (i, doc) in docs.iter().enumerate() {
            let tag = doc.as_str();
            assert!(store
                .add_version(doc, version(i as u64, tag))
                .await
                .expect("add"));
            assert!(store.add_version(doc, version(9, tag)).await.expect("add"));
        }
        for (i, doc) in docs.iter().enumerate() {
            let meta = Bytes::from(format!("meta-{doc}"));
            assert_eq!(
                store.versions(doc).await.expect("versions"),
                vec![(i as u64, meta.clone()), (9, meta)]
            );
            let data = Bytes::from(format!("data-{doc}"));
            assert_eq!(
                store.version_data(doc, 0, u64::MAX).await.expect("data"),
                vec![(i as u64, data.clone()), (9, data)]
            );
        }
        assert!(store.delete(&docs[0]).await.expect("delete"));
        assert!(store.versions(&docs[0]).await.expect("versions").is_empty());
        for doc in &docs[1..] {
            assert_eq!(store.versions(doc).await.expect("versions").len(), 2);
        }
    }

    /// A document written only through its versions is listed, with size 0; its versions and
    /// their data survive a restart; rewriting replaces both keys of a number.
    #[tokio::test]
    async fn versions_are_listed_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let doc = name("history-only");
        {
            let store = SledStore::open(dir.path()).expect("open");
            assert!(store.add_version(&doc, version(1, "1")).await.expect("add"));
            assert!(store.add_version(&doc, version(2, "2")).await.expect("add"));
            store
                .rewrite_versions(&doc, &[1], vec![version(2, "2b"), version(5, "5")])
                .await
                .expect("rewrite");
            assert_eq!(store.status(&doc).await.expect("status"), DocStatus::Exists);
            let listed = store.list().await.expect("list");
            assert_eq!(listed.len(), 1);
            assert_eq!(
                (listed[0].name.as_str(), listed[0].size_bytes),
                ("history-only", 0)
            );
            assert!(store.load(&doc).await.expect("load").is_empty());
        }
        let store = loop {
            match SledStore::open(dir.path()) {
                Ok(store) => break store,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        assert_eq!(
            store.versions(&doc).await.expect("versions"),
            vec![
                (2, Bytes::from_static(b"meta-2b")),
                (5, Bytes::from_static(b"meta-5"))
            ]
        );
        assert_eq!(
            store.version_data(&doc, 2, 4).await.expect("data"),
            vec![(2, Bytes::from_static(b"data-2b"))]
        );
    }
}
