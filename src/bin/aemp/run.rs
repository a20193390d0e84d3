//! `aemp run [PROFILE] [key value]…`: runs a node as a service.

use std::time::Duration;

use aemp::Node;
use aemp::config::ConfigFile;
use serde_json::{Map, Value};

use crate::args::perl_text;
use crate::error::CliResult;

/// Parses the reference's `configure` arguments: an odd count means the
/// first is the profile; then key/value pairs, where `profile NAME` also
/// names the profile (the last one wins, as in a Perl hash).
pub fn configure_args(mut args: Vec<Value>) -> (Option<String>, Map<String, Value>) {
    let mut profile = if args.len() % 2 == 1 {
        Some(perl_text(&args.remove(0)))
    } else {
        None
    };
    let mut explicit = Map::new();
    let mut it = args.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        let k = perl_text(&k);
        if k == "profile" {
            profile = Some(perl_text(&v));
        } else {
            explicit.insert(k, v);
        }
    }
    (profile, explicit)
}

pub fn run(args: Vec<Value>) -> CliResult<()> {
    let (profile, explicit) = configure_args(args);
    let profile = profile.unwrap_or_else(aemp::config::default_profile);
    let file = ConfigFile::load_default()?;
    let (cfg, overridden) = file.node_config(&profile, &explicit)?;
    for key in overridden {
        tracing::warn!(
            %key,
            "the configuration file overrides the command-line value (reference behaviour: arguments are the weakest)"
        );
    }
    actix_rt::System::new().block_on(async move {
        let node = crate::services::register(Node::builder().config(cfg))
            .start()
            .await?;
        let addrs: Vec<String> = node.listen_addrs().iter().map(|a| a.to_string()).collect();
        outln!(
            "node {} running, listening on [{}]",
            node.id(),
            addrs.join(" ")
        );
        wait_for_signal().await;
        tracing::info!(node = %node.id(), "shutting down");
        node.shutdown_gracefully(node.shutdown_reason(), Duration::from_secs(5))
            .await;
        outln!("node {} stopped", node.id());
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            // no signal handling: run until ctrl-c at least
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn configure_arguments() {
        let (p, kv) = configure_args(vec![json!("srv"), json!("binds"), json!("1")]);
        assert_eq!(p.as_deref(), Some("srv"));
        assert_eq!(kv.get("binds"), Some(&json!("1")));
        // `profile NAME` as a key, the last one winning
        let (p, kv) = configure_args(vec![
            json!("profile"),
            json!("a"),
            json!("nodeid"),
            json!("x/"),
            json!("profile"),
            json!("b"),
        ]);
        assert_eq!(p.as_deref(), Some("b"));
        assert_eq!(kv.len(), 1);
        let (p, kv) = configure_args(Vec::new());
        assert!(p.is_none() && kv.is_empty());
    }
}
