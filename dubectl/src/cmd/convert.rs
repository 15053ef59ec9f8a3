//! `dubectl convert`: the pods of a compose file on stdout, what does not map on stderr.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use crate::{compose, escape, specs};

/// The arguments of `dubectl convert`.
#[derive(Debug, clap::Args)]
pub(crate) struct Convert {
    /// The compose file, or `-` for stdin.
    #[arg(short = 'f', long = "filename")]
    file: String,
    /// Published HTTP ports are served as SERVICE.DOMAIN.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Fail (exit 1, nothing printed on stdout) when a key does not map.
    #[arg(long)]
    strict: bool,
}

impl Convert {
    /// Needs no server.
    pub(crate) fn run(&self) -> anyhow::Result<ExitCode> {
        convert_compose(&self.file, &self.domain, self.strict)
    }
}

/// `dubectl convert`: the pods of a compose file on stdout, what does not map on stderr.
fn convert_compose(file: &str, domain: &str, strict: bool) -> anyhow::Result<ExitCode> {
    let (text, dir) = read_compose_source(file)?;
    if !compose::is_compose(&text) {
        bail!("{}: not a compose file (no top-level `services`)", escape::line(file));
    }
    let options = compose::Options {
        domain: domain.to_string(),
    };
    let conversion =
        compose::convert(&text, &compose::Source::system(dir), &options).with_context(|| escape::line(file))?;
    specs::report_compose(file, &conversion);
    if strict && !conversion.unmapped.is_empty() {
        bail!(
            "{}: {} compose key(s) do not map (listed above); nothing printed (--strict)",
            escape::line(file),
            conversion.unmapped.len()
        );
    }
    print!("{}", compose::to_yaml(&conversion)?);
    Ok(ExitCode::SUCCESS)
}

/// A compose file's text and the directory its relative paths start from (the current one for stdin).
fn read_compose_source(file: &str) -> anyhow::Result<(String, PathBuf)> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .take(dubernetes_api::MAX_SPEC_BYTES as u64 + 1)
            .read_to_string(&mut text)
            .context("reading stdin")?;
        return Ok((text, PathBuf::from(".")));
    }
    let path = PathBuf::from(file);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    Ok((text, dir))
}
