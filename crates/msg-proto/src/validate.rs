//! Input rules shared by the server (which enforces them) and clients (which
//! can refuse bad input early with the same texts).

/// Longest message text, in characters, after trimming.
pub const MAX_TEXT_CHARS: usize = 4000;

/// Longest username, in characters.
pub const MAX_USERNAME_LEN: usize = 32;

/// How a username must look, in the words every error about one uses.
pub const USERNAME_RULE: &str =
    "1-32 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit";

/// 1–32 characters of `[A-Za-z0-9_.-]`, the first a letter or digit: a name
/// can never pass for a command-line flag (`-v`, `--help`) or a path (`..`).
pub fn is_valid_username(name: &str) -> bool {
    name.len() <= MAX_USERNAME_LEN
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The form two names are compared in for uniqueness: `Luke` and `luke`
/// cannot both be accounts.
pub fn username_key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Any non-empty UTF-8 without a line break (the credentials file is line-based).
pub fn is_valid_password(password: &str) -> bool {
    !password.is_empty() && !password.contains(['\n', '\r'])
}

/// Why a message text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextError {
    Empty,
    TooLong,
}

/// Trims the text and checks its length: 1 to [`MAX_TEXT_CHARS`] characters.
pub fn message_text(text: &str) -> Result<&str, TextError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        Err(TextError::Empty)
    } else if trimmed.chars().count() > MAX_TEXT_CHARS {
        Err(TextError::TooLong)
    } else {
        Ok(trimmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(is_valid_username("hans"));
        assert!(is_valid_username("r2d2.x_y-z"));
        assert!(is_valid_username(&"a".repeat(32)));
        assert!(!is_valid_username(&"a".repeat(33)));
        assert!(!is_valid_username(""));
        assert!(!is_valid_username("han s"));
        assert!(!is_valid_username("hänsel"));
        assert!(!is_valid_username("a/b"));
        for flag_or_path in ["-v", "--help", "..", ".hidden", "_x"] {
            assert!(!is_valid_username(flag_or_path), "{flag_or_path}");
        }
        assert!(is_valid_username("7of9"));
        assert_eq!(username_key("Luke"), username_key("luke"));
    }

    #[test]
    fn passwords() {
        assert!(is_valid_password("falcon*solo"));
        assert!(is_valid_password("pässwörd with spaces"));
        assert!(!is_valid_password(""));
        assert!(!is_valid_password("two\nlines"));
    }

    #[test]
    fn texts() {
        assert_eq!(message_text("  hi  "), Ok("hi"));
        assert_eq!(message_text(" \n\t "), Err(TextError::Empty));
        let max = "é".repeat(MAX_TEXT_CHARS);
        assert_eq!(message_text(&max), Ok(max.as_str()));
        let over = "é".repeat(MAX_TEXT_CHARS + 1);
        assert_eq!(message_text(&over), Err(TextError::TooLong));
    }
}
