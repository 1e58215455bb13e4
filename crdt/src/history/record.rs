//! A version as the store keeps it: [`VersionMeta`] (read to list versions; JSON, small) and
//! [`VersionData`] (read to rebuild the version; a compact binary layout), with their
//! encodings. Both decode defensively: the bytes come from disk.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, StateVector, Update};

use crate::store::VersionSeq;

/// What listing a version needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    /// Its number (the store's key; not part of the encoding).
    #[serde(skip)]
    pub seq: VersionSeq,
    /// When it was kept, in milliseconds since the Unix epoch.
    pub at: u64,
    /// Its name, if someone named it (named versions are never dropped).
    pub label: Option<String>,
    /// Who wrote the edits it has and the version before it has not, sorted.
    pub authors: Vec<String>,
    /// Bytes of its data.
    pub size: u64,
    /// The document's state vector at this version, as (client, clock) pairs.
    pub sv: Vec<(ClientID, u32)>,
    /// Whether its data holds the whole state (a chain can start here).
    #[serde(default)]
    pub full: bool,
    /// Elements deleted in the document at this version (deletions only grow: with the state
    /// vector, it tells whether a document holds more than this version).
    #[serde(default)]
    pub deleted: u64,
    /// Client ids first written in this version, and who wrote under them (the server refuses
    /// anyone else writing under them later).
    #[serde(default)]
    pub clients: Vec<(ClientID, String)>,
}

impl VersionMeta {
    /// The state vector at this version.
    pub fn state_vector(&self) -> StateVector {
        StateVector::from_iter(self.sv.iter().copied())
    }

    /// Encodes the meta for the store.
    pub fn encode(&self) -> Bytes {
        // Serialising plain data into a Vec cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes a stored meta.
    pub fn decode(seq: VersionSeq, bytes: &[u8]) -> Result<Self, String> {
        let mut meta: VersionMeta =
            serde_json::from_slice(bytes).map_err(|e| format!("version {seq} meta: {e}"))?;
        meta.seq = seq;
        Ok(meta)
    }
}

/// The state vector as stored in a [`VersionMeta`].
pub fn sv_pairs(sv: &StateVector) -> Vec<(ClientID, u32)> {
    let mut pairs: Vec<_> = sv.iter().map(|(c, k)| (*c, *k)).collect();
    pairs.sort_unstable();
    pairs
}

/// One author's updates in a version, merged into one Yjs update (lib0 v2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The author ([`super::UNKNOWN_AUTHOR`] if not known).
    pub author: String,
    /// Their updates since the version before.
    pub update: Bytes,
}

/// What rebuilding a version needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionData {
    /// The whole state at this version, for a full version (lib0 v2).
    pub state: Option<Bytes>,
    /// The updates since the version before, by author.
    pub parts: Vec<Part>,
}

/// Layout tags of [`VersionData`]'s encoding: the same layout, its updates in lib0 v1 or v2.
/// Versions are written with v2 updates, which take about a thirteenth of v1's bytes for
/// typed text (one block per keystroke: v2 encodes the blocks' ids and origins column-wise).
const DATA_V1: u8 = 1;
const DATA_V2: u8 = 2;

/// `update` (lib0 v1) in lib0 v2.
pub fn v1_to_v2(update: &[u8]) -> Result<Bytes, String> {
    let update = Update::decode_v1(update).map_err(|e| e.to_string())?;
    Ok(Bytes::from(update.encode_v2()))
}

/// `update` (lib0 v2) in lib0 v1.
pub fn v2_to_v1(update: &[u8]) -> Result<Bytes, String> {
    let update = Update::decode_v2(update).map_err(|e| e.to_string())?;
    Ok(Bytes::from(update.encode_v1()))
}

impl VersionData {
    /// Encodes the data for the store: a tag, the optional state, then the parts, each field
    /// length-prefixed (u32, little-endian).
    pub fn encode(&self) -> Bytes {
        let size = 16
            + self.state.as_ref().map_or(0, |s| s.len())
            + self
                .parts
                .iter()
                .map(|p| 8 + p.author.len() + p.update.len())
                .sum::<usize>();
        let mut out = BytesMut::with_capacity(size);
        out.put_u8(DATA_V2);
        match &self.state {
            Some(state) => {
                out.put_u8(1);
                put_field(&mut out, state);
            }
            None => out.put_u8(0),
        }
        out.put_u32_le(self.parts.len() as u32);
        for part in &self.parts {
            put_field(&mut out, part.author.as_bytes());
            put_field(&mut out, &part.update);
        }
        out.freeze()
    }

    /// Decodes stored data (a damaged record is an error, never a panic); updates stored in
    /// v1 come back in v2.
    pub fn decode(bytes: &Bytes) -> Result<Self, String> {
        let mut input = bytes.clone();
        let tag = take_u8(&mut input)?;
        let convert = match tag {
            DATA_V1 => true,
            DATA_V2 => false,
            _ => return Err(format!("unknown version data layout {tag}")),
        };
        let field = |input: &mut Bytes| -> Result<Bytes, String> {
            let bytes = take_field(input)?;
            match convert {
                true => v1_to_v2(&bytes),
                false => Ok(bytes),
            }
        };
        let state = match take_u8(&mut input)? {
            0 => None,
            1 => Some(field(&mut input)?),
            other => return Err(format!("bad state flag {other}")),
        };
        let count = take_u32(&mut input)? as usize;
        let mut parts = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let author = take_field(&mut input)?;
            let author = String::from_utf8(author.to_vec()).map_err(|_| "author not UTF-8")?;
            let update = field(&mut input)?;
            parts.push(Part { author, update });
        }
        if input.has_remaining() {
            return Err("trailing bytes after the version data".into());
        }
        Ok(VersionData { state, parts })
    }

    /// Every update of this version: the state (if full) and the parts.
    pub fn updates(&self) -> impl Iterator<Item = &Bytes> {
        self.state
            .iter()
            .chain(self.parts.iter().map(|p| &p.update))
    }
}

fn put_field(out: &mut BytesMut, field: &[u8]) {
    out.put_u32_le(field.len() as u32);
    out.put_slice(field);
}

fn take_u8(input: &mut Bytes) -> Result<u8, String> {
    if input.remaining() < 1 {
        return Err("version data ends early".into());
    }
    Ok(input.get_u8())
}

fn take_u32(input: &mut Bytes) -> Result<u32, String> {
    if input.remaining() < 4 {
        return Err("version data ends early".into());
    }
    Ok(input.get_u32_le())
}

fn take_field(input: &mut Bytes) -> Result<Bytes, String> {
    let len = take_u32(input)? as usize;
    if input.remaining() < len {
        return Err("version data ends early".into());
    }
    Ok(input.split_to(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trips_and_damage_is_an_error() {
        let data = VersionData {
            state: Some(Bytes::from_static(b"state")),
            parts: vec![
                Part {
                    author: "alice".into(),
                    update: Bytes::from_static(b"a"),
                },
                Part {
                    author: String::new(),
                    update: Bytes::from_static(b""),
                },
            ],
        };
        let encoded = data.encode();
        assert_eq!(VersionData::decode(&encoded), Ok(data));
        for cut in 0..encoded.len() {
            assert!(VersionData::decode(&encoded.slice(..cut)).is_err());
        }
        let mut long = encoded.to_vec();
        long.push(0);
        assert!(VersionData::decode(&Bytes::from(long)).is_err());
    }

    #[test]
    fn meta_round_trips() {
        let meta = VersionMeta {
            seq: 7,
            at: 1,
            label: Some("v1".into()),
            authors: vec!["a".into()],
            size: 3,
            sv: vec![(yrs::ClientID::new(1), 2)],
            full: false,
            deleted: 4,
            clients: vec![(yrs::ClientID::new(1), "a".into())],
        };
        assert_eq!(VersionMeta::decode(7, &meta.encode()), Ok(meta));
        assert!(VersionMeta::decode(1, b"{").is_err());
    }
}
