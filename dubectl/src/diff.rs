//! `dubectl diff`: what `apply` would change, as a unified diff of the specs
//! in YAML (the live one as the server stores it, the one in the file).

use dubernetes_api::PodSpec;

/// The diff of one pod, or `None` when nothing would change.
pub fn unified(name: &str, live: Option<&PodSpec>, applied: &PodSpec, colour: bool) -> anyhow::Result<Option<String>> {
    // `secret_versions` is the server's (set at every apply from the secrets
    // in force), never the file's: compare without it.
    let live = live.map(|spec| {
        let mut spec = spec.clone();
        spec.secret_versions.clear();
        spec
    });
    let live = live.as_ref();
    if live == Some(applied) {
        return Ok(None);
    }
    let old = match live {
        Some(spec) => crate::escape::yaml(spec)?,
        None => String::new(),
    };
    let new = crate::escape::yaml(applied)?;
    let diff = similar::TextDiff::from_lines(&old, &new);
    let from = if live.is_some() {
        format!("live/pod/{name}")
    } else {
        "/dev/null".to_string()
    };
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(&from, &format!("applied/pod/{name}"))
        .to_string();
    if !colour {
        return Ok(Some(text));
    }
    let painted: String = text
        .lines()
        .map(|l| {
            let c = match l.chars().next() {
                Some('+') if !l.starts_with("+++") => 32,
                Some('-') if !l.starts_with("---") => 31,
                Some('@') => 36,
                _ => 0,
            };
            if c == 0 {
                format!("{l}\n")
            } else {
                format!("{}\n", crate::style::paint(true, c, l))
            }
        })
        .collect();
    Ok(Some(painted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_spec_has_no_diff_and_a_change_shows_both_lines() {
        let a = PodSpec::new("web", "img:v1");
        assert!(unified("web", Some(&a), &a, false).expect("diff").is_none());
        let b = PodSpec::new("web", "img:v2");
        let text = unified("web", Some(&a), &b, false).expect("diff").expect("changes");
        assert!(text.contains("-image: img:v1"), "{text}");
        assert!(text.contains("+image: img:v2"), "{text}");
        assert!(text.contains("--- live/pod/web"), "{text}");
    }
}
