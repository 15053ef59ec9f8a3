//! `dubectl dashboard`: a short-lived, single-use sign-in link to the live dashboard, opened in a
//! browser when one is at hand.

use std::process::ExitCode;

use crate::client::Client;

/// The arguments of `dubectl dashboard`.
#[derive(Debug, clap::Args)]
pub(crate) struct Dashboard {
    /// Only print the link; do not open a browser.
    #[arg(long)]
    print_url: bool,
}

impl Dashboard {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<ExitCode> {
        let (url, ttl) = client.dashboard_url().await?;
        println!("{url}");
        if !self.print_url {
            eprintln!("(opens the dashboard once, within {ttl}s; run `dubectl dashboard` again for a new link)");
            open_browser(&url);
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Opens `url` with `xdg-open` when there is one and a display; never fails:
/// the link is printed either way.
fn open_browser(url: &str) {
    let desktop = std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if !desktop {
        return;
    }
    let spawned = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if spawned.is_err() {
        eprintln!("(no xdg-open here: open the link above in a browser)");
    }
}
