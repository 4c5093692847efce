//! PostgreSQL's own lexer over a query string: the cache key, the literal
//! spans and the fingerprints.
//!
//! Tokens come from `pg_query::scan_tokens`, which is the server's scanner
//! (scan.l) compiled as a library, so string continuations (`E'a'` newline
//! `'…'`), dollar quotes, `U&` escapes, nested comments and operator
//! boundaries are exactly what PostgreSQL sees (with its defaults
//! `standard_conforming_strings = on`, UTF-8; sessions that change those are
//! refused elsewhere).
//!
//! The cache key is the *redacted text*: every token of the string in order,
//! separated by one space, comments dropped, and every literal replaced by a
//! fixed placeholder of the same token kind (`'?'`, `1`, `1.0`, `B'0'`,
//! `X'0'`). Because a placeholder has the same token kind as the literal it
//! replaces, the grammar reads the redacted text into the same tree shape,
//! only with placeholder values. The classifier parses and walks *that*
//! text, so its answer is a function of the key alone: it cannot depend on a
//! literal the key left out, by construction (see `pg::classify`). When it
//! needs a literal's real value it says so and the string is classified from
//! its original text, uncached.
//!
//! INVARIANT: no byte of a literal ever reaches the key or a fingerprint.

use pg_query::protobuf::{KeywordKind, Token as T};

/// One token (comments are dropped).
#[derive(Debug, Clone, Copy)]
pub struct Tok {
    /// Byte range in the original text.
    pub start: u32,
    pub end: u32,
    /// Where the token starts in the key.
    pub key_start: u32,
    pub kind: Kind,
    /// White space or a comment came before it in the original.
    pub spaced: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A constant: its text is replaced in the key and fingerprint.
    Literal,
    /// A keyword (reserved or not): folded to lower case in fingerprints.
    Keyword,
    /// An identifier, quoted (`"X"`, `U&"x"`) or not.
    Ident,
    /// `$1`.
    Param,
    Semicolon,
    Other,
}

/// A scanned query string.
pub struct Lexed {
    pub toks: Vec<Tok>,
    /// The redacted text (see the module docs).
    pub key: String,
    /// False when the redacted text would not read like the original:
    /// `UESCAPE` changes how a neighbouring literal or identifier decodes,
    /// so a placeholder there could change what the tree says.
    pub redactable: bool,
}

/// Scans `sql`. `Err` carries a loggable reason (never a literal).
pub fn scan(sql: &str) -> Result<Lexed, String> {
    scan_with(sql, true)
}

/// Only the key (no token list): what a cache hit needs, on every statement.
pub fn scan_key(sql: &str) -> Result<Lexed, String> {
    scan_with(sql, false)
}

fn scan_with(sql: &str, with_toks: bool) -> Result<Lexed, String> {
    // A string with no token at all makes `scan_tokens` build a slice from
    // a null pointer (pg_query 18.1, undefined behaviour): don't ask. These
    // are exactly the bytes PostgreSQL's scanner skips as white space.
    if sql
        .bytes()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
    {
        return Ok(Lexed {
            toks: Vec::new(),
            key: String::new(),
            redactable: true,
        });
    }
    let raw = pg_query::scan_tokens(sql).map_err(|e| loggable(&e.to_string()))?;
    let mut key = String::with_capacity(sql.len().min(1 << 16) + 8);
    let mut toks = Vec::with_capacity(if with_toks { raw.len() } else { 0 });
    let mut redactable = true;
    let mut prev_end = 0u32;
    for t in raw {
        let (start, end) = (t.start.max(0) as u32, t.end.max(0) as u32);
        let token = T::try_from(t.token).unwrap_or(T::Nul);
        let kind = match token {
            T::SqlComment | T::CComment => continue,
            T::Sconst | T::Usconst | T::Bconst | T::Xconst | T::Iconst | T::Fconst => Kind::Literal,
            T::Ident | T::Uident => Kind::Ident,
            T::Param => Kind::Param,
            T::Ascii59 => Kind::Semicolon,
            _ if t.keyword_kind != KeywordKind::NoKeyword as i32 => Kind::Keyword,
            _ => Kind::Other,
        };
        if token == T::Uescape {
            redactable = false;
        }
        if !key.is_empty() {
            key.push(' ');
        }
        let key_start = key.len() as u32;
        let text = sql.get(start as usize..end as usize).unwrap_or("");
        match token {
            T::Sconst | T::Usconst => key.push_str("'?'"),
            T::Bconst => key.push_str("B'0'"),
            T::Xconst => key.push_str("X'0'"),
            T::Iconst => key.push('1'),
            T::Fconst => key.push_str("1.0"),
            _ => key.push_str(text),
        }
        if with_toks {
            toks.push(Tok {
                start,
                end,
                key_start,
                kind,
                spaced: start > prev_end,
            });
        }
        prev_end = end;
    }
    Ok(Lexed {
        toks,
        key,
        redactable,
    })
}

/// The key of `sql` without pg_query, for strings whose every token is one
/// of a few unambiguous shapes; `None` for anything else (then
/// [`scan_key`]). Where it answers, it is [`scan_key`]'s key, byte for byte.
///
/// Hand-written, on purpose: pg_query hands its tokens over as protobuf
/// (encoded in C, decoded in Rust), ~2.5 µs per statement on this machine,
/// on every statement's path; this walk costs a tenth of that. It reads only
/// where PostgreSQL's scanner (scan.l) has no choice to make:
/// - white space: space, tab, CR, LF;
/// - words `[A-Za-z_][A-Za-z0-9_]*` (no `$`, no bytes ≥ 0x80, no `UESCAPE`),
///   not followed by `'` (`E'…'`, `B'…'`, `X'…'`, `N'…'` prefixes), `"` or `$`;
/// - numbers `digits` or `digits.digits` followed by none of
///   `[A-Za-z0-9_.$'"]` (no exponent, no trailing junk, no `..`, no `0x`),
///   `1` when they fit an int4 (ICONST), `1.0` otherwise (FCONST);
/// - `'…'` strings with `''` doubling (standard_conforming_strings is on:
///   sessions that change it are refused), not followed by white space and
///   another `'` (a continuation: bail out);
/// - `( ) , ; [ ]`, `.` not next to a digit or another `.`, `::`, and runs
///   of at most three of `= < > *` (one operator each, as scan.l reads
///   `{op_chars}+` with no `-`, `/` or `+` in it to cut).
///
/// No comment, no `-`, `/`, `+`, `$`, `"`, `\`, `&`, `:` alone or NUL ever
/// passes.
/// The `classify` fuzz target and every debug build check it against
/// [`scan_key`] wherever it answers.
pub fn fast_key(sql: &str) -> Option<String> {
    let b = sql.as_bytes();
    let n = b.len();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut key = String::with_capacity(n + 8);
    let push = |key: &mut String, t: &str| {
        if !key.is_empty() {
            key.push(' ');
        }
        key.push_str(t);
    };
    let mut i = 0;
    while i < n {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'A'..=b'Z' | b'a'..=b'z' | b'_' => {
                let s = i;
                while i < n && word(b[i]) {
                    i += 1;
                }
                if i < n && (matches!(b[i], b'\'' | b'"' | b'$') || b[i] >= 0x80) {
                    return None;
                }
                let w = &sql[s..i];
                if w.eq_ignore_ascii_case("uescape") {
                    return None;
                }
                push(&mut key, w);
            }
            b'0'..=b'9' => {
                let s = i;
                while i < n && b[i].is_ascii_digit() {
                    i += 1;
                }
                let mut float = false;
                if i < n && b[i] == b'.' {
                    if !(i + 1 < n && b[i + 1].is_ascii_digit()) {
                        return None;
                    }
                    i += 1;
                    while i < n && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    float = true;
                }
                if i < n
                    && (word(b[i]) || matches!(b[i], b'.' | b'$' | b'\'' | b'"') || b[i] >= 0x80)
                {
                    return None;
                }
                if !float && sql[s..i].parse::<i32>().is_err() {
                    float = true;
                }
                push(&mut key, if float { "1.0" } else { "1" });
            }
            b'\'' => {
                i += 1;
                loop {
                    let close = i + b[i..].iter().position(|&c| c == b'\'')?;
                    // pg_query reads a C string: it ends at a NUL (found
                    // by the classify fuzz target).
                    if b[i..close].contains(&0) {
                        return None;
                    }
                    i = close + 1;
                    if i < n && b[i] == b'\'' {
                        i += 1;
                        continue;
                    }
                    break;
                }
                let mut j = i;
                while j < n && matches!(b[j], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
                    j += 1;
                }
                if j < n && b[j] == b'\'' {
                    return None;
                }
                push(&mut key, "'?'");
            }
            b'(' | b')' | b',' | b';' | b'[' | b']' => {
                push(&mut key, &sql[i..i + 1]);
                i += 1;
            }
            b'.' => {
                if i + 1 < n && (b[i + 1].is_ascii_digit() || b[i + 1] == b'.') {
                    return None;
                }
                push(&mut key, ".");
                i += 1;
            }
            b':' => {
                if !(i + 1 < n && b[i + 1] == b':')
                    || (i + 2 < n && matches!(b[i + 2], b':' | b'='))
                {
                    return None;
                }
                push(&mut key, "::");
                i += 2;
            }
            b'=' | b'<' | b'>' | b'*' => {
                let s = i;
                while i < n && matches!(b[i], b'=' | b'<' | b'>' | b'*') {
                    i += 1;
                }
                // scan.l refuses operators of NAMEDATALEN bytes or more
                // (found by the classify fuzz target); no common one has
                // more than three.
                if i - s > 3 {
                    return None;
                }
                if i < n
                    && matches!(
                        b[i],
                        b'-' | b'/'
                            | b'+'
                            | b'~'
                            | b'!'
                            | b'@'
                            | b'#'
                            | b'^'
                            | b'&'
                            | b'|'
                            | b'`'
                            | b'?'
                            | b'%'
                    )
                {
                    return None;
                }
                push(&mut key, &sql[s..i]);
            }
            _ => return None,
        }
    }
    (!key.is_empty()).then_some(key)
}

/// The literal-free fingerprint of `toks` (one statement) of `sql`:
/// literals become `?`, keywords and unquoted identifiers lower case, quoted
/// identifiers and parameters verbatim, one space where the source had
/// white space or a comment.
pub fn fingerprint(sql: &str, toks: &[Tok]) -> String {
    let mut fp = String::with_capacity(toks.len() * 6);
    for (i, t) in toks.iter().enumerate() {
        if t.spaced && i > 0 {
            fp.push(' ');
        }
        let text = sql.get(t.start as usize..t.end as usize).unwrap_or("");
        match t.kind {
            Kind::Literal => fp.push('?'),
            Kind::Keyword => push_lower(&mut fp, text),
            Kind::Ident if !text.starts_with('"') && !starts_with_u_amp(text) => {
                push_lower(&mut fp, text)
            }
            _ => fp.push_str(text),
        }
    }
    fp
}

fn starts_with_u_amp(s: &str) -> bool {
    s.len() > 2 && s.as_bytes()[1] == b'&' && s.as_bytes()[0].eq_ignore_ascii_case(&b'u')
}

fn push_lower(fp: &mut String, text: &str) {
    let at = fp.len();
    fp.push_str(text);
    if let Some(w) = fp.get_mut(at..) {
        w.make_ascii_lowercase();
    }
}

/// pg_query's messages quote the offending text (`at or near "…"`), which
/// may be a literal: keep only what comes before.
pub fn loggable(msg: &str) -> String {
    let cut = msg
        .find(" at or near")
        .or_else(|| msg.find(['"', '\'', '$']))
        .unwrap_or(msg.len());
    msg[..cut].chars().take(120).collect()
}

/// The tokens whose offset (`at`: in the key or in the original text)
/// falls in `[from, to)`.
pub fn in_range(toks: &[Tok], from: u32, to: u32, at: impl Fn(&Tok) -> u32) -> &[Tok] {
    let a = toks.partition_point(|t| at(t) < from);
    let b = toks.partition_point(|t| at(t) < to);
    &toks[a..b.max(a)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_redacts_every_literal_and_keeps_the_token_kinds() {
        let l = scan(
            "SELECT a.b, 'x''y', E'\\'', $$z$$, 42, 1.5e3, B'01', X'ff' FROM t -- c\n WHERE c = $1",
        )
        .unwrap();
        assert_eq!(
            l.key,
            "SELECT a . b , '?' , '?' , '?' , 1 , 1.0 , B'0' , X'0' FROM t WHERE c = $1"
        );
        assert!(l.redactable);
    }

    #[test]
    fn continuation_is_one_literal_as_the_server_reads_it() {
        let sql = "SELECT E'a'\n'\\''; COPY (SELECT 1) TO PROGRAM $$id$$; --'";
        let l = scan(sql).unwrap();
        assert_eq!(l.key, "SELECT '?' ; COPY ( SELECT 1 ) TO PROGRAM '?' ;");
    }

    #[test]
    fn uescape_is_not_redactable() {
        assert!(
            !scan("SELECT U&\"d!0061ta\" UESCAPE '!' FROM t")
                .unwrap()
                .redactable
        );
    }

    #[test]
    fn fingerprints_never_hold_literals() {
        let secret = "s3cr3t";
        for sql in [
            format!("SELECT '{secret}'"),
            format!("SELECT E'\\'{secret}'"),
            format!("SELECT $q${secret}$q$"),
            format!("SELECT U&'{secret}'"),
            format!("SELECT X'{secret}'"),
            format!("SELECT 1 -- {secret}"),
        ] {
            if let Ok(l) = scan(&sql) {
                assert!(!l.key.contains(secret), "{sql} -> {}", l.key);
                let fp = fingerprint(&sql, &l.toks);
                assert!(!fp.contains(secret), "{sql} -> {fp}");
            }
        }
        for bad in [format!("SELECT '{secret}"), format!("SELECT /* {secret}")] {
            let e = scan(&bad).err().unwrap_or_default();
            assert!(!e.contains(secret), "{e}");
        }
    }

    #[test]
    fn fingerprint_shape() {
        let sql = "SELECT  a.b, \"Mixed\"  FROM T /* c */ WHERE x = 'secret' AND y=42 AND z = $1";
        let l = scan(sql).unwrap();
        assert_eq!(
            fingerprint(sql, &l.toks),
            "select a.b, \"Mixed\" from t where x = ? and y=? and z = $1"
        );
    }

    #[test]
    fn fast_key_is_the_scanners_key_or_nothing() {
        let answers = [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 91234;",
            "select a.b, t.c1 from s.t where x in (1, 2.5, 3000000000) and y <> 'it''s' and z<=4",
            "SELECT '2024-01-01'::date, arr[1], count(*) FROM t GROUP BY 1",
            "UPDATE t SET a = 'x' WHERE id = 0012",
            "SELECT 2147483647, 2147483648, 99999999999999999999",
            "SELECT 'a\\b', 'ü -- /* $$ \" \\'",
            "SELECT a=>1, b>=2, c*d, e <>* f",
            "SELECT 1;SELECT 2",
        ];
        for sql in answers {
            let fast = fast_key(sql).unwrap_or_else(|| panic!("no fast key for {sql}"));
            let slow = scan_key(sql).unwrap();
            assert!(slow.redactable);
            assert_eq!(fast, slow.key, "{sql}");
        }
        let bail = [
            "SELECT E'a'",
            "SELECT e'\\''",
            "SELECT B'01', X'ff', N'x', U&'d'",
            "SELECT 'a'\n'b'",
            "SELECT 'a' 'b'",
            "SELECT 1e5, 1.e3, .5, 1., 1..2, 0x1F, 1_000, 1a",
            "SELECT 1 -- c",
            "SELECT /* c */ 1",
            "SELECT $1, $$x$$, \"Q\", a$b",
            "SELECT a - 1, a + 1, a / 2, a % 2",
            "SELECT U&\"d\" UESCAPE '!'",
            "SELECT x uescape",
            "SELECT a:b, a:=1, a:::b",
            "SELECT 'unterminated",
            "SELECT ü",
            "SELECT a\x0bb",
            "SELECT a *-1, a =/ b",
            "SELECT 's\0crets'",
            "SELECT a <<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<< b",
            "",
            "   ",
        ];
        for sql in bail {
            let (fast, slow) = (fast_key(sql), scan_key(sql).ok().filter(|l| l.redactable));
            assert!(
                fast.is_none() || Some(&fast) == Some(&slow.map(|l| l.key)),
                "{sql}: fast {fast:?}"
            );
        }
        for sql in [
            "SELECT E'a'",
            "SELECT 'a'\n'b'",
            "SELECT 1e5",
            "SELECT 1 -- c",
            "SELECT $1",
        ] {
            assert_eq!(fast_key(sql), None, "{sql}");
        }
    }
}
