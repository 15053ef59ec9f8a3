//! `dubectl config view`: the configuration in force and where each setting comes from.

use std::process::ExitCode;

use clap::Subcommand;

use crate::config::{self, Effective};

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the server, token (redacted) and config file in force.
    #[command(after_help = "Example:\n  dubectl config view")]
    View,
}

impl ConfigCommand {
    /// Needs the settings, not the server.
    pub(crate) fn run(&self, settings: &Effective) -> ExitCode {
        match self {
            ConfigCommand::View => view(settings),
        }
    }
}

fn view(settings: &Effective) -> ExitCode {
    println!(
        "server: {}    # from {}",
        settings.server,
        settings.server_source.describe()
    );
    match &settings.token {
        Some(_) => println!("token: REDACTED    # from {}", settings.token_source.describe()),
        None => println!("token: null    # none set"),
    }
    match &settings.ca_file {
        Some(f) => println!(
            "ca-file: {}    # from {}",
            f.display(),
            settings.ca_file_source.describe()
        ),
        None => println!("ca-file: null    # system roots only"),
    }
    match (&settings.file, config::path()) {
        (Some(p), _) => println!("config-file: {}", p.display()),
        (None, Some(p)) => println!("config-file: {}    # does not exist", p.display()),
        (None, None) => println!("config-file: null    # neither XDG_CONFIG_HOME nor HOME is set"),
    }
    ExitCode::SUCCESS
}
