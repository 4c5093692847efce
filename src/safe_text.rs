//! Agent-controlled text made safe to show a human: in a terminal, a chat
//! message or a web page, a statement must display as what it is.

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
pub fn hides(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// [`terminal_safe`] for a message that may have lines (Slack, Teams, the
/// page): newlines and tabs stay, every other control character and every
/// character that reorders or hides text becomes its `\u{..}` escape.
pub fn message_safe(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| c != '\n' && c != '\t' && hides(c);
    if !s.chars().any(bad) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| {
                if bad(c) {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn message_safe_keeps_lines_and_escapes_the_rest() {
        assert_eq!(
            super::message_safe("a\n\tb\u{202e}c\u{1b}"),
            "a\n\tb\\u{202e}c\\u{1b}"
        );
        assert_eq!(super::message_safe("plain ü"), "plain ü");
    }
}
