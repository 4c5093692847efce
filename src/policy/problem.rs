//! Where a rule file is wrong, said the way editors and CI logs understand:
//! `file:line:col: message`.
//!
//! Validation never stops at the first mistake: an operator fixing a policy
//! wants every problem in one run, so the loader collects [`Problem`]s and only
//! the caller decides whether any of them is fatal.

use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with a rule file. `line` and `column` are 1-based; both are
/// 0 when the problem concerns the file as a whole (it cannot be read, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Problem {
    /// A problem about a whole file, with no position inside it.
    pub fn whole_file(file: &Path, message: String) -> Problem {
        Problem {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message,
        }
    }

    /// A problem at byte `offset` of `text` (the contents of `file`).
    pub fn at(file: &Path, text: &str, offset: usize, message: String) -> Problem {
        let (line, column) = line_col(text, offset);
        Problem {
            file: file.to_path_buf(),
            line,
            column,
            message,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// Why a policy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The rule files have problems; every one found is listed, in file order.
    #[error("{}", render(.0))]
    Invalid(Vec<Problem>),
}

impl PolicyError {
    /// Every problem found, in file order, then by position.
    pub fn problems(&self) -> &[Problem] {
        match self {
            PolicyError::Invalid(problems) => problems,
        }
    }
}

fn render(problems: &[Problem]) -> String {
    let mut out = match problems.len() {
        1 => "1 problem in the rules:".to_string(),
        n => format!("{n} problems in the rules:"),
    };
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&p.to_string());
    }
    out
}

/// 1-based line and column (in characters, not bytes) of byte `offset`.
/// An offset past the end or inside a character is clamped rather than
/// trusted: positions come from a parser and must never cause a panic.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 1), (1, 2));
        assert_eq!(line_col(text, 3), (2, 1));
        // `é` is two bytes; the column after it counts characters.
        assert_eq!(line_col(text, 7), (2, 4));
        assert_eq!(line_col(text, 8), (3, 1));
    }

    #[test]
    fn line_col_never_panics_on_bad_offsets() {
        assert_eq!(line_col("é", 1), (1, 1));
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    #[test]
    fn display_omits_position_for_whole_file_problems() {
        let p = Problem::whole_file(Path::new("r.toml"), "cannot read".into());
        assert_eq!(p.to_string(), "r.toml: cannot read");
        let p = Problem::at(Path::new("r.toml"), "a\nb", 2, "bad".into());
        assert_eq!(p.to_string(), "r.toml:2:1: bad");
    }
}
