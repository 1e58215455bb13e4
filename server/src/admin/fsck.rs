//! `weft fsck`: checks every document of a store and lists the damaged ones.

use weft_crdt::recovery::{self, DocReport};
use weft_crdt::store::StoreError;
use weft_crdt::DocStore;

/// Loads and rebuilds every document; a report per document (damage empty when healthy).
pub async fn check(store: &dyn DocStore) -> Result<Vec<DocReport>, StoreError> {
    recovery::check_store(store).await
}
