//! Commands of the `sqlgate` binary beyond `serve`: the approvals client and
//! the offline audit tools.
pub mod approvals;
pub mod audit;
pub mod audit_tools;

pub use crate::safe_text::{terminal_safe, terminal_safe_json};

#[cfg(test)]
mod tests {
    #[test]
    fn terminal_safe_escapes_what_a_terminal_would_obey() {
        let s = super::terminal_safe("a\u{1b}[33Db\u{9b}2Kc\u{202e}d\ne");
        assert_eq!(s, "a\\u{1b}[33Db\\u{9b}2Kc\\u{202e}d\\u{a}e");
        assert_eq!(super::terminal_safe("drop table \"ü\""), "drop table \"ü\"");
    }
}
