//! `dubectl version`: the client's and the server's versions, and what the server is.

use std::process::ExitCode;

use crate::client::Client;
use crate::{escape, style};

/// Prints the client's version, then the server's (an error reaching it is exit 1).
pub(crate) async fn run(client: &Client) -> anyhow::Result<ExitCode> {
    println!("Client Version: {}", env!("CARGO_PKG_VERSION"));
    match client.version().await {
        Ok(v) => {
            println!(
                "Server Version: {} (API {}, instance {}, Docker API {})",
                v["server"].as_str().unwrap_or("?"),
                v["api"].as_str().unwrap_or("?"),
                v["instance"].as_str().unwrap_or("?"),
                v["docker_api"].as_str().unwrap_or("?")
            );
            if let Some(store) = v["store_id"].as_str() {
                println!(
                    "Data Dir: {} (store {store})",
                    v["data_dir"].as_str().unwrap_or("(in memory)")
                );
            }
            if let (Some(kind), Some(leader)) = (v["store"].as_str(), v["leader"].as_bool()) {
                println!(
                    "Store: {} ({})",
                    escape::line(kind),
                    if leader {
                        "this server leads: it acts on the engine"
                    } else {
                        "this server stands by: it serves the API, another leads"
                    }
                );
            }
            for (field, what) in [
                (
                    "held_containers",
                    "adopted container(s) of pods this store does not have, left alone",
                ),
                (
                    "foreign_containers",
                    "container(s) of another store in this instance, left alone",
                ),
            ] {
                if let Some(n) = v[field].as_u64().filter(|n| *n > 0) {
                    println!("Note: {n} {what}");
                }
            }
        }
        Err(e) => {
            eprintln!("{} {e:#}", style::paint(style::enabled(true), 31, "error:"));
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}
