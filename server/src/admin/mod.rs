//! Tools that work on a store while no server uses it: `weft fsck`, `weft migrate`,
//! `weft export` and `weft import`.
//!
//! - [`stores`]: naming a store on the command line (`sled:DIR`, `postgres://...`) and opening it.
//! - [`copy`]: one document's whole state out of a store and into another, verified.
//! - [`fsck`]: checking every document of a store.
//! - [`migrate`]: copying every document from one store to another.
//! - [`archive`]: a store to a directory of Yjs update files plus a manifest, and back.

pub mod archive;
pub mod copy;
pub mod fsck;
pub mod migrate;
pub mod stores;
