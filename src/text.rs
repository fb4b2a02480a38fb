//! Text from devices on its way to storage and logs: control characters made visible.
//!
//! Devices may send any character the XML parser lets through. Tab, line feed and carriage return
//! are kept; every other control character (C0, DEL, C1) is stored as the visible escape
//! `\u{1b}`, so that no stored text can drive a terminal or forge a line in an export. Logs go
//! further and escape everything a line could be broken by (`str::escape_debug`).

/// `text` with control characters other than tab, line feed and carriage return written as
/// `\u{XX}`; `None` if it had none (the common case costs no copy).
pub fn escape_controls(text: &str) -> Option<String> {
    let is_odd = |c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r');
    if !text.chars().any(is_odd) {
        return None;
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_odd(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Escapes `text` in place (see [`escape_controls`]); returns whether it changed.
pub fn escape_in_place(text: &mut String) -> bool {
    match escape_controls(text) {
        Some(escaped) => {
            *text = escaped;
            true
        }
        None => false,
    }
}

/// Escapes an optional text in place.
pub fn escape_opt(text: &mut Option<String>) -> bool {
    text.as_mut().is_some_and(escape_in_place)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_odd_controls_are_escaped() {
        assert_eq!(escape_controls("plain\ttext\r\n"), None);
        assert_eq!(
            escape_controls("a\u{1b}[31mred\u{7f}\u{85}").as_deref(),
            Some("a\\u{1b}[31mred\\u{7f}\\u{85}")
        );
        let mut s = String::from("x\u{0}y");
        assert!(escape_in_place(&mut s));
        assert_eq!(s, "x\\u{0}y");
        let mut none: Option<String> = None;
        assert!(!escape_opt(&mut none));
    }
}
