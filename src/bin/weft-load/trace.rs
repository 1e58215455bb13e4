//! Replaying a real editing trace (the automerge-paper format: `txns[].patches[] = [pos, del,
//! ins]`, gzipped JSON) into a yrs document; shared by `weft-load --seed-trace` and the criterion
//! benches.

use std::io::Read as _;
use std::path::Path;

use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact};

/// Replays the trace at `path` into a fresh document (text type `text`) and returns its whole
/// state as one v1 update. Checks the result against the trace's `endContent`.
pub fn replay_trace(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut json = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut json)
        .map_err(|e| format!("gunzip {}: {e}", path.display()))?;
    let trace: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| format!("trace JSON: {e}"))?;
    let doc = Doc::new();
    let text = doc.get_or_insert_text("text");
    {
        let mut txn = doc.transact_mut();
        let txns = trace["txns"].as_array().ok_or("trace has no txns")?;
        for t in txns {
            for patch in t["patches"].as_array().ok_or("txn has no patches")? {
                let pos = patch[0].as_u64().unwrap_or(0) as u32;
                let del = patch[1].as_u64().unwrap_or(0) as u32;
                let ins = patch[2].as_str().unwrap_or("");
                if del > 0 {
                    text.remove_range(&mut txn, pos, del);
                }
                if !ins.is_empty() {
                    text.insert(&mut txn, pos, ins);
                }
            }
        }
    }
    let expected = trace["endContent"].as_str().unwrap_or("").chars().count();
    let txn = doc.transact();
    let got = text.get_string(&txn).chars().count();
    if got != expected {
        return Err(format!(
            "replay produced {got} characters, the trace says {expected}"
        ));
    }
    Ok(txn.encode_state_as_update_v1(&StateVector::default()))
}
