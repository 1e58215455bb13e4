//! The sled store against the store contract's conformance suite (one database for the run;
//! the suite keeps its documents apart by name).

use std::sync::Arc;

use weft_store_sled::SledStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_meets_the_store_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn weft_crdt::DocStore> = Arc::new(SledStore::open(dir.path()).expect("open"));
    weft_crdt::store::conformance::run(|| {
        let store = store.clone();
        async move { store }
    })
    .await;
}
