//! What a masked value becomes (issue 11): the methods of `[[mask]]` as
//! functions from a value's text to its replacement. Protocol-independent:
//! the planner applies them only to text-like columns (whose text and
//! binary forms are both the UTF-8 text), and NULL to others, whose masked
//! form must still parse as their type.
//!
//! No replacement reveals the value's length: a fixed run of `*` stands
//! for what is hidden.

use super::rows::{Field, RowPlan};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;

/// What stands for hidden text.
const HIDDEN: &str = "****";

/// One mask method, ready to apply.
#[derive(Clone)]
pub enum Masker {
    /// `****`.
    Redact,
    /// `****` and the last `keep_last` characters; only `****` when the value
    /// has no more than that many (all of it would show).
    Partial { keep_last: usize },
    /// The first 16 bytes of HMAC-SHA256 under the key, in hex: equal values
    /// mask alike (joins line up), and without the key nothing is learnt,
    /// even of a value from a small set (a 9-digit number).
    Hash { key: Arc<[u8]> },
    /// `****@` and the domain, kept (`****` when there is no `@`).
    Email,
    /// SQL NULL.
    Null,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str(match self {
            Masker::Redact => "Redact",
            Masker::Partial { .. } => "Partial",
            Masker::Hash { .. } => "Hash",
            Masker::Email => "Email",
            Masker::Null => "Null",
        })
    }
}

impl PartialEq for Masker {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Masker::Partial { keep_last: a }, Masker::Partial { keep_last: b }) => a == b,
            (Masker::Hash { key: a }, Masker::Hash { key: b }) => Arc::ptr_eq(a, b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl Eq for Masker {}

impl Masker {
    /// The masked form of `value` (text, as the server sent it), appended
    /// to `out`; `false`: the field becomes NULL (nothing appended).
    pub fn apply(&self, value: &[u8], out: &mut Vec<u8>) -> bool {
        match self {
            Masker::Null => return false,
            Masker::Redact => out.extend_from_slice(HIDDEN.as_bytes()),
            Masker::Partial { keep_last } => {
                out.extend_from_slice(HIDDEN.as_bytes());
                // Characters, not bytes: a cut inside one would not be text.
                // The server sends text in UTF-8 (masked results are
                // served only in UTF8 sessions); anything else shows nothing.
                if let (Ok(text), Some(k)) = (std::str::from_utf8(value), keep_last.checked_sub(1))
                {
                    // The start of the last `keep_last` characters, if the
                    // value has more than that many.
                    let mut starts = text.char_indices().rev().map(|(i, _)| i);
                    if let (Some(at), Some(_)) = (starts.nth(k), starts.next()) {
                        out.extend_from_slice(&value[at..]);
                    }
                }
            }
            Masker::Hash { key } => {
                let mut mac =
                    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
                mac.update(value);
                let digest = mac.finalize().into_bytes();
                out.extend_from_slice(hex::encode(&digest[..16]).as_bytes());
            }
            Masker::Email => {
                out.extend_from_slice(HIDDEN.as_bytes());
                if let Some(at) = value.iter().rposition(|&b| b == b'@') {
                    out.extend_from_slice(&value[at..]);
                }
            }
        }
        true
    }
}

/// The HMAC key of a `hash` mask: the file's bytes (surrounding white
/// space trimmed); a missing file is created (mode 0600) with 32 random
/// bytes in hex, as the audit key is.
pub fn load_key(path: &std::path::Path) -> std::io::Result<Arc<[u8]>> {
    match std::fs::read(path) {
        Ok(b) => {
            let key = b.trim_ascii();
            if key.is_empty() {
                return Err(std::io::Error::other("the key file is empty"));
            }
            Ok(Arc::from(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut seed = [0u8; 32];
            rand::fill(&mut seed);
            let text = hex::encode(seed);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            writeln!(f, "{text}")?;
            f.sync_all()?;
            Ok(Arc::from(text.as_bytes()))
        }
        Err(e) => Err(e),
    }
}

/// One masked result column of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedColumn {
    /// Its position in the result (0-based).
    pub position: usize,
    /// The masked column it passes through, `table.column`.
    pub column: String,
    /// The `[[mask]]` id.
    pub mask: Arc<str>,
    pub masker: Masker,
    /// The result column's name (its alias, or the column's own name).
    pub output: String,
}

/// What masking does to one statement's result: which columns, by which
/// mask, and how many columns the result has (a result of another width
/// was read wrongly, and ends the statement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskPlan {
    pub width: usize,
    pub columns: Vec<MaskedColumn>,
}

impl MaskPlan {
    /// The row plan for this result; `text_like(i)`: column `i` is of a
    /// text type (masked text stands for it), else its values become NULL
    /// (the only replacement valid for every type).
    pub fn row_plan(&self, text_like: &dyn Fn(usize) -> bool) -> RowPlan {
        let mut plan = RowPlan::keep_all();
        plan.width = Some(self.width);
        for c in &self.columns {
            let masker = if text_like(c.position) {
                c.masker.clone()
            } else {
                Masker::Null
            };
            plan.set(c.position, Field::Mask(masker));
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(m: &Masker, v: &str) -> Option<String> {
        let mut out = Vec::new();
        m.apply(v.as_bytes(), &mut out)
            .then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn each_method_hides_what_it_should_and_not_the_length() {
        assert_eq!(masked(&Masker::Redact, "123-45-6789").unwrap(), "****");
        assert_eq!(masked(&Masker::Redact, "1").unwrap(), "****");
        let p = Masker::Partial { keep_last: 4 };
        assert_eq!(masked(&p, "123-45-6789").unwrap(), "****6789");
        assert_eq!(masked(&p, "6789").unwrap(), "****");
        assert_eq!(masked(&p, "ab").unwrap(), "****");
        assert_eq!(masked(&p, "été à paris").unwrap(), "****aris");
        assert_eq!(masked(&p, "ééééé").unwrap(), "****éééé");
        assert_eq!(
            masked(&Masker::Email, "ann.lee@example.com").unwrap(),
            "****@example.com"
        );
        assert_eq!(masked(&Masker::Email, "no-at-sign").unwrap(), "****");
        assert_eq!(masked(&Masker::Null, "x"), None);
    }

    #[test]
    fn hashes_are_keyed_stable_and_do_not_show_the_value() {
        let k1 = Masker::Hash {
            key: Arc::from(&b"key one"[..]),
        };
        let k2 = Masker::Hash {
            key: Arc::from(&b"key two"[..]),
        };
        let a = masked(&k1, "123456789").unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(a, masked(&k1, "123456789").unwrap());
        assert_ne!(a, masked(&k1, "123456788").unwrap());
        assert_ne!(a, masked(&k2, "123456789").unwrap());
        assert!(!a.contains("123456789"));
        assert_eq!(format!("{k1:?}"), "Hash");
    }
}
