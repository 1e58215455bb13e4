//! Regression tests for Weft's patch to yrs 0.28.1 (see `../WEFT-PATCH.md`).
//!
//! The inputs were found by `cargo fuzz run session` in Weft. Without the patch, applying the
//! second update reads freed memory: `BlockSet::exclude` split an incoming block that straddled
//! the document's known state, linked the halves to each other, dropped the known half and left
//! the other pointing at it. Memory errors are only reported reliably under AddressSanitizer,
//! which is how `.ci/run` runs this file:
//!
//! ```sh
//! RUSTC_BOOTSTRAP=1 RUSTFLAGS=-Zsanitizer=address \
//!   cargo test --manifest-path vendor/yrs/Cargo.toml --target x86_64-unknown-linux-gnu --test weft_patch
//! ```
//!
//! A plain `cargo test` still checks that the updates apply and converge in either order.
//!
//! The second pair lists one client's blocks twice in one update: the second copy starts below
//! what the store already holds and used to overwrite a live block in `BlockStore::push` (which
//! assumed it was filling a skip), freeing a block its neighbours still pointed to.

use yrs::updates::decoder::Decode;
use yrs::{ClientID, Doc, ReadTxn, StateVector, Transact, Update};

const CLIENT_1: ClientID = ClientID::new(1);

/// Client 1 writes clock 16..25 first (integrated behind a skip: it depends on nothing), then
/// an update covering 0..65 arrives, whose known middle 16..25 is cut out.
const STRADDLING_KNOWN_STATE: [&[u8]; 2] = [
    &[
        2, 2, 65, 251, 0, 1, 255, 154, 1, 1, 1, 1, 0, 59, 1, 1, 16, 1, 1, 1, 1, 9, 1, 1, 1, 1,
        1, 1, 1, 169, 0,
    ],
    &[
        2, 2, 72, 251, 0, 161, 1, 1, 9, 1, 1, 1, 1, 59, 1, 1, 0, 1, 1, 1, 1, 65, 1, 1, 1, 1,
        1, 1, 1, 169, 39,
    ],
];

/// Client 65 appears twice in the second update; its second copy overlaps the first.
const CLIENT_LISTED_TWICE: [&[u8]; 2] = [
    &[
        2, 2, 65, 251, 0, 1, 38, 1, 1, 1, 65, 1, 1, 59, 1, 1, 0, 1, 1, 1, 1, 9, 1, 255, 255, 1, 1,
        1, 1, 169, 0,
    ],
    &[
        2, 2, 65, 251, 0, 1, 38, 1, 1, 1, 65, 1, 1, 59, 1, 65, 0, 1, 1, 1, 1, 9, 1, 1, 1, 1, 1, 1,
        1, 169, 0,
    ],
];

const CLIENT_65: ClientID = ClientID::new(65);

fn apply_in_order(updates: &[&[u8]], order: &[usize]) -> StateVector {
    let doc = Doc::new();
    for &i in order {
        let update = Update::decode_v1(updates[i]).expect("the update decodes");
        doc.transact_mut()
            .apply_update(update)
            .expect("the update applies");
    }
    let txn = doc.transact();
    txn.state_vector()
}

#[test]
fn an_update_straddling_the_known_state_is_trimmed_without_dangling_links() {
    let forward = apply_in_order(&STRADDLING_KNOWN_STATE, &[0, 1]);
    assert_eq!(forward.get(&CLIENT_1), 65, "all of client 1's blocks are integrated");
    let backward = apply_in_order(&STRADDLING_KNOWN_STATE, &[1, 0]);
    assert_eq!(forward, backward, "the same state whatever the order");
}

#[test]
fn the_same_update_applied_twice_changes_nothing() {
    let doc = Doc::new();
    for _ in 0..2 {
        for bytes in STRADDLING_KNOWN_STATE {
            let update = Update::decode_v1(bytes).expect("the update decodes");
            doc.transact_mut()
                .apply_update(update)
                .expect("the update applies");
        }
    }
    let txn = doc.transact();
    assert_eq!(txn.state_vector().get(&CLIENT_1), 65);
}

#[test]
fn blocks_listed_twice_in_one_update_do_not_overwrite_integrated_ones() {
    let forward = apply_in_order(&CLIENT_LISTED_TWICE, &[0, 1]);
    assert_eq!(forward.get(&CLIENT_65), 9);
    let backward = apply_in_order(&CLIENT_LISTED_TWICE, &[1, 0]);
    assert_eq!(forward, backward, "the same state whatever the order");
}
