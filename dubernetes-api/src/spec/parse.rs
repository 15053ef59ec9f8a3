//! Reading specs from YAML and JSON: strict parsing, the size and nesting
//! checks before any parser runs, and the bound on alias expansion.

use serde::Deserialize;

use super::{MAX_SPEC_BYTES, MAX_SPEC_DEPTH, MAX_STORED_SPEC_BYTES, PodSpec, ValidationError};

/// A YAML document that could not be read as a pod spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The YAML itself is broken, or has a field of the wrong type or an unknown field.
    #[error("document {document}{}: {message}", location.map(|(l, c)| format!(", line {l}, column {c}")).unwrap_or_default())]
    Syntax {
        /// Index of the document in a multi-document file, from 1.
        document: usize,
        /// Line and column, from 1, where known.
        location: Option<(usize, usize)>,
        /// What the parser said.
        message: String,
    },
    /// The document parsed but a field is invalid.
    #[error("document {document}: {source}")]
    Invalid {
        /// Index of the document in a multi-document file, from 1.
        document: usize,
        /// The invalid fields.
        #[source]
        source: ValidationError,
    },
    /// Two documents name the same pod.
    #[error("document {document}: pod {name:?} is defined twice in the same input")]
    Duplicate {
        /// Index of the second document, from 1.
        document: usize,
        /// The repeated name.
        name: String,
    },
    /// The input is larger than [`MAX_SPEC_BYTES`].
    #[error("the input is {size} bytes; at most {max} are accepted")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The input nests deeper than [`MAX_SPEC_DEPTH`].
    #[error("the input nests deeper than {max} levels (line {line}); a pod spec needs a handful")]
    TooDeep {
        /// Line where the limit was passed, from 1.
        line: usize,
        /// The limit.
        max: usize,
    },
    /// A document expands (aliases repeated in full) to more than
    /// [`MAX_STORED_SPEC_BYTES`], or a spec encodes to more than that.
    #[error(
        "document {document}{}: the pod spec would be {} bytes or more once {}; at most {max} bytes are stored (MAX_STORED_SPEC_BYTES){}",
        line.map(|l| format!(", line {l}")).unwrap_or_default(),
        size,
        if *aliases { "its aliases are expanded" } else { "stored" },
        if *aliases { ": repeat less through anchors and aliases (`*name`), or move large values into the image" } else { ": move large values (env, args) into the image or a file it reads" }
    )]
    SpecTooLarge {
        /// Index of the document in a multi-document file, from 1.
        document: usize,
        /// Line where the expansion passed the limit, when found by the YAML pre-pass.
        line: Option<usize>,
        /// The size reached (a lower bound when the pre-pass stopped early).
        size: usize,
        /// The limit.
        max: usize,
        /// Whether aliases made it that large.
        aliases: bool,
    },
}

impl SpecError {
    /// The field at fault, as a path like `replicas` or `access.host`, when known.
    pub fn field(&self) -> Option<String> {
        match self {
            SpecError::Syntax { message, .. } => syntax_field(message),
            SpecError::Invalid { source, .. } => source.problems.first().map(|p| p.field.clone()),
            SpecError::Duplicate { .. } => Some("name".into()),
            SpecError::TooLarge { .. } | SpecError::TooDeep { .. } => None,
            SpecError::SpecTooLarge { .. } => Some("body".into()),
        }
    }
}

/// Writes every integral JSON number as an integer: `3.0` is the integer 3
/// (as JSON Schema, and so the OpenAPI document, counts it), which serde's
/// integer fields would otherwise refuse. Non-integral numbers stay as they are.
pub fn integral_numbers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                // Exact below 2^53: the float holds this integer.
                *value = serde_json::Value::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// The field a parser message is about: its leading `path: ` (serde_yaml_ng
/// prefixes nested errors with it), else the field named by
/// "unknown field `x`" or "missing field `x`".
fn syntax_field(message: &str) -> Option<String> {
    let named = |marker: &str| {
        let rest = &message[message.find(marker)? + marker.len()..];
        Some(rest[..rest.find('`')?].to_string())
    };
    let prefix = message.split_once(": ").map(|(head, _)| head).filter(|head| {
        !head.is_empty()
            && head
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '[' | ']'))
    });
    let leaf = named("unknown field `").or_else(|| named("missing field `"));
    match (prefix, leaf) {
        (Some(p), Some(l)) => Some(format!("{p}.{l}")),
        (Some(p), None) => Some(p.to_string()),
        (None, l) => l,
    }
}

/// Rejects input that is too large or nests too deep, before any parser sees it.
///
/// Two counts, because the YAML parser's cost grows fast with nesting:
/// - depth of `[`/`{` outside quoted strings and comments, and indentation,
///   against [`MAX_SPEC_DEPTH`];
/// - as a backstop that no quoting trick can fool (a block scalar holding a
///   quote, a `#` that is not a comment...), the depth counting *every*
///   bracket, quoted or not, against four times that.
fn check_shape(text: &str) -> Result<(), SpecError> {
    if text.len() > MAX_SPEC_BYTES {
        return Err(SpecError::TooLarge {
            size: text.len(),
            max: MAX_SPEC_BYTES,
        });
    }
    let mut depth = 0usize;
    let mut raw_depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches([' ', '-']).len();
        let too_deep = || SpecError::TooDeep {
            line: i + 1,
            max: MAX_SPEC_DEPTH,
        };
        if quote.is_none() && indent / 2 > MAX_SPEC_DEPTH {
            return Err(too_deep());
        }
        for b in line.bytes() {
            match b {
                b'[' | b'{' => {
                    raw_depth += 1;
                    if raw_depth > 4 * MAX_SPEC_DEPTH {
                        return Err(too_deep());
                    }
                }
                b']' | b'}' => raw_depth = raw_depth.saturating_sub(1),
                _ => {}
            }
        }
        // Where a quote may open a quoted scalar: at the start of a value.
        let mut previous = b' ';
        for b in line.bytes() {
            match quote {
                Some(q) => {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' && q == '"' {
                        escaped = true;
                    } else if char::from(b) == q {
                        quote = None;
                    }
                }
                None => match b {
                    b'"' | b'\'' if matches!(previous, b' ' | b'\t' | b':' | b'-' | b'[' | b'{' | b',' | b'?') => {
                        quote = Some(char::from(b));
                    }
                    b'#' if matches!(previous, b' ' | b'\t') => break,
                    b'[' | b'{' => {
                        depth += 1;
                        if depth > MAX_SPEC_DEPTH {
                            return Err(too_deep());
                        }
                    }
                    b']' | b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                },
            }
            previous = b;
        }
        escaped = false;
    }
    Ok(())
}

/// Parses one pod spec from JSON with the same strictness, limits and field
/// paths as [`parse_specs`]: the JSON is read, then handed to the YAML reader
/// (JSON values are YAML values), so both formats report errors alike.
pub fn parse_json_spec(json: &str) -> Result<PodSpec, SpecError> {
    check_shape(json)?;
    let mut value: serde_json::Value = serde_json::from_str(json).map_err(|e| SpecError::Syntax {
        document: 1,
        location: Some((e.line(), e.column())),
        message: format!("invalid JSON: {e}"),
    })?;
    if !value.is_object() {
        return Err(SpecError::Syntax {
            document: 1,
            location: None,
            message: "a pod spec is a JSON object, e.g. {\"name\": \"web\", \"image\": \"nginx\"}".into(),
        });
    }
    integral_numbers(&mut value);
    // JSON has types: a number or a boolean where the spec wants a string is
    // refused here, as the OpenAPI document says (the YAML below would read
    // `0` as the text "0"). serde_path_to_error names the field.
    if let Err(e) = serde_path_to_error::deserialize::<_, PodSpec>(&value)
        && e.inner().to_string().starts_with("invalid type")
    {
        return Err(SpecError::Syntax {
            document: 1,
            location: None,
            message: format!("{}: {}", e.path(), e.inner()),
        });
    }
    let yaml = serde_yaml_ng::to_string(&value).map_err(|e| SpecError::Syntax {
        document: 1,
        location: None,
        message: e.to_string(),
    })?;
    let mut specs = parse_specs(&yaml).map_err(|e| match e {
        // Lines of the intermediate YAML mean nothing to the client.
        SpecError::Syntax { document, message, .. } => SpecError::Syntax {
            document,
            location: None,
            message,
        },
        other => other,
    })?;
    match specs.len() {
        1 => Ok(specs.remove(0)),
        n => Err(SpecError::Syntax {
            document: 1,
            location: None,
            message: format!("expected one pod spec, got {n}"),
        }),
    }
}

/// Parses one or more pod specs from YAML (documents separated by `---`) and
/// validates each. Empty documents are skipped.
///
/// ```
/// use dubernetes_api::{parse_specs, SpecError};
///
/// let specs = parse_specs("name: web\nimage: nginx:1.27\nreplicas: 3\naccess: {host: web.local}\n").unwrap();
/// assert_eq!(specs[0].replicas, 3);
/// assert_eq!(specs[0].host(), Some("web.local"));
///
/// // A typo is an error that names the field, never silently ignored.
/// let err = parse_specs("name: web\nimage: nginx\nreplica: 3\n").unwrap_err();
/// assert!(err.to_string().contains("replica"), "{err}");
/// assert!(matches!(err, SpecError::Syntax { .. } | SpecError::Invalid { .. }));
/// ```
pub fn parse_specs(yaml: &str) -> Result<Vec<PodSpec>, SpecError> {
    check_shape(yaml)?;
    check_expansion(yaml, MAX_STORED_SPEC_BYTES)?;
    let mut specs: Vec<PodSpec> = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        let index = i + 1;
        let spec: Option<PodSpec> = Option::deserialize(document).map_err(|e| SpecError::Syntax {
            document: index,
            location: e.location().map(|l| (l.line(), l.column())),
            message: e.to_string(),
        })?;
        let Some(spec) = spec else { continue };
        spec.validate().map_err(|source| SpecError::Invalid {
            document: index,
            source,
        })?;
        check_stored_size(&spec).map_err(|e| e.in_document(index))?;
        if specs.iter().any(|s| s.name == spec.name) {
            return Err(SpecError::Duplicate {
                document: index,
                name: spec.name,
            });
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// What one node adds to a spec's expanded size beyond its scalar text: about
/// the punctuation its JSON encoding needs (quotes, `:` or `,`).
const NODE_OVERHEAD: usize = 2;

/// Refuses a YAML input any of whose documents would expand to more than
/// `max` bytes, before any of it is deserialized.
///
/// serde_yaml_ng replays an anchored node at every alias, so 44 KB whose
/// `env` repeats a 32 KiB value through 1023 aliases deserializes into 32 MiB.
/// This pass reads the YAML events once (saphyr-parser, no values built) and
/// computes each node's expanded size: a scalar costs its length, a
/// collection the sum of its items, an alias the expanded size of the node
/// its anchor names (so nested aliases multiply, as they would in memory).
/// The count is kept per document and checked as it grows, so it stops at the
/// first event past the limit; its own memory is one number per anchor and
/// one per open collection.
///
/// Anchors and aliases stay allowed: a spec that uses them sensibly expands
/// to far less than the limit.
pub(super) fn check_expansion(yaml: &str, max: usize) -> Result<(), SpecError> {
    use saphyr_parser::{Event, Parser};

    let mut document = 0usize;
    let mut anchors: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    // Open collections: (anchor id, 0 for none; expanded size so far).
    let mut open: Vec<(usize, usize)> = Vec::new();
    let mut size = 0usize;
    for item in Parser::new_from_str(yaml) {
        let (event, span) = match item {
            Ok(item) => item,
            Err(e) => return Err(syntax_error(yaml, document.max(1), &e)),
        };
        let done: Option<(usize, usize)> = match event {
            Event::DocumentStart(_) => {
                document += 1;
                size = 0;
                open.clear();
                None
            }
            Event::Scalar(value, _, anchor, _) => Some((anchor, value.len().saturating_add(NODE_OVERHEAD))),
            Event::Alias(id) => Some((0, anchors.get(&id).copied().unwrap_or(0))),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                open.push((anchor, NODE_OVERHEAD));
                size = size.saturating_add(NODE_OVERHEAD);
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                // The collection's own size is already in `size`; only its parent learns it now.
                if let Some((anchor, total)) = open.pop() {
                    if anchor != 0 {
                        anchors.insert(anchor, total);
                    }
                    if let Some((_, parent)) = open.last_mut() {
                        *parent = parent.saturating_add(total);
                    }
                }
                None
            }
            _ => None,
        };
        if let Some((anchor, node)) = done {
            if anchor != 0 {
                anchors.insert(anchor, node);
            }
            if let Some((_, parent)) = open.last_mut() {
                *parent = parent.saturating_add(node);
            }
            size = size.saturating_add(node);
        }
        if size > max {
            return Err(SpecError::SpecTooLarge {
                document: document.max(1),
                line: Some(span.start.line()),
                size,
                max,
                aliases: !anchors.is_empty(),
            });
        }
    }
    Ok(())
}

/// The error for YAML the pre-pass cannot read. The deserializer's own
/// message is the familiar one (and the one every other error uses), so it is
/// preferred: the input is read again without building any value
/// (`IgnoredAny`: no memory beyond its events; its alias replay is bounded by
/// its own repetition limit). Should it accept what the pre-pass refused, the
/// input is refused anyway with the pre-pass's message: what cannot be
/// measured is not let through.
fn syntax_error(yaml: &str, document: usize, scan: &saphyr_parser::ScanError) -> SpecError {
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        if let Err(e) = serde::de::IgnoredAny::deserialize(doc) {
            return SpecError::Syntax {
                document: i + 1,
                location: e.location().map(|l| (l.line(), l.column())),
                message: e.to_string(),
            };
        }
    }
    SpecError::Syntax {
        document,
        location: Some((scan.marker().line(), scan.marker().col() + 1)),
        message: scan.info().to_string(),
    }
}

/// Refuses a spec whose JSON encoding (what the store keeps) is larger than
/// [`MAX_STORED_SPEC_BYTES`]. [`parse_specs`] and [`parse_json_spec`] call it,
/// and the store checks again before it writes, so every way in is bounded.
pub fn check_stored_size(spec: &PodSpec) -> Result<(), SpecError> {
    // Serializing strings, numbers and maps cannot fail; a failure counts as too large.
    let size = serde_json::to_vec(spec).map_or(usize::MAX, |json| json.len());
    if size > MAX_STORED_SPEC_BYTES {
        return Err(SpecError::SpecTooLarge {
            document: 1,
            line: None,
            size,
            max: MAX_STORED_SPEC_BYTES,
            aliases: false,
        });
    }
    Ok(())
}

impl SpecError {
    fn in_document(self, index: usize) -> SpecError {
        match self {
            SpecError::SpecTooLarge {
                line,
                size,
                max,
                aliases,
                ..
            } => SpecError::SpecTooLarge {
                document: index,
                line,
                size,
                max,
                aliases,
            },
            other => other,
        }
    }
}
