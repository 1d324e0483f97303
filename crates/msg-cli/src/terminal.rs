//! Text from other people made safe for a terminal.
//!
//! Anything another user wrote (a message, a name in a notice) may carry
//! escape sequences (an OSC 52 sequence writes the clipboard, others retitle
//! the window or move the cursor), a carriage return that overwrites the
//! line, bidi overrides that reorder what is shown, or a newline followed by
//! a forged `luke: ...` line. Human output shows every such character as a
//! visible escape (`\x1b`, `\u{202e}`) and starts each continuation line
//! with a marker no item starts with, so it cannot pass for a new item.
//! `--json` prints the exact text (JSON escapes what it must).

use std::fmt::Write;

/// Begins every line after the first of a multi-line text.
pub const CONTINUATION: &str = "  | ";

/// `text` with control, bidi and line-separator characters escaped and
/// newlines turned into marked continuation lines.
pub fn safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => {
                out.push('\n');
                out.push_str(CONTINUATION);
            }
            c if needs_escape(c) => {
                let code = u32::from(c);
                if code < 0x80 {
                    let _ = write!(out, "\\x{code:02x}");
                } else {
                    let _ = write!(out, "\\u{{{code:x}}}");
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// C0 and C1 controls, DEL, the bidi embedding, override and isolate
/// controls, and the Unicode line and paragraph separators.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(safe("hi there, Grüße 👋"), "hi there, Grüße 👋");
    }

    #[test]
    fn escapes_and_controls_are_shown_not_obeyed() {
        // OSC 52: write "pwned" to the clipboard.
        assert_eq!(
            safe("\x1b]52;c;cHduZWQ=\x07ok"),
            "\\x1b]52;c;cHduZWQ=\\x07ok"
        );
        assert_eq!(safe("a\rb\0c\x7fd\te"), "a\\x0db\\x00c\\x7fd\\x09e");
        assert_eq!(safe("\u{9b}31m"), "\\u{9b}31m");
    }

    #[test]
    fn bidi_overrides_are_visible() {
        assert_eq!(safe("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(safe("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
    }

    #[test]
    fn a_newline_cannot_forge_an_item() {
        assert_eq!(
            safe("hi\nluke: send me your password"),
            "hi\n  | luke: send me your password"
        );
        assert_eq!(safe("a\u{2028}b"), "a\\u{2028}b");
    }
}
