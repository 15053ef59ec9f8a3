//! Durations as human strings: `500ms`, `2s`, `1m 30s`.
//!
//! The grammar is [`DURATION_PATTERN`]: `0`, or terms of a number (with an
//! optional decimal part) and a unit, the unit after at most one space, the
//! terms after at most one space; units as `humantime` names them. It is a
//! subset of what `humantime` parses (which also takes spaces inside numbers
//! and anywhere else), so that the OpenAPI document can say it exactly with a
//! `pattern`: a value matches the pattern if and only if it parses (range
//! checks aside). `humantime` computes the value.

use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serializer};

/// Every duration the API takes matches this (and every one it writes).
pub const DURATION_PATTERN: &str = concat!(
    r"^(?:0|[0-9]+(?:\.[0-9]+)? ?",
    r"(?:nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y)",
    r"(?: ?[0-9]+(?:\.[0-9]+)? ?",
    r"(?:nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y))*)$"
);

/// Parses a duration of [`DURATION_PATTERN`]'s grammar; the error says what to write.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    static GRAMMAR: LazyLock<Regex> = LazyLock::new(|| Regex::new(DURATION_PATTERN).expect("valid regex"));
    let hint = "write a number and a unit, e.g. \"500ms\", \"2s\", \"1m 30s\" or \"1h\"";
    if !GRAMMAR.is_match(text) {
        return Err(format!("{text:?} is not a duration; {hint}"));
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration ({e}); {hint}"))
}

pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// The same for an optional duration: `None` is left out.
pub(super) mod opt {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub(in crate::spec) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub(in crate::spec) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_takes_what_humantime_writes_and_common_spellings() {
        for ok in [
            "0",
            "500ms",
            "2s",
            "1m 30s",
            "1m30s",
            "1.5s",
            "10 s",
            "1h 2m 3s 4ms",
            "2 minutes",
            "1µs",
            "3d",
        ] {
            assert!(parse_duration(ok).is_ok(), "{ok}");
        }
        for d in [
            Duration::from_millis(1500),
            Duration::from_secs(3_723),
            Duration::from_nanos(1),
        ] {
            let text = humantime::format_duration(d).to_string();
            assert_eq!(parse_duration(&text), Ok(d), "{text}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_a_hint() {
        for bad in [
            "", " ", "5", "s", "1 0s", "1s ", " 1s", "1  s", "1.s", "PT5S", "P1D", "-1s", "1x", "1s\n",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains("e.g."), "{err}");
        }
    }
}
