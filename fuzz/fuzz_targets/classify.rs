//! SQL reading and classification (`classify::Classifier::classify`, the
//! PostgreSQL dialect). Invariants, each cheap and certain:
//! - it never panics (nor does PostgreSQL's lexer or grammar under it);
//! - every statement has at least one class (`unparsed` when in doubt);
//! - no fingerprint holds 9 or more bytes copied from a literal;
//! - the cache key read without pg_query (`pg::lex::fast_key`) is the
//!   scanner's key wherever it answers;
//! - decoding a client encoding (`sqlgate::encoding`) keeps every ASCII
//!   byte as it is, in order, and what it encodes reads back as itself.
//!
//! The last is checked against PostgreSQL's own lexer (pg_query), not
//! sqlgate's reading of it: for every literal token, each 9-byte window with
//! no white space and no `?` that does not occur (ASCII case folded) in the
//! text outside literals and comments must not occur in any fingerprint.
//! Such a window can only reach a fingerprint by being copied from the
//! literal: fingerprints are the source's non-literal tokens, lower-cased,
//! with `?` for literals and one space for any gap, so a space-free,
//! `?`-free run in one is a run of adjacent source text outside literals.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg_query::protobuf::Token;
use sqlgate::classify::{Classifier, ClassifierOptions, Dialect};
use std::collections::HashSet;
use std::sync::OnceLock;

const RUN: usize = 9;

fn classifier() -> &'static Classifier {
    static C: OnceLock<Classifier> = OnceLock::new();
    // A small cache, so that hits (and evictions) are exercised too.
    C.get_or_init(|| {
        Classifier::new(
            Dialect::Postgres,
            ClassifierOptions {
                cache_capacity: 64,
                cache_bytes: 1 << 20,
                ..ClassifierOptions::default()
            },
        )
    })
}

fn windows(b: &[u8]) -> impl Iterator<Item = [u8; RUN]> + '_ {
    b.windows(RUN).map(|w| {
        let mut a: [u8; RUN] = w.try_into().unwrap();
        a.make_ascii_lowercase();
        a
    })
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fuzz_target!(|data: &[u8]| {
    for name in ["LATIN1", "LATIN5", "WIN1251", "EUC_JP", "EUC_KR", "EUC_CN"] {
        let enc = sqlgate::encoding::lookup(name).unwrap();
        if let Some(text) = enc.decode(data) {
            let ascii = |b: &[u8]| b.iter().copied().filter(u8::is_ascii).collect::<Vec<u8>>();
            assert_eq!(ascii(text.as_bytes()), ascii(data), "{name}: {data:?}");
            if let Some(back) = enc.encode(&text) {
                assert_eq!(enc.decode(&back).as_deref(), Some(&*text), "{name}");
            }
        }
    }
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    // The key read without pg_query is pg_query's key wherever it answers.
    if let (Some(fast), slow) = sqlgate::classify::pg_key_pair(sql) {
        assert_eq!(Some(&fast), slow.as_ref(), "fast key of {sql:?}");
    }
    let analysis = classifier().classify(sql);
    for s in &analysis.statements {
        assert!(!s.classes.is_empty(), "no class for {:?}", s.fingerprint);
    }

    // pg_query 18.1's scan_tokens is undefined behaviour on a string with
    // no token at all (see classify/pg/lex.rs): don't ask.
    if sql.bytes().all(is_space) {
        return;
    }
    let Ok(tokens) = pg_query::scan_tokens(sql) else {
        return; // the lexer rejects it: no certain literal spans to check
    };
    let span = |t: &pg_query::protobuf::ScanToken| {
        sql.as_bytes()
            .get(t.start.max(0) as usize..t.end.max(0) as usize)
            .unwrap_or_default()
    };
    let kind = |t: &pg_query::protobuf::ScanToken| Token::try_from(t.token).unwrap_or(Token::Nul);
    let is_literal = |t: &pg_query::protobuf::ScanToken| {
        matches!(
            kind(t),
            Token::Sconst | Token::Usconst | Token::Bconst | Token::Xconst
        )
    };
    // The text outside literals and comments (0xff never occurs in UTF-8).
    let mut outside = sql.as_bytes().to_vec();
    for t in &tokens {
        if is_literal(t) || matches!(kind(t), Token::SqlComment | Token::CComment) {
            let n = outside.len();
            let (a, b) = (t.start.max(0) as usize, t.end.max(0) as usize);
            outside[a.min(n)..b.min(n)].fill(0xff);
        }
    }
    // Without white space: the cache shares one analysis among strings with
    // the same key, so a fingerprint may come from an earlier string whose
    // tokens are these but spaced otherwise (`++ ++` and `+ + + +` lex alike).
    outside.retain(|&b| !is_space(b));
    let outside: HashSet<[u8; RUN]> = windows(&outside).collect();
    let printed: HashSet<[u8; RUN]> = analysis
        .statements
        .iter()
        .flat_map(|s| windows(s.fingerprint.as_bytes()).collect::<Vec<_>>())
        .collect();
    for t in tokens.iter().filter(|t| is_literal(t)) {
        for w in windows(span(t)) {
            if w.iter().any(|&b| is_space(b) || b == b'?') || outside.contains(&w) {
                continue;
            }
            assert!(
                !printed.contains(&w),
                "a fingerprint holds {:?}, copied from a literal",
                String::from_utf8_lossy(&w)
            );
        }
    }
});
