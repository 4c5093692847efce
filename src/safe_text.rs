//! Agent-controlled text made safe to show a human: in a terminal, a chat
//! message or a web page, a statement must display as what it is.

/// Agent-controlled text made safe for a terminal: control characters (C0
/// with newlines and ESC, DEL, C1 with CSI) and the invisible characters
/// that reorder or hide text (bidi embeddings, overrides, isolates and
/// marks) become their `\u{..}` escapes, so a statement can neither move
/// the cursor nor display as something else.
pub fn terminal_safe(s: &str) -> String {
    escape_where(s, hides).into_owned()
}

/// `s` with every character `bad` picks written as its `\u{..}` escape;
/// borrowed when there is none.
fn escape_where(s: &str, bad: impl Fn(char) -> bool) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(&bad) {
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
        || matches!(
            c,
            // soft hyphen, combining grapheme joiner, Arabic letter mark
            '\u{00ad}' | '\u{034f}' | '\u{061c}'
            // Hangul fillers, Khmer inherent vowels, Mongolian selectors
            | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}' | '\u{180b}'..='\u{180f}'
            // zero-width and direction marks, line/paragraph separators,
            // bidi embeddings, overrides and isolates, invisible operators
            | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}'
            | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{feff}' | '\u{ffa0}' | '\u{fff0}'..='\u{fffb}'
            // tag characters, variation selectors supplement
            | '\u{e0000}'..='\u{e007f}' | '\u{e0100}'..='\u{e01ef}'
        )
}

/// [`terminal_safe`] for a message that may have lines (Slack, Teams, the
/// page): newlines and tabs stay, every other control character and every
/// character that reorders or hides text becomes its `\u{..}` escape.
pub fn message_safe(s: &str) -> std::borrow::Cow<'_, str> {
    escape_where(s, |c| c != '\n' && c != '\t' && hides(c))
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
        assert_eq!(super::message_safe("a\u{ad}b"), "a\\u{ad}b");
        assert!(super::message_safe("x\u{e0041}\u{2028}").contains("\\u{e0041}\\u{2028}"));
    }
}
