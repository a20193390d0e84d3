//! What the network-namespace tests share: running `ip`, and the rule
//! for a machine where namespaces cannot be made (skip with a message,
//! or fail when `AEMP_NETNS_REQUIRED` is set).

use std::process::{Command, Stdio};

/// Runs `ip ARGS…`; `Err` with its stderr if it cannot run or fails.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// What made `test`'s namespaces, or — when they could not be made —
/// `None` after saying why (a failure instead with `AEMP_NETNS_REQUIRED`
/// set).
pub fn or_skip<T>(test: &str, made: Result<T, String>) -> Option<T> {
    match made {
        Ok(t) => Some(t),
        Err(why) => {
            assert!(
                std::env::var_os("AEMP_NETNS_REQUIRED").is_none(),
                "{test}: no network namespaces: {why}"
            );
            eprintln!("{test}: SKIPPED, cannot create network namespaces: {why}");
            None
        }
    }
}
