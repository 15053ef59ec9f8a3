//! One module per command, as mini-redis's `src/cmd/`: each holds its arguments (clap) and what
//! it does. `main.rs` has the command line's shape and sends each command here.

pub(crate) mod apply;
pub(crate) mod completion;
pub(crate) mod config;
pub(crate) mod convert;
pub(crate) mod dashboard;
pub(crate) mod delete;
pub(crate) mod describe;
pub(crate) mod diff;
pub(crate) mod events;
pub(crate) mod exec;
pub(crate) mod get;
pub(crate) mod logs;
pub(crate) mod rollout;
pub(crate) mod run;
pub(crate) mod scale;
pub(crate) mod secret;
pub(crate) mod version;

/// `describe`, `delete` and `scale` of runs: runs are only listed.
fn runs_are_listed() -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("runs are listed with `dubectl get runs POD`; their output: `dubectl logs POD --run NAME`")
}
