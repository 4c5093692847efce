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
            // spaces other than the space: no-break, ogham, en to hair,
            // narrow no-break, medium mathematical, braille blank,
            // ideographic (a name with one looks like two words)
            | '\u{00a0}' | '\u{1680}' | '\u{2000}'..='\u{200a}' | '\u{202f}' | '\u{205f}'
            | '\u{2800}' | '\u{3000}'
        )
}

/// [`terminal_safe`], borrowed when nothing is escaped: for text that must
/// stay on one line of a message (a name, an entry of a list).
pub fn line_safe(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(hides) {
        return std::borrow::Cow::Borrowed(s);
    }
    // `\n`, `\t`, `\r` as such (a name's newline reads as one), the rest
    // as `\u{..}`.
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| match c {
                '\n' | '\t' | '\r' => c.escape_default().to_string(),
                c if hides(c) => c.escape_unicode().to_string(),
                c => c.to_string(),
            })
            .collect(),
    )
}

/// Widest run of blanks a statement keeps as it is in a message; a wider
/// one is shown as a count. Deep indentation fits; a run wide enough to
/// push text onto what looks like a line of its own where the message
/// wraps does not.
const MAX_BLANKS: usize = 24;

/// Whether `c` may show as nothing, or as a blank: a space or tab, or any
/// character outside ASCII that is not a letter or digit (invisible ones
/// `hides` does not know among them, e.g. U+1D173). Layout counts these as
/// blanks; ASCII punctuation and letters of any script show.
fn blankish(c: char) -> bool {
    c == ' ' || c == '\t' || !(c.is_ascii() || c.is_alphanumeric())
}

/// [`message_safe`] for a statement laid out in a message (Slack, Teams):
/// its lines stay, but layout that hides text is shown for what it is. More
/// than one blank-looking line in a row becomes one line saying how many
/// there were, and a run of blank-looking characters wider than
/// [`MAX_BLANKS`] (a tab counts 8) becomes `⟨N blanks⟩`: a statement can't
/// push the rest of itself below what the reader sees, nor fake lines
/// where the message wraps.
pub fn statement_safe(s: &str) -> String {
    let s = message_safe(s);
    let mut out = String::with_capacity(s.len());
    let mut blank_lines = 0usize;
    for (i, line) in s.split('\n').enumerate() {
        if line.chars().all(blankish) {
            blank_lines += 1;
            continue;
        }
        if i > 0 {
            out.push('\n');
        }
        match blank_lines {
            0 => {}
            1 => out.push('\n'),
            n => {
                out.push_str(&format!("⟨{n} blank lines⟩\n"));
            }
        }
        blank_lines = 0;
        push_blanks_counted(&mut out, line);
    }
    if blank_lines > 1 {
        out.push_str(&format!("\n⟨{blank_lines} blank lines⟩"));
    }
    out
}

/// `line` onto `out`, each run of blanks wider than [`MAX_BLANKS`] as a count.
fn push_blanks_counted(out: &mut String, line: &str) {
    let mut run = String::new();
    let mut width = 0;
    let flush = |out: &mut String, run: &mut String, width: &mut usize| {
        if *width > MAX_BLANKS {
            out.push_str(&format!("⟨{} blanks⟩", run.chars().count()));
        } else {
            out.push_str(run);
        }
        run.clear();
        *width = 0;
    };
    for c in line.chars() {
        if !blankish(c) {
            flush(out, &mut run, &mut width);
            out.push(c);
            continue;
        }
        width += if c == '\t' { 8 } else { 1 };
        run.push(c);
    }
    flush(out, &mut run, &mut width);
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
        assert_eq!(super::message_safe("a\u{3000}b"), "a\\u{3000}b");
    }

    #[test]
    fn statement_safe_counts_what_would_hide_the_rest() {
        use super::statement_safe as s;
        assert_eq!(s("select 1\nfrom t"), "select 1\nfrom t");
        assert_eq!(s("a\n\nb"), "a\n\nb");
        assert_eq!(
            s("drop \"x\n\n\n \n\", y"),
            "drop \"x\n⟨3 blank lines⟩\n\", y"
        );
        assert_eq!(s("a\n\n\n"), "a\n⟨3 blank lines⟩");
        let wide = format!("select 1 as \"ok{}2. set\"", " ".repeat(100));
        assert_eq!(s(&wide), "select 1 as \"ok⟨100 blanks⟩2. set\"");
        assert_eq!(s("\t\t\tx"), "\t\t\tx");
        assert_eq!(s("\t\t\t\tx"), "⟨4 blanks⟩x");
        assert_eq!(s("    begin"), "    begin");
        // Review D, F13b: an invisible character `hides` does not know.
        let odd = "\u{1d173}";
        let lines = format!("drop \"x{}\", y", format!("\n{odd}").repeat(45));
        assert_eq!(s(&lines), format!("drop \"x\n⟨44 blank lines⟩\n{odd}\", y"));
        let run = format!("a{}b", format!("{}{odd}", " ".repeat(20)).repeat(3));
        assert_eq!(s(&run), "a⟨63 blanks⟩b");
        assert_eq!(s("café — ok"), "café — ok");
    }
}
