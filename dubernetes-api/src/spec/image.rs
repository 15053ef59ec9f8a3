//! Image references, checked as the Docker engine checks them, so a
//! reference it would refuse is a 422 on `image` at apply, not a failed
//! create later.
//!
//! The grammar is the distribution project's (`reference.go`):
//! `[domain[:port]/]path[:tag][@digest]`, and then what the engine adds when
//! it normalizes a reference (`ParseNormalizedNamed`, vendored in Docker
//! 20.10 from distribution 2.7): the first component is a registry only if it
//! has a `.` or a `:` or is `localhost`, so in `Dubernetes/whoami` it is a
//! path component and must be lowercase; the normalized name
//! (`docker.io/library/nginx` for `nginx`) has at most 255 characters; a
//! digest is `sha256`, `sha384` or `sha512` with exactly 64, 96 or 128
//! lowercase hex digits. Checked against the engine on this machine: every
//! case in the tests below is what Docker 20.10's `POST /containers/create`
//! answers ("invalid reference format", "repository name must be lowercase",
//! "repository name must not be more than 255 characters", "invalid checksum
//! digest format/length", "unsupported digest algorithm").
//!
//! Why not a crate: `oci-spec`'s `Reference` checks the 255 limit on the path
//! without its registry, takes uppercase hex in digests and lowercases no
//! namespace, so it accepts all three cases Docker refuses; the other
//! parsers found follow the bare grammar without the engine's normalization.
//! The grammar itself is a regex we already had; the rest is a few lines.

use std::sync::LazyLock;

use regex::Regex;

/// Longest normalized repository name the engine takes (`NameTotalLengthMax`).
pub const MAX_IMAGE_NAME: usize = 255;

/// Longest image reference, tag and digest included: short enough that its
/// name, normalized (`docker.io/library/` added, 18 characters), stays within
/// [`MAX_IMAGE_NAME`] whatever it is, so the limit is one number a client
/// (and the OpenAPI document) can check. Docker takes a few longer ones.
pub const MAX_IMAGE_REFERENCE: usize = MAX_IMAGE_NAME - "docker.io/library/".len();

/// The default registry, as the engine spells a normalized name.
const DEFAULT_DOMAIN: &str = "docker.io";

/// Checks an image reference; the message says what the engine would say and how to fix it.
pub(crate) fn check_image(image: &str) -> Result<(), String> {
    static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
        let domain_component = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let domain = format!(r"{domain_component}(?:\.{domain_component})*(?::[0-9]+)?");
        let path_component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
        let name = format!(r"(?:{domain}/)?{path_component}(?:/{path_component})*");
        // `\w` of the regex crate is Unicode-aware: spell the ASCII classes out.
        let tag = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
        let digest = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
        Regex::new(&format!(r"^({name})(?::({tag}))?(?:@({digest}))?$")).expect("valid regex")
    });
    let example = "use [registry/]name[:tag][@digest], e.g. \"myapp-image:latest\"";
    if image.is_empty() {
        return Err("must not be empty, e.g. \"nginx:1.27\"".into());
    }
    if image.len() > MAX_IMAGE_REFERENCE {
        return Err(format!(
            "is {} characters long; an image reference has at most {MAX_IMAGE_REFERENCE}, so that its repository name, normalized (\"{DEFAULT_DOMAIN}/library/\" added), stays within Docker's {MAX_IMAGE_NAME}",
            image.len()
        ));
    }
    // The name is lowercase (the engine's first check, so its message first).
    let name_end = image.find('@').unwrap_or(image.len());
    let without_digest = &image[..name_end];
    let name = match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
        _ => without_digest,
    };
    let (domain, path) = split_domain(name);
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "{:?}: the repository name must be lowercase (Docker refuses it){}",
            image.escape_default().to_string(),
            if domain.is_none() && name.contains('/') {
                "; a first part without '.' or ':' is not a registry"
            } else {
                ""
            }
        ));
    }
    let Some(parts) = REFERENCE.captures(image) else {
        return Err(format!(
            "{:?} is not a valid image reference: {example}; a tag has at most 128 letters, digits, '_', '.' and '-'",
            image.escape_default().to_string()
        ));
    };
    let (domain, path) = split_domain(parts.get(1).map_or("", |m| m.as_str()));
    let normalized = match domain {
        Some(domain) => domain.len() + 1 + path.len(),
        None if path.contains('/') => DEFAULT_DOMAIN.len() + 1 + path.len(),
        None => DEFAULT_DOMAIN.len() + "/library/".len() + path.len(),
    };
    if normalized > MAX_IMAGE_NAME {
        return Err(format!(
            "the repository name is {normalized} characters long once normalized (e.g. \"{DEFAULT_DOMAIN}/library/\" added); Docker takes at most {MAX_IMAGE_NAME}"
        ));
    }
    if let Some(digest) = parts.get(3) {
        check_digest(digest.as_str())?;
    }
    Ok(())
}

/// Splits off the registry the way the engine does: only a first component
/// with a `.` or a `:`, or `localhost`, is one.
fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (Some(first), rest),
        _ => (None, name),
    }
}

/// A digest the engine can verify: a known algorithm and its exact length in lowercase hex.
fn check_digest(digest: &str) -> Result<(), String> {
    let (algorithm, hex) = digest.split_once(':').unwrap_or((digest, ""));
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "the digest algorithm {:?} is not supported: use sha256, sha384 or sha512",
                algorithm.escape_default().to_string()
            ));
        }
    };
    if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err("the digest must be lowercase hex (0-9, a-f)".into());
    }
    if hex.len() != length {
        return Err(format!(
            "a {algorithm} digest has {length} hex digits, this one has {}",
            hex.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repeat(c: &str, n: usize) -> String {
        c.repeat(n)
    }

    #[test]
    fn what_docker_takes_is_taken() {
        for image in [
            "nginx".to_string(),
            "nginx:1.27-alpine".into(),
            "dubernetes/whoami:v1".into(),
            "localhost:5000/team/app:v1.2".into(),
            "Reg.io/abc".into(),
            "lowercase:Uppercase".into(),
            repeat("a", 237),
            format!("x/{}", repeat("a", 235)),
            format!("reg.io/{}", repeat("a", 230)),
            format!("abc:{}", repeat("t", 128)),
            format!("abc@sha256:{}", repeat("a", 64)),
            format!("abc@sha384:{}", repeat("a", 96)),
            format!("abc@sha512:{}", repeat("a", 128)),
            format!("abc:v1@sha256:{}", repeat("0", 64)),
        ] {
            assert_eq!(check_image(&image), Ok(()), "{image}");
        }
    }

    #[test]
    fn what_docker_refuses_is_refused() {
        for (image, says) in [
            ("Dubernetes/whoami:v1".to_string(), "lowercase"),
            ("Abc".into(), "lowercase"),
            ("localhost/Abc".into(), "lowercase"),
            (repeat("a", 238), "255"),
            (format!("x/{}", repeat("a", 244)), "255"),
            (format!("reg.io/{}", repeat("a", 249)), "255"),
            (repeat("a", 302), "255"),
            (format!("abc:{}", repeat("t", 129)), "not a valid image reference"),
            (format!("abc@sha256:{}", repeat("A", 64)), "lowercase hex"),
            (format!("abc@sha256:{}", repeat("a", 63)), "64 hex digits"),
            (format!("abc@md5:{}", repeat("a", 32)), "not supported"),
            ("a b".into(), "not a valid"),
            ("a:".into(), "not a valid"),
            ("a\nb".into(), "not a valid"),
            (format!("reg.io/{}", repeat("a", 231)), "at most 237"),
        ] {
            let err = check_image(&image).expect_err(&image);
            assert!(err.contains(says), "{image}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
