//! A strict parser of the Prometheus text exposition format (0.0.4), for
//! tests that scrape `/metrics`. Strict where the format is: every family has
//! one `# HELP` and one `# TYPE` before its samples, a family appears once,
//! label values are quoted with `\\`, `\"` and `\n` escapes (and may hold any
//! other character, `{` and `}` too), values are floats. The lenient crates
//! (`prometheus-parse` splits labels at the first `}`) misread route labels
//! such as `/v1/pods/{name}`.

use std::collections::{BTreeMap, HashMap};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Its name, with a histogram's `_bucket`, `_sum` or `_count` suffix.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// A whole exposition, parsed.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Family name to type (`counter`, `gauge`, `histogram`, ...).
    pub types: HashMap<String, String>,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The sum of the samples named `name` whose labels include `labels`; None when none matches.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses `text`, or says which line is wrong and why.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    let mut helps = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !is_name(name) || !helps.insert(name.to_string()) {
                return Err(at("a bad or second HELP"));
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            if !helps.contains(name) {
                return Err(at("TYPE without HELP before it"));
            }
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) || parts.next().is_some() {
                return Err(at("bad TYPE"));
            }
            if out.types.insert(name.to_string(), kind.to_string()).is_some() {
                return Err(at("a family appears twice"));
            }
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else {
            let sample = parse_sample(line).map_err(|e| at(&e))?;
            let family_known = out.types.iter().any(|(f, kind)| {
                sample.name == *f
                    || (kind == "histogram"
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| sample.name.strip_suffix(s) == Some(f.as_str())))
            });
            if !family_known {
                return Err(at("a sample without a TYPE before it"));
            }
            out.samples.push(sample);
        }
    }
    Ok(out)
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !is_name(name) {
        return Err("bad metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        loop {
            // A label name up to `=`, or the end of the set.
            let start = chars.peek().map(|(i, _)| *i).ok_or("unterminated labels")?;
            if after[start..].starts_with('}') {
                rest = &after[start + 1..];
                break;
            }
            let eq = after[start..].find('=').ok_or("label without =")? + start;
            let key = &after[start..eq];
            if !is_name(key) || key.contains(':') {
                return Err(format!("bad label name {key:?}"));
            }
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("label value not quoted".into());
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")? {
                    (_, '"') => break,
                    (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    (_, '\n') => return Err("newline in a label value".into()),
                    (_, c) => value.push(c),
                }
            }
            if labels.insert(key.to_string(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
            match chars.peek().map(|(_, c)| *c) {
                Some(',') => {
                    chars.next();
                }
                Some('}') => {}
                _ => return Err("expected , or } after a label".into()),
            }
        }
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let mut parts = rest.split(' ');
    let value = parts.next().unwrap_or_default();
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|_| format!("bad value {v:?}"))?,
    };
    if let Some(ts) = parts.next()
        && ts.parse::<i64>().is_err()
    {
        return Err(format!("bad timestamp {ts:?}"));
    }
    if parts.next().is_some() {
        return Err("trailing text".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_and_escapes_in_label_values_parse_and_bad_lines_do_not() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\n\
                    a_total{route=\"/v1/pods/{name}\",q=\"x\\\"y\\\\z\"} 3\n";
        let e = parse(text).expect("parses");
        assert_eq!(e.value("a_total", &[("route", "/v1/pods/{name}")]), Some(3.0));
        assert_eq!(e.samples[0].labels["q"], "x\"y\\z");
        for bad in [
            "a_total 1\n",
            "# HELP a_total A.\n# TYPE a_total counter\na_total{route=/x} 1\n",
            "# HELP a_total A.\n# TYPE a_total counter\na_total{r=\"x\"} one\n",
            "# HELP a_total A.\n# TYPE a_total counter\n# HELP a_total A.\n",
            "# HELP a_total A.\n# TYPE a_total counter\na_total{r=\"x\" 1\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
