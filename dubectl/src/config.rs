//! Where dubectl finds its server, token and CA file: flag > environment
//! (`DUBERNETES_SERVER`, `DUBERNETES_TOKEN`, `DUBERNETES_CA_FILE`) >
//! `$XDG_CONFIG_HOME/dubernetes/config.yaml` (or `~/.config/dubernetes/config.yaml`)
//! > the default `http://127.0.0.1:8080` (and the system's trusted roots).

use std::path::PathBuf;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The default server URL.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// The config file's contents.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Server URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// API token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// PEM file of CA certificates to trust for an `https://` server, besides the system's roots.
    /// A relative path is relative to the config file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Where a setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--server` / `--token` or the environment variable (clap merges these).
    FlagOrEnv,
    /// The config file.
    File,
    /// Built in.
    Default,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::FlagOrEnv => "flag or environment",
            Source::File => "config file",
            Source::Default => "default",
        }
    }
}

/// The settings in force.
#[derive(Debug, Clone)]
pub struct Effective {
    pub server: String,
    pub server_source: Source,
    pub token: Option<String>,
    pub token_source: Source,
    pub ca_file: Option<PathBuf>,
    pub ca_file_source: Source,
    pub file: Option<PathBuf>,
}

/// The config file's path, whether or not it exists.
pub fn path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("dubernetes").join("config.yaml"))
}

fn read(path: &PathBuf) -> anyhow::Result<Option<FileConfig>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_yaml_ng::from_str(&text).map(Some).with_context(|| {
            format!(
                "reading {} (expected `server: URL`, `token: TOKEN` and `ca_file: FILE`)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Resolves the settings from the flags (already merged with the environment by clap) and the file.
pub fn resolve(server: Option<String>, token: Option<String>, ca_file: Option<PathBuf>) -> anyhow::Result<Effective> {
    let file_path = path();
    let file = match &file_path {
        Some(p) => read(p)?,
        None => None,
    };
    let file_path = file.as_ref().and(file_path);
    let file = file.unwrap_or_default();
    let (server, server_source) = match (server, file.server) {
        (Some(s), _) => (s, Source::FlagOrEnv),
        (None, Some(s)) => (s, Source::File),
        (None, None) => (DEFAULT_SERVER.to_string(), Source::Default),
    };
    let (token, token_source) = match (token.filter(|t| !t.is_empty()), file.token) {
        (Some(t), _) => (Some(t), Source::FlagOrEnv),
        (None, Some(t)) => (Some(t), Source::File),
        (None, None) => (None, Source::Default),
    };
    let (ca_file, ca_file_source) = match (ca_file, file.ca_file, &file_path) {
        (Some(f), _, _) => (Some(f), Source::FlagOrEnv),
        (None, Some(f), Some(config)) => {
            let dir = config.parent().map(PathBuf::from).unwrap_or_default();
            (Some(dir.join(f)), Source::File)
        }
        _ => (None, Source::Default),
    };
    Ok(Effective {
        server,
        ca_file,
        ca_file_source,
        server_source,
        token,
        token_source,
        file: file_path,
    })
}
