//! Client encodings: which ones sqlgate can read exactly as the server does,
//! and how it reads them.
//!
//! PostgreSQL converts what a client sends from the session's
//! `client_encoding` before it lexes it. Every encoding it accepts as a
//! *server* encoding is an ASCII superset whose multi-byte characters use
//! only bytes at or above 0x80, so a byte below 0x80 is always the ASCII
//! character it looks like: quotes, backslashes, semicolons and keywords sit
//! where they seem to. sqlgate keeps that structure by construction: ASCII
//! bytes are copied as they are and only the runs of bytes at or above 0x80
//! between them are decoded (with `encoding_rs`, the WHATWG tables a browser
//! uses; written here because no crate maps PostgreSQL's encoding names and
//! keeps the ASCII bytes in place). A run that does not decode is refused,
//! as the server refuses it.
//!
//! The client-only encodings (BIG5, GB18030, GBK, JOHAB, SJIS,
//! SHIFT_JIS_2004, UHC) are refused: their second bytes can be `\` or `'`,
//! so the server's reading of a string depends on the encoding in a way
//! byte-level lexing cannot follow. EUC_TW, EUC_JIS_2004 and MULE_INTERNAL
//! are refused because no well-kept decoder reads them.

use encoding_rs::Encoding as Whatwg;
use std::borrow::Cow;

/// How the bytes of one encoding read.
#[derive(Debug)]
enum Kind {
    /// UTF-8; also SQL_ASCII, whose bytes a UTF8 database (the only kind
    /// sqlgate serves, `DATABASE_WHY`) checks as UTF-8 and takes as they are.
    Utf8,
    /// ISO-8859-1: each byte is the code point of its value.
    Latin1,
    /// A single-byte table; `c1`: bytes 0x80–0x9F are the C1 controls (an
    /// ISO-8859 part read with the Windows table that WHATWG maps it to);
    /// then bytes PostgreSQL's table maps otherwise than WHATWG's.
    Single(&'static Whatwg, bool, &'static [(u8, char)]),
    /// A multi-byte EUC encoding, and the characters PostgreSQL's table
    /// maps otherwise than WHATWG's.
    Multi(&'static Whatwg, &'static [(&'static [u8], char)]),
    /// Not readable; why.
    Refused(&'static str),
}

/// One PostgreSQL encoding, as the server names it.
#[derive(Debug)]
pub struct Encoding {
    pub name: &'static str,
    kind: Kind,
}

const CLIENT_ONLY: &str = "it is a client-only encoding whose second bytes can be `\\` or `'`, so a string's end depends on how every character before it is read; use UTF8 (or the database's own encoding)";
const NO_DECODER: &str =
    "sqlgate has no decoder for it to read SQL exactly as the server does; use UTF8";

// Where PostgreSQL's conversion tables (src/backend/utils/mb/Unicode) and
// WHATWG's disagree on a character both read, PostgreSQL's reading, found by
// comparing every byte sequence with the server's `convert_from`
// (tests/encodings.rs keeps them compared). KOI8U: PostgreSQL has the
// original KOI8-U, WHATWG KOI8-RU's box-drawing replacements.
const KOI8U_PG: &[(u8, char)] = &[(0xae, '\u{255d}'), (0xbe, '\u{256c}')];
const EUC_JP_PG: &[(&[u8], char)] = &[(&[0x8f, 0xa2, 0xc3], '\u{ffe4}')];
const EUC_CN_PG: &[(&[u8], char)] = &[(&[0xa1, 0xa4], '\u{30fb}'), (&[0xa1, 0xaa], '\u{2015}')];

/// Every encoding PostgreSQL knows, by the name the server reports.
static ENCODINGS: &[Encoding] = &[
    Encoding {
        name: "UTF8",
        kind: Kind::Utf8,
    },
    Encoding {
        name: "SQL_ASCII",
        kind: Kind::Utf8,
    },
    Encoding {
        name: "LATIN1",
        kind: Kind::Latin1,
    },
    Encoding {
        name: "LATIN2",
        kind: Kind::Single(encoding_rs::ISO_8859_2, false, &[]),
    },
    Encoding {
        name: "LATIN3",
        kind: Kind::Single(encoding_rs::ISO_8859_3, false, &[]),
    },
    Encoding {
        name: "LATIN4",
        kind: Kind::Single(encoding_rs::ISO_8859_4, false, &[]),
    },
    Encoding {
        name: "LATIN5",
        kind: Kind::Single(encoding_rs::WINDOWS_1254, true, &[]),
    },
    Encoding {
        name: "LATIN6",
        kind: Kind::Single(encoding_rs::ISO_8859_10, false, &[]),
    },
    Encoding {
        name: "LATIN7",
        kind: Kind::Single(encoding_rs::ISO_8859_13, false, &[]),
    },
    Encoding {
        name: "LATIN8",
        kind: Kind::Single(encoding_rs::ISO_8859_14, false, &[]),
    },
    Encoding {
        name: "LATIN9",
        kind: Kind::Single(encoding_rs::ISO_8859_15, false, &[]),
    },
    Encoding {
        name: "LATIN10",
        kind: Kind::Single(encoding_rs::ISO_8859_16, false, &[]),
    },
    Encoding {
        name: "ISO_8859_5",
        kind: Kind::Single(encoding_rs::ISO_8859_5, false, &[]),
    },
    Encoding {
        name: "ISO_8859_6",
        kind: Kind::Single(encoding_rs::ISO_8859_6, false, &[]),
    },
    Encoding {
        name: "ISO_8859_7",
        kind: Kind::Single(encoding_rs::ISO_8859_7, false, &[]),
    },
    Encoding {
        name: "ISO_8859_8",
        kind: Kind::Single(encoding_rs::ISO_8859_8, false, &[]),
    },
    Encoding {
        name: "WIN866",
        kind: Kind::Single(encoding_rs::IBM866, false, &[]),
    },
    Encoding {
        name: "WIN874",
        kind: Kind::Single(encoding_rs::WINDOWS_874, false, &[]),
    },
    Encoding {
        name: "WIN1250",
        kind: Kind::Single(encoding_rs::WINDOWS_1250, false, &[]),
    },
    Encoding {
        name: "WIN1251",
        kind: Kind::Single(encoding_rs::WINDOWS_1251, false, &[]),
    },
    Encoding {
        name: "WIN1252",
        kind: Kind::Single(encoding_rs::WINDOWS_1252, false, &[]),
    },
    Encoding {
        name: "WIN1253",
        kind: Kind::Single(encoding_rs::WINDOWS_1253, false, &[]),
    },
    Encoding {
        name: "WIN1254",
        kind: Kind::Single(encoding_rs::WINDOWS_1254, false, &[]),
    },
    Encoding {
        name: "WIN1255",
        kind: Kind::Single(encoding_rs::WINDOWS_1255, false, &[]),
    },
    Encoding {
        name: "WIN1256",
        kind: Kind::Single(encoding_rs::WINDOWS_1256, false, &[]),
    },
    Encoding {
        name: "WIN1257",
        kind: Kind::Single(encoding_rs::WINDOWS_1257, false, &[]),
    },
    Encoding {
        name: "WIN1258",
        kind: Kind::Single(encoding_rs::WINDOWS_1258, false, &[]),
    },
    Encoding {
        name: "KOI8R",
        kind: Kind::Single(encoding_rs::KOI8_R, false, &[]),
    },
    Encoding {
        name: "KOI8U",
        kind: Kind::Single(encoding_rs::KOI8_U, false, KOI8U_PG),
    },
    Encoding {
        name: "EUC_JP",
        kind: Kind::Multi(encoding_rs::EUC_JP, EUC_JP_PG),
    },
    Encoding {
        name: "EUC_KR",
        kind: Kind::Multi(encoding_rs::EUC_KR, &[]),
    },
    // GB2312 in EUC form: the GBK decoder reads it (GBK extends it; what
    // only GBK has, the server refuses as invalid EUC_CN before lexing).
    Encoding {
        name: "EUC_CN",
        kind: Kind::Multi(encoding_rs::GBK, EUC_CN_PG),
    },
    Encoding {
        name: "EUC_TW",
        kind: Kind::Refused(NO_DECODER),
    },
    Encoding {
        name: "EUC_JIS_2004",
        kind: Kind::Refused(NO_DECODER),
    },
    Encoding {
        name: "MULE_INTERNAL",
        kind: Kind::Refused(NO_DECODER),
    },
    Encoding {
        name: "BIG5",
        kind: Kind::Refused(CLIENT_ONLY),
    },
    Encoding {
        name: "GB18030",
        kind: Kind::Refused(CLIENT_ONLY),
    },
    Encoding {
        name: "GBK",
        kind: Kind::Refused(CLIENT_ONLY),
    },
    Encoding {
        name: "JOHAB",
        kind: Kind::Refused(CLIENT_ONLY),
    },
    Encoding {
        name: "SJIS",
        kind: Kind::Refused(CLIENT_ONLY),
    },
    Encoding {
        name: "SHIFT_JIS_2004",
        kind: Kind::Refused(CLIENT_ONLY),
    },
    Encoding {
        name: "UHC",
        kind: Kind::Refused(CLIENT_ONLY),
    },
];

/// PostgreSQL's other names for encodings (`pg_encname_tbl`), cleaned as
/// it cleans them (lower case, letters and digits only).
const ALIASES: &[(&str, &str)] = &[
    ("abc", "WIN1258"),
    ("alt", "WIN866"),
    ("iso88591", "LATIN1"),
    ("iso88592", "LATIN2"),
    ("iso88593", "LATIN3"),
    ("iso88594", "LATIN4"),
    ("iso88599", "LATIN5"),
    ("iso885910", "LATIN6"),
    ("iso885913", "LATIN7"),
    ("iso885914", "LATIN8"),
    ("iso885915", "LATIN9"),
    ("iso885916", "LATIN10"),
    ("koi8", "KOI8R"),
    ("mskanji", "SJIS"),
    ("shiftjis", "SJIS"),
    ("tcvn", "WIN1258"),
    ("tcvn5712", "WIN1258"),
    ("unicode", "UTF8"),
    ("vscii", "WIN1258"),
    ("win", "WIN1251"),
    ("win932", "SJIS"),
    ("win936", "GBK"),
    ("win949", "UHC"),
    ("win950", "BIG5"),
    ("windows932", "SJIS"),
    ("windows936", "GBK"),
    ("windows949", "UHC"),
    ("windows950", "BIG5"),
];

fn clean(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The encoding PostgreSQL means by `name` (any of its spellings), if it
/// knows one.
pub fn lookup(name: &str) -> Option<&'static Encoding> {
    let c = clean(name);
    let c = match c.strip_prefix("windows") {
        // `windows1252` is `win1252`, `windows866` `win866`.
        Some(rest) if rest.bytes().all(|b| b.is_ascii_digit()) && !rest.is_empty() => {
            format!("win{rest}")
        }
        _ => c,
    };
    let canonical = ALIASES
        .iter()
        .find(|(a, _)| *a == c)
        .map(|(_, n)| clean(n))
        .unwrap_or(c);
    ENCODINGS.iter().find(|e| clean(e.name) == canonical)
}

/// Why sqlgate cannot serve a session in encoding `name`, if it cannot.
pub fn refusal(name: &str) -> Option<String> {
    match lookup(name) {
        None => Some(format!(
            "client_encoding `{name}` is not an encoding sqlgate knows"
        )),
        Some(Encoding {
            name: n,
            kind: Kind::Refused(why),
        }) => Some(format!(
            "client_encoding {n} is not allowed through sqlgate: {why}"
        )),
        Some(_) => None,
    }
}

/// Why sqlgate serves only UTF8 databases: the server cuts identifiers at
/// 63 bytes of the database's encoding and, in a single-byte one, folds
/// their case by its locale (`downcase_identifier`), and a SQL_ASCII one
/// takes any client's bytes as they are; sqlgate reads SQL as a UTF8
/// database does (pg_query), so names would differ.
pub const DATABASE_WHY: &str = "sqlgate serves only UTF8 databases: in another encoding the server truncates and case-folds identifiers by that encoding's bytes (and SQL_ASCII takes a client's bytes unconverted), which sqlgate's reading does not follow";

/// The encoding a new session speaks until told otherwise.
pub fn utf8() -> &'static Encoding {
    &ENCODINGS[0]
}

impl Encoding {
    /// Its place in the table (to keep it in an atomic).
    pub fn id(&'static self) -> u8 {
        ENCODINGS
            .iter()
            .position(|e| std::ptr::eq(e, self))
            .unwrap_or(0) as u8
    }

    pub fn from_id(id: u8) -> &'static Encoding {
        ENCODINGS.get(usize::from(id)).unwrap_or(utf8())
    }

    pub fn is_utf8(&self) -> bool {
        matches!(self.kind, Kind::Utf8)
    }

    /// The text of `bytes` as the server reads it; `None` when the server
    /// would refuse it as invalid in this encoding. Borrowed (no copy) for
    /// UTF-8 and for pure ASCII in any encoding.
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> Option<Cow<'a, str>> {
        if self.is_utf8() || bytes.is_ascii() {
            return std::str::from_utf8(bytes).ok().map(Cow::Borrowed);
        }
        let mut out = String::with_capacity(bytes.len() + bytes.len() / 2);
        let mut rest = bytes;
        while !rest.is_empty() {
            let ascii = rest.iter().take_while(|b| b.is_ascii()).count();
            // INVARIANT: ASCII is UTF-8.
            out.push_str(std::str::from_utf8(&rest[..ascii]).ok()?);
            rest = &rest[ascii..];
            let high = rest.iter().take_while(|b| !b.is_ascii()).count();
            if high == 0 {
                continue;
            }
            let (run, after) = rest.split_at(high);
            rest = after;
            match self.kind {
                Kind::Latin1 => out.extend(run.iter().map(|&b| char::from(b))),
                Kind::Single(enc, c1, pg) => {
                    for b in run {
                        if c1 && (0x80..=0x9f).contains(b) {
                            out.push(char::from(*b));
                        } else if let Some(&(_, c)) = pg.iter().find(|(x, _)| x == b) {
                            out.push(c);
                        } else {
                            out.push_str(
                                &enc.decode_without_bom_handling_and_without_replacement(
                                    std::slice::from_ref(b),
                                )?,
                            );
                        }
                    }
                }
                Kind::Multi(enc, pg) => {
                    // One character at a time (EUC: two bytes, three after
                    // EUC_JP's 0x8F), so that PostgreSQL's readings apply
                    // at character boundaries only.
                    let mut at = 0;
                    while at < run.len() {
                        let n = if std::ptr::eq(enc, encoding_rs::EUC_JP) && run[at] == 0x8f {
                            3
                        } else {
                            2
                        };
                        let ch = run.get(at..at + n)?;
                        match pg.iter().find(|(x, _)| *x == ch) {
                            Some(&(_, c)) => out.push(c),
                            None => out.push_str(
                                &enc.decode_without_bom_handling_and_without_replacement(ch)?,
                            ),
                        }
                        at += n;
                    }
                }
                Kind::Utf8 | Kind::Refused(_) => return None,
            }
        }
        Some(Cow::Owned(out))
    }

    /// `text` in this encoding, exactly: `None` when a character has no
    /// byte sequence here or would not read back as itself.
    pub fn encode<'a>(&self, text: &'a str) -> Option<Cow<'a, [u8]>> {
        if self.is_utf8() || text.is_ascii() {
            return Some(Cow::Borrowed(text.as_bytes()));
        }
        let mut out = Vec::with_capacity(text.len());
        for c in text.chars() {
            if c.is_ascii() {
                out.push(c as u8);
                continue;
            }
            match self.kind {
                Kind::Latin1 => out.push(u8::try_from(u32::from(c)).ok()?),
                Kind::Single(_, true, _) if ('\u{80}'..='\u{9f}').contains(&c) => out.push(c as u8),
                Kind::Single(_, _, pg) if pg.iter().any(|&(_, x)| x == c) => {
                    out.extend(pg.iter().filter(|&&(_, x)| x == c).map(|&(b, _)| b).take(1))
                }
                Kind::Multi(_, pg) if pg.iter().any(|&(_, x)| x == c) => out.extend_from_slice(
                    pg.iter()
                        .find(|&&(_, x)| x == c)
                        .map_or(&[][..], |&(b, _)| b),
                ),
                Kind::Single(enc, _, _) | Kind::Multi(enc, _) => {
                    let mut b = [0u8; 4];
                    let (bytes, _, unmappable) = enc.encode(c.encode_utf8(&mut b));
                    if unmappable {
                        return None;
                    }
                    out.extend_from_slice(&bytes);
                }
                Kind::Utf8 | Kind::Refused(_) => return None,
            }
        }
        // Read back: what the server gets must be what sqlgate decided on.
        (self.decode(&out)?.as_ref() == text).then_some(Cow::Owned(out))
    }
}

impl Encoding {
    /// `text` in this encoding, each character that has no byte sequence
    /// here written as `?`: for sqlgate's own messages to the agent.
    pub fn encode_lossy(&self, text: &str) -> Vec<u8> {
        if let Some(b) = self.encode(text) {
            return b.into_owned();
        }
        let mut out = Vec::with_capacity(text.len());
        let mut buf = [0u8; 4];
        for c in text.chars() {
            match self.encode(c.encode_utf8(&mut buf)) {
                Some(b) => out.extend_from_slice(&b),
                None => out.push(b'?'),
            }
        }
        out
    }
}

/// An ErrorResponse or NoticeResponse of sqlgate's own (its fields are
/// UTF-8) in the agent's encoding, as the server writes its own. A frame
/// that is not one is returned as it is.
pub fn transcode_report(frame: &[u8], to: &Encoding) -> Vec<u8> {
    if to.is_utf8() || frame.is_ascii() || frame.len() < 5 {
        return frame.to_vec();
    }
    let mut body = Vec::with_capacity(frame.len());
    for field in frame[5..].split(|&b| b == 0) {
        let Some((&code, value)) = field.split_first() else {
            continue;
        };
        body.push(code);
        match std::str::from_utf8(value) {
            Ok(v) => body.extend_from_slice(&to.encode_lossy(v)),
            Err(_) => return frame.to_vec(),
        }
        body.push(0);
    }
    body.push(0);
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(frame[0]);
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_as_postgresql_reads_them() {
        assert_eq!(lookup("latin1").unwrap().name, "LATIN1");
        assert_eq!(lookup("ISO-8859-1").unwrap().name, "LATIN1");
        assert_eq!(lookup("iso_8859_9").unwrap().name, "LATIN5");
        assert_eq!(lookup("Windows-1252").unwrap().name, "WIN1252");
        assert_eq!(lookup("unicode").unwrap().name, "UTF8");
        assert_eq!(lookup("euc-jp").unwrap().name, "EUC_JP");
        assert_eq!(lookup("Shift_JIS").unwrap().name, "SJIS");
        assert!(lookup("klingon").is_none());
        for bad in [
            "SJIS",
            "mskanji",
            "BIG5",
            "GBK",
            "cp936x",
            "UHC",
            "JOHAB",
            "GB18030",
            "SHIFT_JIS_2004",
            "EUC_TW",
        ] {
            assert!(refusal(bad).is_some(), "{bad}");
        }
        assert!(refusal("SJIS").unwrap().contains("second bytes"));
        for good in [
            "UTF8",
            "LATIN1",
            "WIN1251",
            "KOI8R",
            "EUC_KR",
            "EUC_CN",
            "SQL_ASCII",
        ] {
            assert_eq!(refusal(good), None, "{good}");
        }
        for e in ENCODINGS {
            assert!(std::ptr::eq(Encoding::from_id(e.id()), e));
        }
    }

    #[test]
    fn ascii_stays_in_place_and_runs_decode() {
        let latin1 = lookup("LATIN1").unwrap();
        assert_eq!(latin1.decode(b"SELECT 'caf\xe9'").unwrap(), "SELECT 'café'");
        assert!(matches!(latin1.decode(b"SELECT 1"), Some(Cow::Borrowed(_))));
        let latin5 = lookup("LATIN5").unwrap();
        assert_eq!(latin5.decode(b"\x80\xfd").unwrap(), "\u{80}ı");
        let koi8 = lookup("KOI8R").unwrap();
        assert_eq!(koi8.decode(b"'\xc1'").unwrap(), "'а'");
        let eucjp = lookup("EUC_JP").unwrap();
        assert_eq!(eucjp.decode(b"'\xa4\xa2'").unwrap(), "'あ'");
        // A lead byte without its trail, or a trail that is ASCII: invalid
        // (the server refuses them too), never a swallowed quote.
        assert_eq!(eucjp.decode(b"'\xa4'"), None);
        let euccn = lookup("EUC_CN").unwrap();
        assert_eq!(euccn.decode(b"'\xa1\\'"), None);
        assert_eq!(utf8().decode(b"\xff"), None);
    }

    #[test]
    fn own_reports_are_written_in_the_agent_encoding() {
        let latin1 = lookup("LATIN1").unwrap();
        let mut body = b"SERROR\0C42501\0Mdenied: caf\xc3\xa9 \xe2\x80\xa6\0\0".to_vec();
        let mut frame = vec![b'E'];
        frame.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        frame.append(&mut body);
        let out = transcode_report(&frame, latin1);
        assert_eq!(&out[5..], b"SERROR\0C42501\0Mdenied: caf\xe9 ?\0\0");
        assert_eq!(
            u32::from_be_bytes(out[1..5].try_into().unwrap()) as usize,
            out.len() - 1
        );
        assert_eq!(transcode_report(&frame, utf8()), frame);
    }

    #[test]
    fn encoding_round_trips_or_refuses() {
        let latin1 = lookup("LATIN1").unwrap();
        assert_eq!(latin1.encode("café").unwrap().as_ref(), b"caf\xe9");
        assert_eq!(latin1.encode("あ"), None);
        let eucjp = lookup("EUC_JP").unwrap();
        assert_eq!(eucjp.encode("'あ'").unwrap().as_ref(), b"'\xa4\xa2'");
        let latin5 = lookup("LATIN5").unwrap();
        assert_eq!(latin5.encode("\u{80}ı").unwrap().as_ref(), b"\x80\xfd");
        // PostgreSQL's readings where WHATWG's differ, both ways.
        let euccn = lookup("EUC_CN").unwrap();
        assert_eq!(
            euccn.decode(b"\xa1\xa4\xa1\xaa").unwrap(),
            "\u{30fb}\u{2015}"
        );
        assert_eq!(euccn.encode("\u{30fb}").unwrap().as_ref(), b"\xa1\xa4");
        assert_eq!(euccn.encode("\u{b7}"), None);
        let koi8u = lookup("KOI8U").unwrap();
        assert_eq!(koi8u.decode(b"\xae").unwrap(), "\u{255d}");
        assert_eq!(koi8u.encode("\u{255d}").unwrap().as_ref(), b"\xae");
    }
}
