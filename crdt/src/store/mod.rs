//! Durable storage of documents: the one contract every backend implements ([`DocStore`]), the
//! in-memory backend, and the conformance suite that holds every backend to the contract.
//!
//! The embedded sled store (`backends/sled`) and the PostgreSQL store (`backends/postgres`) live
//! in crates of their own; a new backend is one more such crate: implement [`DocStore`] in one
//! file and run [`conformance::run`] from its tests.

mod contract;
mod memory;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use contract::{
    DocInfo, DocStatus, DocStore, LogEntry, LogPos, StoreError, StoredDoc, VersionRecord,
    VersionSeq,
};
pub use memory::MemoryStore;
