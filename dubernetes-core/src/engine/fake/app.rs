//! What a fake container does once started: an [`App`], chosen by image.

use std::time::Duration;

/// What a container of an image does once started.
#[derive(Debug, Clone)]
pub struct App {
    /// Accepts connections (passes TCP and HTTP readiness checks).
    pub serves: bool,
    /// Exits on its own this long after each start.
    pub exit_after: Option<Duration>,
    /// Its exit code when it exits on its own.
    pub exit_code: i64,
    /// What its log holds.
    pub log: String,
    /// Behaves as the ingress's nginx.
    pub nginx: bool,
    /// Ignores SIGTERM (a shell as PID 1): a stop takes the whole grace period.
    pub ignores_sigterm: bool,
}

impl App {
    /// Serves forever.
    pub fn serving() -> App {
        App {
            serves: true,
            exit_after: None,
            exit_code: 0,
            log: "listening\n".into(),
            nginx: false,
            ignores_sigterm: false,
        }
    }

    /// Serves forever and ignores SIGTERM: killed at the end of its grace period.
    pub fn stubborn() -> App {
        App {
            ignores_sigterm: true,
            ..App::serving()
        }
    }

    /// Exits with `code` `after` each start, never serving.
    pub fn crashing(after: Duration, code: i64) -> App {
        App {
            serves: false,
            exit_after: Some(after),
            exit_code: code,
            log: format!("fatal: exiting with {code}\n"),
            nginx: false,
            ignores_sigterm: false,
        }
    }

    /// Runs but never accepts a connection.
    pub fn hanging() -> App {
        App {
            serves: false,
            ..App::serving()
        }
    }

    /// The ingress's nginx.
    pub fn nginx() -> App {
        App {
            nginx: true,
            serves: false,
            ..App::serving()
        }
    }
}
