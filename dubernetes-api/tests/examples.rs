//! Every pod file under examples/ parses and validates as the server would
//! take it: the README points users at them.

use std::path::Path;

#[test]
fn every_example_pod_file_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let specs = dubernetes_api::parse_specs(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!specs.is_empty(), "{}: no pod", path.display());
        checked.push(path);
    }
    assert!(
        checked.iter().any(|p| p.ends_with("web-db.yaml")) && checked.iter().any(|p| p.ends_with("whoami.yaml")),
        "{checked:?}"
    );
}
