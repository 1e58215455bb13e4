//! The edit that brings a version back: applied to the live document, it makes its content
//! equal to the version's, as a new change on top (nothing stored is rewritten, so a restore
//! can itself be undone by restoring the version kept just before it).
//!
//! How: a scratch document holds the version; everything the live document has since is
//! applied to it as one tracked transaction, and a `yrs::UndoManager` undoes that transaction.
//! The undo's own edits (new blocks under the scratch document's client id, and deletions) are
//! exactly the revert, whatever the shared types (text, maps, XML for rich-text editors).

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use std::collections::BTreeMap;
use yrs::undo::{Options as UndoOptions, UndoManager};
use yrs::updates::decoder::Decode;

use yrs::{
    Any, Array, ArrayRef, ClientID, Doc, Map, MapRef, Options, Out, ReadTxn, Transact, Update,
};

use super::read::{apply, HistoryError};

/// The origin of the transaction the undo manager tracks.
const TRACKED: &str = "weft-restore";

/// An update that, applied to a document whose state is `current` (one update holding the
/// whole state) and whose root types are named `roots`, makes its content equal to `version`'s.
/// `None` if they are equal already. `client_id` is the Yjs client the new blocks are written
/// under (the server binds it to whoever restores).
pub fn revert_update(
    version: &[u8],
    current: &[u8],
    roots: &[String],
    client_id: ClientID,
) -> Result<Option<Bytes>, HistoryError> {
    catch_unwind(AssertUnwindSafe(|| {
        revert(version, current, roots, client_id)
    }))
    .map_err(|_| HistoryError::Unreadable("yrs panicked while restoring".into()))?
}

fn revert(
    version: &[u8],
    current: &[u8],
    roots: &[String],
    client_id: ClientID,
) -> Result<Option<Bytes>, HistoryError> {
    let doc = Doc::with_options(Options {
        client_id,
        skip_gc: true,
        ..Options::default()
    });
    apply(&doc, version)?;
    // The undo manager only sees changes to typed roots (an untyped root, as a document built
    // from updates has, reports no change): type every root the version or the live document
    // has, by what it holds, before the tracked transaction.
    let live = Doc::new();
    apply(&live, current)?;
    let mut kinds = root_kinds(&live);
    for (name, kind) in root_kinds(&doc) {
        kinds.entry(name).or_insert(kind);
    }
    for name in roots {
        kinds.entry(name.clone()).or_insert(Kind::Map);
    }
    let mut undo: UndoManager<()> = UndoManager::with_options(UndoOptions {
        capture_timeout_millis: 0,
        ..UndoOptions::default()
    });
    for (name, kind) in &kinds {
        let name = name.as_str();
        match kind {
            Kind::Text => undo.expand_scope(&doc, &doc.get_or_insert_text(name)),
            Kind::Map => undo.expand_scope(&doc, &doc.get_or_insert_map(name)),
            Kind::Array => undo.expand_scope(&doc, &doc.get_or_insert_array(name)),
            Kind::Xml => undo.expand_scope(&doc, &doc.get_or_insert_xml_fragment(name)),
        }
    }
    undo.include_origin(TRACKED);
    let current_update =
        Update::decode_v1(current).map_err(|e| HistoryError::Unreadable(e.to_string()))?;
    let current_sv = current_update.state_vector();
    {
        let mut txn = doc.transact_mut_with(TRACKED);
        txn.apply_update(current_update)
            .map_err(|e| HistoryError::Unreadable(e.to_string()))?;
    }
    if !undo.undo_blocking() {
        return Ok(None); // The live document adds nothing to the version.
    }
    let revert = doc.transact().encode_diff_v1(&current_sv);
    Ok(Some(Bytes::from(revert)))
}

/// What a root type holds, as far as restoring it is concerned.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Map,
    Array,
    Xml,
}

/// Each root of `doc` and its kind, inferred from its content (as `/json` renders it).
fn root_kinds(doc: &Doc) -> BTreeMap<String, Kind> {
    let txn = doc.transact();
    let mut kinds = BTreeMap::new();
    for (name, out) in txn.root_refs() {
        let kind = match out {
            Out::YText(_) => Kind::Text,
            Out::YMap(_) => Kind::Map,
            Out::YArray(_) => Kind::Array,
            Out::YXmlFragment(_) | Out::YXmlElement(_) | Out::YXmlText(_) => Kind::Xml,
            Out::UndefinedRef(branch) => {
                if MapRef::from(branch).len(&txn) > 0 {
                    Kind::Map
                } else {
                    let items: Vec<Out> = ArrayRef::from(branch).iter(&txn).collect();
                    if items.is_empty() {
                        continue; // Nothing tells; the other document may.
                    } else if items.iter().all(|v| matches!(v, Out::Any(Any::String(_)))) {
                        Kind::Text
                    } else if items
                        .iter()
                        .any(|v| matches!(v, Out::YXmlElement(_) | Out::YXmlText(_)))
                    {
                        Kind::Xml
                    } else {
                        Kind::Array
                    }
                }
            }
            _ => continue,
        };
        kinds.insert(name.to_string(), kind);
    }
    kinds
}

#[cfg(test)]
mod tests {
    use yrs::{GetString, Text, WriteTxn};

    use super::*;

    fn state(doc: &Doc) -> Vec<u8> {
        doc.transact()
            .encode_state_as_update_v1(&yrs::StateVector::default())
    }

    #[test]
    fn reverting_brings_the_version_back_as_a_new_edit() {
        let live = Doc::with_client_id(1);
        let text = live.get_or_insert_text("text");
        text.insert(&mut live.transact_mut(), 0, "Hello");
        let version = state(&live);
        text.insert(&mut live.transact_mut(), 5, " world");
        text.remove_range(&mut live.transact_mut(), 0, 1);
        assert_eq!(text.get_string(&live.transact()), "ello world");
        let roots = vec!["text".to_string()];
        let revert = revert_update(&version, &state(&live), &roots, ClientID::new(9))
            .unwrap()
            .expect("a revert");
        live.transact_mut()
            .apply_update(Update::decode_v1(&revert).unwrap())
            .unwrap();
        assert_eq!(text.get_string(&live.transact()), "Hello");
        // Nothing to revert when equal.
        let same = state(&live);
        let none = revert_update(&same, &same, &roots, ClientID::new(10)).unwrap();
        assert!(none.is_none());
        let _ = live.transact_mut().get_or_insert_text("unused");
    }
}
