//! The conversion of real compose files (tests/compose/, see its README for
//! their sources), each to the exact pods and the exact list of unmapped keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;

/// Converts `text` with these files beside it and this environment.
fn run(text: &str, files: &[(&str, &str)], env: &[(&str, &str)]) -> anyhow::Result<Conversion> {
    let files: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|(name, text)| (Path::new("/project").join(name), text.to_string()))
        .collect();
    let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let lookup = move |name: &str| env.get(name).cloned();
    let read = move |path: &Path| {
        files
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    };
    let source = Source {
        dir: PathBuf::from("/project"),
        env: &lookup,
        read: &read,
    };
    convert(text, &source, &Options::default())
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/compose").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn unmapped_list(c: &Conversion) -> Vec<String> {
    c.unmapped.iter().map(|u| format!("{}: {}", u.path, u.reason)).collect()
}

/// The YAML and the unmapped keys' paths, printed when they differ (to update the expectations).
fn check(c: &Conversion, yaml: &str, unmapped: &[&str]) {
    let got = to_yaml(c).expect("yaml");
    let paths: Vec<&str> = c.unmapped.iter().map(|u| u.path.as_str()).collect();
    assert_eq!(got, yaml, "YAML:\n{got}\nunmapped: {:#?}", unmapped_list(c));
    assert_eq!(paths, unmapped, "unmapped: {:#?}", unmapped_list(c));
    // What convert prints, apply reads back as the same pods.
    let back = dubernetes_api::parse_specs(&got).expect("the output parses as pods");
    let specs: Vec<&PodSpec> = c.pods.iter().map(|p| &p.spec).collect();
    assert_eq!(back.iter().collect::<Vec<_>>(), specs);
}
