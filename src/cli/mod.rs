//! Commands of the `sqlgate` binary beyond `serve`: the approvals client and
//! the offline audit tools.
pub mod approvals;
pub mod audit;
pub mod audit_tools;

/// Agent-controlled text made safe for a terminal: control characters (C0
/// with newlines and ESC, DEL, C1 with CSI) and the invisible characters
/// that reorder or hide text (bidi embeddings, overrides, isolates and
/// marks) become their `\u{..}` escapes, so a statement can neither move
/// the cursor nor display as something else.
pub fn terminal_safe(s: &str) -> String {
    if !s.chars().any(hides) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if hides(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Pretty JSON with [`terminal_safe`] applied to the text: raw characters
/// only occur inside strings there, where `\u{..}`… is not valid JSON, so
/// they are written as JSON `\uXXXX` escapes instead.
pub fn terminal_safe_json(v: &impl serde::Serialize) -> serde_json::Result<String> {
    let s = serde_json::to_string_pretty(v)?;
    Ok(s.chars()
        .map(|c| {
            if c != '\n' && hides(c) {
                format!("\\u{:04x}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect())
}

/// A character a terminal obeys or that changes how text around it shows.
fn hides(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    #[test]
    fn terminal_safe_escapes_what_a_terminal_would_obey() {
        let s = super::terminal_safe("a\u{1b}[33Db\u{9b}2Kc\u{202e}d\ne");
        assert_eq!(s, "a\\u{1b}[33Db\\u{9b}2Kc\\u{202e}d\\u{a}e");
        assert_eq!(super::terminal_safe("drop table \"ü\""), "drop table \"ü\"");
    }
}
