//! Showing guest text safely: whatever a guest prints or panics with reaches the
//! terminal and the crash report only through here.
//!
//! Control characters would let a guest move the cursor, erase the report's headline or
//! fake a `flexos-vmm: error:` line, so they are shown as escapes instead: C0 controls
//! (but tab) and DEL as `\x1b`, C1 controls, line/paragraph separators and the bidi
//! overrides as `\u{9b}`; bytes that are not UTF-8 as `\xff`. Everything else, including
//! every printable non-ASCII character, passes unchanged. A backslash is not escaped, so
//! escaping twice changes nothing (the report may escape text the console already did).

use std::fmt::Write;

/// True for characters that are shown as an escape.
fn is_hostile(c: char) -> bool {
    matches!(c,
        '\0'..='\x08' | '\n'..='\x1f' | '\x7f' // C0 but tab, and DEL
        | '\u{80}'..='\u{9f}'                  // C1 (CSI is U+009B)
        | '\u{061c}' | '\u{200e}' | '\u{200f}' // bidi marks
        | '\u{2028}' | '\u{2029}'              // line and paragraph separators
        | '\u{202a}'..='\u{202e}'              // bidi embeddings and overrides
        | '\u{2066}'..='\u{2069}') // bidi isolates
}

/// Appends `c` as it may be shown.
pub fn push_char(out: &mut String, c: char) {
    if !is_hostile(c) {
        out.push(c);
    } else if (c as u32) < 0x80 {
        let _ = write!(out, "\\x{:02x}", c as u32);
    } else {
        let _ = write!(out, "\\u{{{:x}}}", c as u32);
    }
}

/// Appends a byte that is not part of valid UTF-8.
pub fn push_invalid(out: &mut String, byte: u8) {
    let _ = write!(out, "\\x{byte:02x}");
}

/// `text` as one line that is safe to show (newlines escaped too).
pub fn line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_char(&mut out, c);
    }
    out
}

/// Guest bytes as one line that is safe to show; invalid UTF-8 is escaped byte by byte.
pub fn bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c);
        }
        for &b in chunk.invalid() {
            push_invalid(&mut out, b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_text_is_kept() {
        assert_eq!(
            line("\x1b[2K\rflexos-vmm: error: x\0\x7f\u{9b}31m\ttab"),
            "\\x1b[2K\\x0dflexos-vmm: error: x\\x00\\x7f\\u{9b}31m\ttab"
        );
        assert_eq!(line("two\nlines"), "two\\x0alines");
        assert_eq!(
            line("caf\u{e9} \u{1f600} \u{202e}rev"),
            "caf\u{e9} \u{1f600} \\u{202e}rev"
        );
    }

    #[test]
    fn invalid_utf8_is_escaped_byte_by_byte() {
        assert_eq!(
            bytes(b"a\xffb\xe2\x82c\xc3\xa9"),
            "a\\xffb\\xe2\\x82c\u{e9}"
        );
    }

    #[test]
    fn escaping_is_idempotent() {
        let once = bytes(b"\x1b]0;title\x07\xfe\\x41\r\n");
        assert_eq!(line(&once), once);
    }
}
