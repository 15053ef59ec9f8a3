//! The top-level declarations services refer to: named volumes and secrets.

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

use super::values::key_text;
use super::{Conversion, unmapped};

/// The top-level declarations services refer to.
pub(super) struct Top {
    /// Named volumes declared at the top, with whether they can be used.
    pub(super) volumes: BTreeMap<String, Result<(), String>>,
    /// Secrets declared at the top: where their value comes from.
    pub(super) secrets: BTreeMap<String, SecretSource>,
}

pub(super) enum SecretSource {
    File(String),
    Environment(String),
    Unusable,
}

impl Top {
    pub(super) fn read(root: &Mapping, out: &mut Conversion) -> Top {
        let mut top = Top {
            volumes: BTreeMap::new(),
            secrets: BTreeMap::new(),
        };
        for (key, value) in root {
            let key = key_text(key);
            match key.as_str() {
                "services" => {}
                // Obsolete; Compose ignores it too.
                "version" => {}
                // The project name prefixes Compose's containers; pods are named by service.
                "name" => {}
                _ if key.starts_with("x-") => {}
                // Networks are judged where services use them.
                "networks" => {}
                "volumes" => top.read_volumes(value, out),
                "secrets" => top.read_secrets(value, out),
                "configs" => out.unmapped.push(unmapped(
                    "configs",
                    "configs have no equivalent: put the file in the image, or in a generic secret (secret_files)",
                )),
                _ => out.unmapped.push(unmapped(
                    &key,
                    "no equivalent in Dubernetes (not a key converted from compose)",
                )),
            }
        }
        top
    }

    fn read_volumes(&mut self, value: &Value, out: &mut Conversion) {
        let Value::Mapping(volumes) = value else {
            if !value.is_null() {
                out.unmapped.push(unmapped("volumes", "`volumes` is a mapping"));
            }
            return;
        };
        for (name, decl) in volumes {
            let name = key_text(name);
            let path = format!("volumes.{name}");
            let mut usable = Ok(());
            if let Value::Mapping(decl) = decl {
                for (k, v) in decl {
                    let k = key_text(k);
                    let reason = match k.as_str() {
                        "external" if v.as_bool() == Some(false) => continue,
                        "external" => {
                            "an external volume is made outside Dubernetes, which never mounts a volume it did not make; drop `external` (a new, empty volume is made) or copy the data in"
                        }
                        "driver" if v.as_str() == Some("local") => continue,
                        "driver" | "driver_opts" => "volumes use the engine's local driver only",
                        "name" => {
                            "the engine name of a volume is Dubernetes' own (dub-INSTANCE_NAME); the pod uses the key's name"
                        }
                        "labels" => "volumes carry Dubernetes' own labels only",
                        _ if k.starts_with("x-") => continue,
                        _ => "no equivalent for a volume",
                    };
                    out.unmapped.push(unmapped(&format!("{path}.{k}"), reason));
                    usable = Err(format!("see {path}.{k}"));
                }
            }
            self.volumes.insert(name, usable);
        }
    }

    fn read_secrets(&mut self, value: &Value, out: &mut Conversion) {
        let Value::Mapping(secrets) = value else {
            out.unmapped.push(unmapped("secrets", "`secrets` is a mapping"));
            return;
        };
        for (name, decl) in secrets {
            let name = key_text(name);
            let path = format!("secrets.{name}");
            let source = match decl.get("file").and_then(Value::as_str) {
                Some(file) => SecretSource::File(file.to_string()),
                None => match decl.get("environment").and_then(Value::as_str) {
                    Some(var) => SecretSource::Environment(var.to_string()),
                    None => {
                        out.unmapped.push(unmapped(
                            &path,
                            "only secrets from a `file` or an `environment` variable map (to a generic secret made with dubectl create secret generic)",
                        ));
                        SecretSource::Unusable
                    }
                },
            };
            self.secrets.insert(name, source);
        }
    }
}
