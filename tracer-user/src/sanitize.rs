//! Text that a watched process controls (its `comm`, its executable's path, names read
//! from its binary) on its way to a human or a label: every sink (the daemon's log
//! lines, the text report, metric labels) passes it through here, so none can be made
//! to print a forged line, move a terminal's cursor or grow a series without bound.
//!
//! - Control characters (C0 including newline and ESC, DEL, C1) and the Unicode
//!   controls that reorder or hide text (bidi overrides and isolates, zero-width
//!   characters) are written as `\x1b` / `\u{202e}` escapes; a backslash stays as is.
//!   Letters of any script pass unchanged.
//! - [`capped`] cuts a value to a byte budget on a character boundary, keeping its end
//!   (the file name of a path) after a `~`.
//!
//! The JSON report is exempt: JSON escapes control characters itself, and its readers
//! get the name exactly as the kernel has it.

use std::{borrow::Cow, fmt::Write};

/// Whether `c` must not reach a terminal or a log line raw.
fn is_hazard(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}'   // zero-width space/joiners, LRM/RLM
            | '\u{2028}'..='\u{202e}' // line/paragraph separators, bidi embeddings/overrides
            | '\u{2060}'..='\u{2069}' // word joiner, invisible operators, bidi isolates
            | '\u{feff}'              // zero-width no-break space
        )
}

/// `text` with every hazardous character escaped (see the module doc); borrowed when
/// there is none, which is nearly always.
pub fn log_text(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hazard) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !is_hazard(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

/// `text` escaped and cut to at most `max_bytes` bytes: when cut, `~` then the end of
/// the text (for a path, its file name), on a character boundary.
pub fn capped(text: &str, max_bytes: usize) -> Cow<'_, str> {
    let text = log_text(text);
    if text.len() <= max_bytes {
        return text;
    }
    let keep = max_bytes.saturating_sub(1);
    let mut start = text.len() - keep;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    Cow::Owned(format!("~{}", &text[start..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that newlines, ANSI escapes, DEL, C1 controls and bidi overrides are
    /// escaped, that ordinary names of any script pass unchanged (and unallocated), and
    /// that a forged log line cannot be made.
    #[test]
    fn hazards_are_escaped_names_kept() {
        assert!(matches!(log_text("nginx: worker"), Cow::Borrowed(_)));
        assert_eq!(log_text("données-服务 "), "données-服务 ");
        assert_eq!(
            log_text("x\nleakscope: LEAK pid 1"),
            "x\\x0aleakscope: LEAK pid 1"
        );
        assert_eq!(log_text("\x1b[2J\x1b[31mred"), "\\x1b[2J\\x1b[31mred");
        assert_eq!(log_text("a\r\t\x7f\u{85}b"), "a\\x0d\\x09\\x7f\\x85b");
        assert_eq!(log_text("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
        assert_eq!(log_text("a\u{200b}b\u{2066}"), "a\\u{200b}b\\u{2066}");
        assert!(!log_text("\u{2028}x").contains('\u{2028}'));
    }

    /// Check that capping keeps short values, cuts long ones to the budget keeping
    /// their end after "~", on a character boundary, and escapes before measuring.
    #[test]
    fn capping_keeps_the_end() {
        assert_eq!(capped("/usr/bin/x", 16), "/usr/bin/x");
        let long = format!("/{}/server", "a".repeat(300));
        let cut = capped(&long, 32);
        assert_eq!(cut.len(), 32);
        assert!(cut.starts_with('~') && cut.ends_with("aaa/server"), "{cut}");
        let wide = format!("/{}", "é".repeat(100));
        let cut = capped(&wide, 20);
        assert!(cut.len() <= 20 && cut.starts_with("~é"), "{cut}");
        let nl = format!("{}\n", "x".repeat(40));
        assert_eq!(capped(&nl, 10), "~xxxxx\\x0a");
    }
}
