//! Document names: the one validated type every layer uses to name a document.
//!
//! A name is 1..=256 bytes of ASCII letters, digits, `/`, `-`, `_` and `.`. Nothing else is
//! accepted (no percent-escapes, no NUL, no non-UTF-8), so a name can be embedded in URLs, logs
//! and storage keys without escaping.

use std::fmt;
use std::sync::Arc;

/// Longest accepted document name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// A validated document name. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocName(Arc<str>);

/// Why a string is not a valid document name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidName {
    /// The name is empty.
    #[error("document name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_BYTES`].
    #[error("document name is longer than {MAX_NAME_BYTES} bytes")]
    TooLong,
    /// The name contains a character outside the allowed set.
    #[error("document name may only contain letters, digits, '/', '-', '_' and '.'")]
    BadCharacter,
}

impl DocName {
    /// Validates `name` and wraps it.
    pub fn new(name: &str) -> Result<Self, InvalidName> {
        if name.is_empty() {
            return Err(InvalidName::Empty);
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(InvalidName::TooLong);
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.');
        if !name.bytes().all(allowed) {
            return Err(InvalidName::BadCharacter);
        }
        Ok(DocName(Arc::from(name)))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DocName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DocName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::str::FromStr for DocName {
    type Err = InvalidName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DocName::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet() {
        for ok in [
            "a",
            "org-42/notes_v1.2",
            "A/B/C",
            &"x".repeat(MAX_NAME_BYTES),
        ] {
            assert!(DocName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        assert_eq!(DocName::new(""), Err(InvalidName::Empty));
        assert_eq!(
            DocName::new(&"x".repeat(MAX_NAME_BYTES + 1)),
            Err(InvalidName::TooLong)
        );
        for bad in ["%2e%2e", "a b", "a\0b", "é", "a?b", "a#b", "a\\b"] {
            assert_eq!(DocName::new(bad), Err(InvalidName::BadCharacter), "{bad:?}");
        }
    }
}
