//! Deploy hooks: one-off commands of a new revision around its rollout
//! (`hooks: {pre_deploy: [...], post_deploy: [...], timeout: 10m}`).
//!
//! A hook runs as a one-off container of the revision being rolled out (the
//! same template as a replica: image, env, secrets, volumes, network), with
//! its list replacing the image's command (as `dubectl run -- CMD...`).
//! `pre_deploy` runs before any replica of the revision starts: a non-zero
//! exit (or its timeout) fails the rollout (`HookFailed`) and the old revision
//! keeps serving. `post_deploy` runs once the rollout is complete; its failure
//! is reported but undoes nothing. Hooks are part of a revision (its hash):
//! changing only `hooks` makes a new revision, whose `pre_deploy` runs and
//! whose replicas replace the old ones (a rolling update, as any new revision).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;
use super::validate::FieldError;

/// Default of `hooks.timeout`: how long a hook may run before it is killed.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(600);

/// Longest `hooks.timeout` accepted.
pub const MAX_HOOK_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Most items of a hook's command.
const MAX_HOOK_ARGS: usize = 256;

/// Longest item of a hook's command, in bytes.
const MAX_HOOK_ARG_BYTES: usize = 8192;

/// Commands run as one-off containers of a new revision around its rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Hooks {
    /// Runs once per new revision, before any of its replicas starts (e.g.
    /// database migrations); a non-zero exit fails the rollout (`HookFailed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_deploy: Option<Vec<String>>,
    /// Runs once the revision's rollout is complete; a failure is reported
    /// (a Warning event, the revision's reason) but undoes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_deploy: Option<Vec<String>>,
    /// How long a hook may run before it is killed and counts as failed (default 10m, at most 24h).
    #[serde(default, with = "duration::opt", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "10m"))]
    pub timeout: Option<Duration>,
}

impl Hooks {
    /// `hooks.timeout`, or its default.
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_HOOK_TIMEOUT)
    }

    /// The rules of `hooks`: each command a non-empty list of at most 256
    /// strings of at most 8192 bytes without NUL; the timeout between 1s and 24h.
    pub(super) fn validate(&self, problems: &mut Vec<FieldError>) {
        for (field, command) in [("pre_deploy", &self.pre_deploy), ("post_deploy", &self.post_deploy)] {
            let Some(command) = command else { continue };
            let field = format!("hooks.{field}");
            if command.is_empty() {
                problems.push(FieldError::new(
                    field.clone(),
                    "must not be empty; write the command as a list, e.g. [\"./migrate\", \"up\"], or remove the field",
                ));
            }
            if command.len() > MAX_HOOK_ARGS {
                problems.push(FieldError::new(
                    field.clone(),
                    format!("has more than {MAX_HOOK_ARGS} items"),
                ));
            }
            if let Some(i) = command
                .iter()
                .position(|a| a.contains('\0') || a.len() > MAX_HOOK_ARG_BYTES)
            {
                problems.push(FieldError::new(
                    format!("{field}[{i}]"),
                    format!("must not contain a NUL byte or exceed {MAX_HOOK_ARG_BYTES} bytes"),
                ));
            }
        }
        if let Some(t) = self.timeout
            && !(Duration::from_secs(1)..=MAX_HOOK_TIMEOUT).contains(&t)
        {
            problems.push(FieldError::new(
                "hooks.timeout",
                format!("{} is not between 1s and 24h", humantime::format_duration(t)),
            ));
        }
        if self.pre_deploy.is_none() && self.post_deploy.is_none() {
            problems.push(FieldError::new(
                "hooks",
                "names no hook; set pre_deploy or post_deploy, or remove the field",
            ));
        }
    }
}
