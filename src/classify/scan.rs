//! A hand-written SQL scanner.
//!
//! Why not sqlparser's tokenizer: the scanner runs on *every* statement,
//! including cache hits, so it must be one allocation-free pass; and it must
//! agree with the *server's* lexer (PostgreSQL with
//! `standard_conforming_strings = on`, or MySQL's default `sql_mode`) about
//! where literals, comments and statements end — that agreement is what keeps
//! `SELECT 'a; DROP TABLE t'` a single harmless statement. sqlparser is only
//! consulted later, per statement, on a cache miss.
//!
//! The scanner never fails: an unterminated quote or comment becomes a final
//! [`Kind::Unterminated`] token that swallows the rest of the input.

use super::types::Dialect;

/// What a token is. Literal values are never interpreted here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Unquoted identifier or keyword (original case).
    Word,
    /// `"ident"` (PostgreSQL) or `` `ident` `` (MySQL), quotes included.
    QuotedIdent,
    /// Any string literal, prefix and quotes included (`E'..'`, `$t$..$t$`, …).
    Str,
    /// Numeric literal.
    Number,
    /// Bind parameter: `$1` (PostgreSQL) or `?` (MySQL).
    Param,
    /// One byte of punctuation or operator.
    Punct,
    /// Top-level statement separator.
    Semicolon,
    /// MySQL `/*!` or `*/` closing one: the content between is executed.
    ExecComment,
    /// An unterminated quote or comment: the rest of the input.
    Unterminated(Unterminated),
}

/// Which construct was left open at the end of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unterminated {
    String,
    QuotedIdent,
    Comment,
}

impl Unterminated {
    pub fn note(self) -> &'static str {
        match self {
            Unterminated::String => "unterminated string literal",
            Unterminated::QuotedIdent => "unterminated quoted identifier",
            Unterminated::Comment => "unterminated comment",
        }
    }
}

/// One token: its kind, its byte range in the input, and whether white space
/// or a comment separated it from the previous token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: Kind,
    pub text: &'a str,
    pub start: usize,
    pub spaced: bool,
}

impl Token<'_> {
    /// Is this an unquoted word equal (ASCII case-insensitively) to `kw`?
    pub fn is_word(&self, kw: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(kw)
    }

    pub fn is_punct(&self, c: u8) -> bool {
        self.kind == Kind::Punct && self.text.as_bytes().first() == Some(&c)
    }

    /// The identifier this token names, if it is one: unquoted words as
    /// written (callers compare case-insensitively), quoted ones unquoted.
    pub fn ident(&self) -> Option<&str> {
        match self.kind {
            Kind::Word => Some(self.text),
            Kind::QuotedIdent => self.text.get(1..self.text.len().saturating_sub(1)),
            _ => None,
        }
    }
}

/// Iterator over the tokens of `sql`, skipping white space and comments.
pub struct Scanner<'a> {
    src: &'a str,
    b: &'a [u8],
    pos: usize,
    dialect: Dialect,
    /// Inside a MySQL `/*! … */`: its closing `*/` is a token, not a comment end.
    in_exec: bool,
}

impl<'a> Scanner<'a> {
    pub fn new(dialect: Dialect, src: &'a str) -> Self {
        Scanner {
            src,
            b: src.as_bytes(),
            pos: 0,
            dialect,
            in_exec: false,
        }
    }

    fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    fn slice(&self, start: usize, end: usize) -> &'a str {
        // Boundaries always fall on ASCII bytes or the end, so this cannot
        // fail; `get` keeps it panic-free regardless.
        self.src.get(start..end).unwrap_or("")
    }

    /// Skip white space and comments. Returns (skipped anything?, ok?):
    /// not ok when a comment is unterminated (pos is left at its start).
    fn skip_trivia(&mut self) -> (bool, bool) {
        let mut spaced = false;
        loop {
            let c = self.at(self.pos);
            if self.pos >= self.b.len() {
                return (spaced, true);
            }
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
                self.pos += 1;
            } else if (c == b'-' && self.at(self.pos + 1) == b'-' && self.dash_comment_ok())
                || (c == b'#' && self.dialect == Dialect::Mysql)
            {
                self.skip_line();
            } else if c == b'/' && self.at(self.pos + 1) == b'*' {
                if self.dialect == Dialect::Mysql && self.at(self.pos + 2) == b'!' {
                    return (spaced, true); // executable comment: a token
                }
                if !self.skip_block_comment() {
                    return (spaced, false);
                }
            } else {
                return (spaced, true);
            }
            spaced = true;
        }
    }

    /// MySQL needs white space (or a control character, or the end) after `--`.
    fn dash_comment_ok(&self) -> bool {
        self.dialect == Dialect::Postgres || {
            let n = self.at(self.pos + 2);
            self.pos + 2 >= self.b.len() || n <= b' '
        }
    }

    fn skip_line(&mut self) {
        while self.pos < self.b.len() && !matches!(self.b[self.pos], b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    /// PostgreSQL block comments nest; MySQL ones do not.
    fn skip_block_comment(&mut self) -> bool {
        let nests = self.dialect == Dialect::Postgres;
        let mut depth = 0usize;
        let mut i = self.pos;
        while i < self.b.len() {
            let (c, n) = (self.b[i], self.at(i + 1));
            if c == b'/' && n == b'*' && (depth == 0 || nests) {
                depth += 1;
                i += 2;
            } else if c == b'*' && n == b'/' && depth > 0 {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    self.pos = i;
                    return true;
                }
            } else {
                i += 1;
            }
        }
        false
    }

    fn is_ident_start(c: u8) -> bool {
        c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
    }

    fn is_ident_cont(c: u8) -> bool {
        c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
    }

    /// Scan a quoted run starting at `open` (the quote byte at `self.pos`
    /// after any prefix). `backslash`: a backslash escapes the next byte.
    /// Returns false when unterminated.
    fn quoted(&mut self, quote: u8, backslash: bool) -> bool {
        let mut i = self.pos + 1;
        while i < self.b.len() {
            let c = self.b[i];
            if backslash && c == b'\\' {
                i += 2;
            } else if c == quote {
                if self.at(i + 1) == quote && i + 1 < self.b.len() {
                    i += 2; // doubled quote
                } else {
                    self.pos = i + 1;
                    return true;
                }
            } else {
                i += 1;
            }
        }
        false
    }

    /// `$tag$` at `self.pos`? Returns the tag's length including both `$`.
    fn dollar_tag(&self) -> Option<usize> {
        let mut i = self.pos + 1;
        if self.at(i) == b'$' {
            return Some(2);
        }
        if !Self::is_ident_start(self.at(i)) {
            return None;
        }
        while i < self.b.len() && Self::is_ident_cont(self.b[i]) && self.b[i] != b'$' {
            i += 1;
        }
        (self.at(i) == b'$').then_some(i + 1 - self.pos)
    }

    fn dollar_quoted(&mut self, tag_len: usize) -> bool {
        let tag = &self.b[self.pos..self.pos + tag_len];
        let body = self.pos + tag_len;
        let found = self.b[body..]
            .windows(tag_len)
            .position(|w| w == tag)
            .map(|p| body + p + tag_len);
        match found {
            Some(end) => {
                self.pos = end;
                true
            }
            None => false,
        }
    }

    fn number(&mut self) {
        let b = self.b;
        let mut i = self.pos;
        let digit: Option<fn(u8) -> bool> = match self.at(i + 1) | 0x20 {
            _ if self.at(i) != b'0' => None,
            b'x' => Some(|c: u8| c.is_ascii_hexdigit()),
            b'b' => Some(|c: u8| c == b'0' || c == b'1'),
            b'o' if self.dialect == Dialect::Postgres => Some(|c: u8| (b'0'..=b'7').contains(&c)),
            _ => None,
        };
        if let Some(digit) = digit.filter(|d| d(self.at(i + 2))) {
            i += 2;
            while i < b.len() && (digit(b[i]) || b[i] == b'_') {
                i += 1;
            }
        } else {
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
                i += 1;
            }
            if self.at(i) == b'.' && self.at(i + 1) != b'.' {
                i += 1;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
                    i += 1;
                }
            }
            if self.at(i) | 0x20 == b'e' {
                let j = i + 1 + usize::from(matches!(self.at(i + 1), b'+' | b'-'));
                if self.at(j).is_ascii_digit() {
                    i = j;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
        }
        self.pos = i;
    }

    fn word(&mut self) {
        while self.pos < self.b.len() && Self::is_ident_cont(self.b[self.pos]) {
            self.pos += 1;
        }
    }

    /// Which string syntax starts at `self.pos`, if any: (prefix length,
    /// quote byte, backslash escapes?).
    fn string_start(&self) -> Option<(usize, u8, bool)> {
        let c = self.at(self.pos);
        let n = self.at(self.pos + 1);
        let my = self.dialect == Dialect::Mysql;
        match (c | 0x20, n) {
            _ if c == b'\'' => Some((0, b'\'', my)),
            _ if c == b'"' && my => Some((0, b'"', true)),
            (b'e', b'\'') if !my => Some((1, b'\'', true)),
            (b'b' | b'x' | b'n', b'\'') => Some((1, b'\'', my && c | 0x20 == b'n')),
            (b'u', b'&') if !my && self.at(self.pos + 2) == b'\'' => Some((2, b'\'', false)),
            _ => None,
        }
    }
}

impl<'a> Iterator for Scanner<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let (spaced, ok) = self.skip_trivia();
        let start = self.pos;
        let unterminated = |s: &mut Self, u: Unterminated| {
            s.pos = s.b.len();
            Some(Token {
                kind: Kind::Unterminated(u),
                text: s.slice(start, s.b.len()),
                start,
                spaced,
            })
        };
        if !ok {
            return unterminated(self, Unterminated::Comment);
        }
        if start >= self.b.len() {
            return None;
        }
        let c = self.b[start];
        let my = self.dialect == Dialect::Mysql;
        let kind = if let Some((prefix, quote, backslash)) = self.string_start() {
            self.pos += prefix;
            if !self.quoted(quote, backslash) {
                return unterminated(self, Unterminated::String);
            }
            Kind::Str
        } else if c == b'/' && self.at(start + 1) == b'*' {
            // Only reached for MySQL `/*!` (other comments are trivia).
            self.pos += 3;
            while self.at(self.pos).is_ascii_digit() {
                self.pos += 1;
            }
            self.in_exec = true;
            Kind::ExecComment
        } else if c == b'*' && self.in_exec && self.at(start + 1) == b'/' {
            self.pos += 2;
            self.in_exec = false;
            Kind::ExecComment
        } else if (c == b'"' && !my)
            || (c == b'`' && my)
            || (c | 0x20 == b'u' && !my && self.at(start + 1) == b'&' && self.at(start + 2) == b'"')
        {
            if c != b'"' && c != b'`' {
                self.pos += 2;
            }
            if !self.quoted(self.at(self.pos), false) {
                return unterminated(self, Unterminated::QuotedIdent);
            }
            Kind::QuotedIdent
        } else if c == b'$' && !my && self.at(start + 1).is_ascii_digit() {
            self.pos += 1;
            while self.at(self.pos).is_ascii_digit() {
                self.pos += 1;
            }
            Kind::Param
        } else if let Some(tag) = (c == b'$' && !my).then(|| self.dollar_tag()).flatten() {
            if !self.dollar_quoted(tag) {
                return unterminated(self, Unterminated::String);
            }
            Kind::Str
        } else if c.is_ascii_digit() || (c == b'.' && self.at(start + 1).is_ascii_digit()) {
            self.number();
            // MySQL identifiers may start with digits (`1st_table`).
            if my && Self::is_ident_cont(self.at(self.pos)) {
                self.word();
                Kind::Word
            } else {
                Kind::Number
            }
        } else if Self::is_ident_start(c) || (my && c == b'$') {
            self.word();
            Kind::Word
        } else if c == b';' {
            self.pos += 1;
            Kind::Semicolon
        } else if c == b'?' && my {
            self.pos += 1;
            Kind::Param
        } else {
            self.pos += 1;
            Kind::Punct
        };
        Some(Token {
            kind,
            text: self.slice(start, self.pos),
            start,
            spaced,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(d: Dialect, s: &str) -> Vec<(Kind, &str)> {
        Scanner::new(d, s).map(|t| (t.kind, t.text)).collect()
    }

    #[test]
    fn standard_strings_ignore_backslash() {
        let t = kinds(Dialect::Postgres, r"SELECT 'a\'; DROP TABLE x; --'");
        assert_eq!(t[1], (Kind::Str, r"'a\'"));
        assert_eq!(t[2].0, Kind::Semicolon);
    }

    #[test]
    fn e_strings_honour_backslash() {
        let t = kinds(Dialect::Postgres, r"SELECT E'a\'; DROP' ;");
        assert_eq!(t[1], (Kind::Str, r"E'a\'; DROP'"));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn doubled_quotes_and_prefixes() {
        let t = kinds(
            Dialect::Postgres,
            "'it''s' B'01' X'ff' U&'d\\0061' \"a\"\"b\" U&\"x\"",
        );
        let k: Vec<Kind> = t.iter().map(|t| t.0).collect();
        use Kind::*;
        assert_eq!(k, [Str, Str, Str, Str, QuotedIdent, QuotedIdent]);
    }

    #[test]
    fn dollar_quotes_versus_params() {
        let t = kinds(
            Dialect::Postgres,
            "SELECT $1, $$a;b$$, $fn$ $$ ; $fn$, a$b$",
        );
        assert_eq!(t[1], (Kind::Param, "$1"));
        assert_eq!(t[3], (Kind::Str, "$$a;b$$"));
        assert_eq!(t[5], (Kind::Str, "$fn$ $$ ; $fn$"));
        assert_eq!(t[7], (Kind::Word, "a$b$"));
    }

    #[test]
    fn nested_comments() {
        let t = kinds(Dialect::Postgres, "SELECT /* a /* b */ ; */ 1 -- ;x\n; 2");
        assert_eq!(
            t.iter().map(|t| t.1).collect::<Vec<_>>(),
            ["SELECT", "1", ";", "2"]
        );
        assert!(t[1].0 == Kind::Number);
    }

    #[test]
    fn numbers() {
        for n in ["1", "1e5", ".5", "1.5e-3", "0x1F", "1_000"] {
            assert_eq!(kinds(Dialect::Postgres, n), [(Kind::Number, n)], "{n}");
        }
    }

    #[test]
    fn unterminated_input() {
        for (s, u) in [
            ("SELECT 'abc", Unterminated::String),
            ("SELECT \"abc", Unterminated::QuotedIdent),
            ("SELECT /* /* */", Unterminated::Comment),
            ("SELECT $x$ abc $y$", Unterminated::String),
            ("SELECT E'\\'", Unterminated::String),
        ] {
            let last = kinds(Dialect::Postgres, s).pop().map(|t| t.0);
            assert_eq!(last, Some(Kind::Unterminated(u)), "{s}");
        }
    }

    #[test]
    fn mysql_rules() {
        let t = kinds(
            Dialect::Mysql,
            "SELECT 'a\\';x', \"b\", `c``d` # c\n--x -- c\n?",
        );
        use Kind::*;
        let k: Vec<Kind> = t.iter().map(|t| t.0).collect();
        assert_eq!(
            k,
            [
                Word,
                Str,
                Punct,
                Str,
                Punct,
                QuotedIdent,
                Punct,
                Punct,
                Word,
                Param
            ]
        );
    }

    #[test]
    fn mysql_executable_comments_are_code() {
        let t = kinds(Dialect::Mysql, "SELECT 1 /*!50000 ; DROP TABLE t */");
        assert!(t.iter().any(|t| t.1 == "DROP"));
        assert!(t.iter().any(|t| t.0 == Kind::Semicolon));
    }

    #[test]
    fn never_panics_on_odd_bytes() {
        for s in [
            "$",
            "$a",
            "'",
            "\"",
            "/*",
            "/",
            "-",
            "0x",
            "U&",
            "E",
            "\u{e9}t\u{e9}",
            "1e",
            "1e+",
        ] {
            let _ = kinds(Dialect::Postgres, s);
            let _ = kinds(Dialect::Mysql, s);
        }
    }
}
