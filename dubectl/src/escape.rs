//! Terminal safety: text that came from containers (log lines, crash log
//! tails in statuses and events) is printed with control characters made
//! visible, so a replica cannot move the cursor, rewrite what is on screen,
//! set the window title, ring the bell or hide text behind a carriage return
//! or a bidirectional override.

use std::borrow::Cow;

/// True for characters a terminal may act on instead of showing: C0 controls
/// (but tab), DEL, C1 controls (U+0080–U+009F, e.g. the one-byte CSI U+009B),
/// and the Unicode bidirectional overrides and isolates.
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\t') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every unsafe character written as an escape: `\r`, `\n` (only
/// where `keep_newlines` is false), `\x1b` (ESC), `\x07` (BEL), `\u{9b}`,
/// `\u{202e}`. Tabs stay, and so do newlines when `keep_newlines`. Safe text is
/// returned as it is, without a copy.
pub fn escape_control(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| is_unsafe(c) && !(keep_newlines && c == '\n');
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !unsafe_char(c) {
            out.push(c);
            continue;
        }
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// [`escape_control`] for one line of a table or a field: newlines escaped too.
pub fn line(text: &str) -> String {
    escape_control(text, false).into_owned()
}

/// A JSON text (as serde_json writes it) with every unsafe character written
/// as a JSON `\uXXXX` escape: the same data, safe on a terminal. serde_json
/// escapes C0 controls itself but leaves DEL, C1 controls and bidirectional
/// overrides raw; outside strings its output holds only newlines and spaces.
pub fn json(text: String) -> String {
    if !text.chars().any(|c| c != '\n' && is_unsafe(c)) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c != '\n' && is_unsafe(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// `value` as YAML that shows no unsafe character: each string holding one
/// is written double-quoted with `\uXXXX` escapes (YAML reads them back as
/// the same string), the others as serde_yaml_ng writes them. The emitter
/// alone would print bidirectional overrides raw (YAML deems them printable).
pub fn yaml<T: serde::Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    let plain = serde_yaml_ng::to_string(value)?;
    if !plain.chars().any(|c| c != '\n' && is_unsafe(c)) {
        return Ok(plain);
    }
    // Strings with an unsafe character become placeholders (plain scalars),
    // then the placeholders become double-quoted, escaped scalars.
    let nonce = (0u32..)
        .map(|n| format!("dubectl-escaped-{n}-"))
        .find(|nonce| !plain.contains(nonce.as_str()))
        .unwrap_or_default();
    let mut quoted = Vec::new();
    let value = placeholders(serde_yaml_ng::to_value(value)?, &nonce, &mut quoted);
    let mut text = serde_yaml_ng::to_string(&value)?;
    for (i, q) in quoted.iter().enumerate() {
        text = text.replace(&format!("{nonce}{i}z"), q);
    }
    Ok(text)
}

fn placeholders(value: serde_yaml_ng::Value, nonce: &str, quoted: &mut Vec<String>) -> serde_yaml_ng::Value {
    use serde_yaml_ng::Value;
    match value {
        Value::String(s) if s.chars().any(is_unsafe) => {
            let text = json(serde_json::to_string(&s).unwrap_or_default());
            quoted.push(text);
            Value::String(format!("{nonce}{}z", quoted.len() - 1))
        }
        Value::Sequence(items) => Value::Sequence(items.into_iter().map(|v| placeholders(v, nonce, quoted)).collect()),
        Value::Mapping(map) => Value::Mapping(
            map.into_iter()
                .map(|(k, v)| (placeholders(k, nonce, quoted), placeholders(v, nonce, quoted)))
                .collect(),
        ),
        Value::Tagged(mut tagged) => {
            tagged.value = placeholders(tagged.value, nonce, quoted);
            Value::Tagged(tagged)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_escape_unsafe_strings_and_keep_the_data() {
        let value = serde_json::json!({
            "env": {"NOTE": "abc\u{202e}fed", "PLAIN": "ok", "K\u{2066}": ["x\u{9b}y", "multi\nline"]},
            "issuer": "CN=\u{202e}evil\u{7f}",
            "n": 3
        });
        let text = yaml(&value).expect("yaml");
        assert!(!text.chars().any(|c| c != '\n' && is_unsafe(c)), "{text}");
        assert!(text.contains("\\u202e"), "{text}");
        let back: serde_json::Value = serde_yaml_ng::from_str(&text).expect("valid YAML");
        assert_eq!(back, value, "{text}");
        let text = json(serde_json::to_string_pretty(&value).expect("json"));
        assert!(!text.chars().any(|c| c != '\n' && is_unsafe(c)), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(back, value);
        // Safe data is written exactly as before.
        let safe = serde_json::json!({"a": "b", "c": ["d"]});
        assert_eq!(
            yaml(&safe).expect("yaml"),
            serde_yaml_ng::to_string(&safe).expect("yaml")
        );
    }

    #[test]
    fn escapes_what_a_terminal_would_act_on() {
        assert_eq!(
            escape_control("plain text, tabs\there", false),
            "plain text, tabs\there"
        );
        assert!(matches!(escape_control("plain", false), Cow::Borrowed(_)));
        // Colour (CSI), a cursor move, a window title (OSC ... BEL), a bell.
        assert_eq!(
            escape_control("\x1b[31mred\x1b[0m \x1b[2J\x1b]0;pwned\x07 ding\x07", false),
            "\\x1b[31mred\\x1b[0m \\x1b[2J\\x1b]0;pwned\\x07 ding\\x07"
        );
        // A carriage return that would hide what came before it.
        assert_eq!(escape_control("rm -rf /\rls", false), "rm -rf /\\rls");
        assert_eq!(escape_control("a\nb", false), "a\\nb");
        assert_eq!(escape_control("a\nb", true), "a\nb");
        assert_eq!(escape_control("\0\x08\x7f", false), "\\x00\\x08\\x7f");
        // The one-byte CSI and a right-to-left override.
        assert_eq!(escape_control("\u{9b}2J \u{202e}txt", false), "\\u{9b}2J \\u{202e}txt");
        // Other Unicode stays.
        assert_eq!(escape_control("grüße, 日本, é", false), "grüße, 日本, é");
    }

    #[test]
    fn the_output_has_no_control_character_left() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let out = escape_control(&all, false);
        assert!(!out.chars().any(is_unsafe), "{out:?}");
        assert!(out.contains('\t'));
    }
}
