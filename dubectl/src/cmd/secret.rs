//! `dubectl create secret`: TLS certificates, generic keys and values, registry credentials.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;

use crate::client::Client;
use crate::{escape, output};

#[derive(Debug, Subcommand)]
pub(crate) enum CreateCommand {
    /// Create a secret.
    #[command(subcommand)]
    Secret(SecretCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretCommand {
    /// A TLS certificate and its key, for pods with `access.tls: {secret: NAME}`. The key is sent
    /// once and never shown again; `get secrets` lists names, hosts and expiry.
    #[command(
        after_help = "Examples:\n  dubectl create secret tls web-cert --cert fullchain.pem --key privkey.pem\n  dubectl create secret tls web-cert --cert new.pem --key new-key.pem --replace"
    )]
    Tls {
        /// The secret's name (a DNS label).
        name: String,
        /// PEM certificate file: the certificate first, then its chain.
        #[arg(long)]
        cert: std::path::PathBuf,
        /// PEM private key file of the certificate.
        #[arg(long)]
        key: std::path::PathBuf,
        /// Replace the secret if it exists (pods using it switch to the new certificate).
        #[arg(long)]
        replace: bool,
    },
    /// Keys and values for pods' `env: {VAR: {secret: NAME, key: KEY}}` and `secret_files`.
    /// Values are sent once, stored encrypted, and never shown again.
    #[command(
        after_help = "Examples:\n  dubectl create secret generic db --from-literal=password=s3cret --from-literal=user=app\n  dubectl create secret generic tls-files --from-file=ca.pem=./ca.pem --from-file=./client.key\n  dubectl create secret generic db --from-literal=password=n3w --replace   # rolls the pods using it"
    )]
    Generic {
        /// The secret's name (a DNS label).
        name: String,
        /// A key and its value: KEY=VALUE (repeat for more keys).
        #[arg(long = "from-literal", value_name = "KEY=VALUE")]
        from_literal: Vec<String>,
        /// A key and the file holding its value: KEY=PATH, or PATH (the key is the file's name).
        /// Any bytes (a keystore too); only text without NUL can also be an env value.
        #[arg(long = "from-file", value_name = "[KEY=]PATH")]
        from_file: Vec<String>,
        /// Replace the secret if it exists (the pods using it roll to a new revision).
        #[arg(long)]
        replace: bool,
    },
    /// Registry credentials for pods' `image_pull_secret: NAME`. The password is sent once,
    /// stored encrypted, and never shown again.
    #[command(
        name = "docker-registry",
        after_help = "Example:\n  dubectl create secret docker-registry regcred --docker-server=registry.example.com --docker-username=ci --docker-password=\"$TOKEN\""
    )]
    DockerRegistry {
        /// The secret's name (a DNS label).
        name: String,
        /// The registry host as images name it, e.g. registry.example.com or 127.0.0.1:5000.
        #[arg(long = "docker-server")]
        docker_server: String,
        /// The user name.
        #[arg(long = "docker-username")]
        docker_username: String,
        /// The password or token.
        #[arg(long = "docker-password")]
        docker_password: String,
        /// Replace the secret if it exists.
        #[arg(long)]
        replace: bool,
    },
}

impl CreateCommand {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<ExitCode> {
        match self {
            CreateCommand::Secret(secret) => secret.run(client).await,
        }
    }
}

impl SecretCommand {
    async fn run(self, client: &Client) -> anyhow::Result<ExitCode> {
        match self {
            SecretCommand::Tls {
                name,
                cert,
                key,
                replace,
            } => tls(client, name, &cert, &key, replace).await,
            SecretCommand::Generic {
                name,
                from_literal,
                from_file,
                replace,
            } => generic(client, name, &from_literal, &from_file, replace).await,
            SecretCommand::DockerRegistry {
                name,
                docker_server,
                docker_username,
                docker_password,
                replace,
            } => {
                let secret = dubernetes_api::NewSecret {
                    name,
                    kind: dubernetes_api::SecretType::DockerRegistry,
                    data: Default::default(),
                    binary_data: Default::default(),
                    docker_server: Some(docker_server),
                    docker_username: Some(docker_username),
                    docker_password: Some(docker_password),
                };
                let stored = client.create_data_secret(&secret, replace).await?;
                println!(
                    "secret/{} {} (registry {})",
                    escape::line(&stored.name),
                    if replace { "configured" } else { "created" },
                    escape::line(stored.docker_server.as_deref().unwrap_or(""))
                );
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// `create secret tls`: the certificate and key files, read bounded.
async fn tls(
    client: &Client,
    name: String,
    cert: &std::path::Path,
    key: &std::path::Path,
    replace: bool,
) -> anyhow::Result<ExitCode> {
    // Bounded: `--cert /dev/zero` (or a wrong, huge file) must not fill the memory.
    let read = |flag: &str, path: &std::path::Path| -> anyhow::Result<String> {
        use std::io::Read as _;
        let limit = dubernetes_api::MAX_CERTIFICATE_PEM_BYTES;
        let file = std::fs::File::open(path).with_context(|| format!("--{flag} {}", path.display()))?;
        let mut bytes = Vec::new();
        file.take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("--{flag} {}", path.display()))?;
        if bytes.len() > limit {
            anyhow::bail!(
                "--{flag} {}: larger than {limit} bytes (64 KiB), the most a certificate chain or key may be; \
                 pass the PEM file (e.g. fullchain.pem, privkey.pem)",
                path.display()
            );
        }
        String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("--{flag} {}: is not text (PEM is ASCII)", path.display()))
    };
    let secret = dubernetes_api::NewTlsSecret {
        name: name.clone(),
        cert: read("cert", cert)?,
        key: read("key", key)?,
    };
    let stored = client.create_secret(&secret, replace).await?;
    println!(
        "secret/{} {} (hosts {}, expires {})",
        escape::line(&stored.name),
        if replace { "configured" } else { "created" },
        escape::line(&stored.hosts.join(",")),
        output::date(stored.not_after)
    );
    Ok(ExitCode::SUCCESS)
}

/// `create secret generic`: literals as text, files as bytes.
async fn generic(
    client: &Client,
    name: String,
    from_literal: &[String],
    from_file: &[String],
    replace: bool,
) -> anyhow::Result<ExitCode> {
    let (data, binary_data) = secret_data(from_literal, from_file)?;
    let secret = dubernetes_api::NewSecret {
        name,
        kind: dubernetes_api::SecretType::Generic,
        data,
        binary_data,
        docker_server: None,
        docker_username: None,
        docker_password: None,
    };
    let stored = client.create_data_secret(&secret, replace).await?;
    println!(
        "secret/{} {} (keys {})",
        escape::line(&stored.name),
        if replace { "configured" } else { "created" },
        escape::line(&stored.keys.join(","))
    );
    Ok(ExitCode::SUCCESS)
}

/// Largest value `--from-file` reads (the server's limit per key).
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Keys and values of `create secret generic`, text and bytes.
type SecretData = std::collections::BTreeMap<String, String>;

/// The keys and values of `create secret generic`: `--from-literal=KEY=VALUE`
/// as text (`data`), and `--from-file=[KEY=]PATH` read up to the server's
/// limit and sent as base64 (`binary_data`), so any file, text or binary,
/// arrives byte for byte.
fn secret_data(literals: &[String], files: &[String]) -> anyhow::Result<(SecretData, SecretData)> {
    use base64::Engine as _;
    use std::io::Read as _;
    let mut data = SecretData::new();
    let mut binary = SecretData::new();
    let mut keys = std::collections::BTreeSet::new();
    let mut once = |key: &str, flag: &str| -> anyhow::Result<()> {
        if !keys.insert(key.to_string()) {
            bail!("{flag}: key {} is given twice", escape::line(key));
        }
        Ok(())
    };
    for literal in literals {
        // Never echo the value: only the key.
        let Some((key, value)) = literal.split_once('=') else {
            bail!("--from-literal takes KEY=VALUE (no '=' found)");
        };
        once(key, "--from-literal")?;
        data.insert(key.to_string(), value.to_string());
    }
    for spec in files {
        let (key, path) = match spec.split_once('=') {
            Some((key, path)) => (key.to_string(), std::path::PathBuf::from(path)),
            None => {
                let path = std::path::PathBuf::from(spec);
                let key = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .with_context(|| format!("--from-file {}: name the key: KEY=PATH", escape::line(spec)))?;
                (key, path)
            }
        };
        let file = std::fs::File::open(&path).with_context(|| format!("--from-file {}", path.display()))?;
        let mut bytes = Vec::new();
        file.take(MAX_SECRET_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("--from-file {}", path.display()))?;
        if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
            bail!(
                "--from-file {}: larger than {MAX_SECRET_FILE_BYTES} bytes",
                path.display()
            );
        }
        once(&key, "--from-file")?;
        binary.insert(key, base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    if keys.is_empty() {
        bail!("give at least one --from-literal=KEY=VALUE or --from-file=[KEY=]PATH");
    }
    Ok((data, binary))
}
