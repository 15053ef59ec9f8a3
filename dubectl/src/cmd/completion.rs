//! `dubectl completion`: a shell completion script.

use std::process::ExitCode;

use clap::CommandFactory;

use crate::Cli;

/// The arguments of `dubectl completion`.
#[derive(Debug, clap::Args)]
pub(crate) struct Completion {
    /// The shell.
    shell: clap_complete::Shell,
}

impl Completion {
    /// Needs no server.
    pub(crate) fn run(&self) -> ExitCode {
        clap_complete::generate(self.shell, &mut Cli::command(), "dubectl", &mut std::io::stdout());
        ExitCode::SUCCESS
    }
}
