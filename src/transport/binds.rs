//! Bind specifications, expanded the reference's way (`Kernel::_resolve`):
//!
//! * each entry may hold several, separated by `,`;
//! * an entry of only digits (or empty) means `<hostname>:<digits>`;
//! * `*` as host means every non-loopback local address (IPv4 outside
//!   127/8; IPv6 global unicast and unique local) — and, unlike the
//!   reference, 127.0.0.1 when there is none (logged);
//! * `*` as port means 0 (any free port);
//! * a host name binds every address it resolves to.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::error::{AddressError, StartError};

/// Splits `host:port` (also `[v6]:port`, a bare host or IPv6 address with
/// port 0, and `*` for either part).
pub(crate) fn parse_hostport(spec: &str) -> Result<(String, String), AddressError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(AddressError::Empty);
    }
    if let Some(rest) = spec.strip_prefix('[') {
        let (host, tail) = rest
            .split_once(']')
            .ok_or_else(|| AddressError::UnbalancedBracket(spec.to_owned()))?;
        let port = match tail {
            "" => "0",
            t => t
                .strip_prefix(':')
                .ok_or_else(|| AddressError::AfterBracket(spec.to_owned()))?,
        };
        return Ok((host.to_owned(), port.to_owned()));
    }
    match spec.matches(':').count() {
        0 => Ok((spec.to_owned(), "0".to_owned())),
        1 => {
            let (h, p) = spec.split_once(':').unwrap_or((spec, "0"));
            Ok((h.to_owned(), p.to_owned()))
        }
        _ => Ok((spec.to_owned(), "0".to_owned())), // an IPv6 address
    }
}

/// The port part as a number (`*` is 0).
fn port_number(spec: &str, port: &str) -> Result<u16, AddressError> {
    if port == "*" {
        return Ok(0);
    }
    port.parse().map_err(|_| AddressError::Port {
        spec: spec.to_owned(),
        port: port.to_owned(),
    })
}

/// Non-loopback addresses of this host, as the reference picks them.
fn wildcard_addresses() -> Vec<IpAddr> {
    let Ok(interfaces) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    let mut v4: Vec<IpAddr> = Vec::new();
    let mut v6: Vec<IpAddr> = Vec::new();
    for i in interfaces {
        match i.ip() {
            IpAddr::V4(a) if !a.is_loopback() => v4.push(IpAddr::V4(a)),
            // global unicast 2000::/3, unique local fc00::/7
            IpAddr::V6(a) if matches!(a.octets()[0], 0x20..=0x3f | 0xfc | 0xfd) => {
                v6.push(IpAddr::V6(a))
            }
            _ => {}
        }
    }
    v4.extend(v6); // IPv6 after IPv4, as the reference orders them
    v4
}

/// Expands bind specifications as a node does (`*`, `*:*`, digits only,
/// host names; see the `binds` setting) into socket addresses, in order
/// and without duplicates.
pub async fn resolve(specs: &[String]) -> Result<Vec<SocketAddr>, StartError> {
    let config = |e: AddressError| StartError::Config(e.into());
    let mut out: Vec<SocketAddr> = Vec::new();
    for spec in specs.iter().flat_map(|s| s.split(',')) {
        let spec = spec.trim();
        let expanded;
        let spec = if spec.chars().all(|c| c.is_ascii_digit()) {
            let host = gethostname::gethostname().to_string_lossy().into_owned();
            expanded = if spec.is_empty() {
                host
            } else {
                format!("{host}:{spec}")
            };
            expanded.as_str()
        } else {
            spec
        };
        let (host, port) = parse_hostport(spec).map_err(config)?;
        let port = port_number(spec, &port).map_err(config)?;
        let addrs: Vec<SocketAddr> = if host == "*" {
            let mut ips = wildcard_addresses();
            if ips.is_empty() {
                tracing::info!(
                    "bind {spec}: no non-loopback address on this host; binding 127.0.0.1 instead"
                );
                ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
            }
            ips.into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect()
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else {
            tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|source| StartError::Bind {
                    addr: spec.to_owned(),
                    source,
                })?
                .collect()
        };
        for a in addrs {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostports() {
        let p = |s| parse_hostport(s).unwrap();
        assert_eq!(p("127.0.0.1:4040"), ("127.0.0.1".into(), "4040".into()));
        assert_eq!(p("[::1]:4040"), ("::1".into(), "4040".into()));
        assert_eq!(p("[::1]"), ("::1".into(), "0".into()));
        assert_eq!(p("::1"), ("::1".into(), "0".into()));
        assert_eq!(p("*:*"), ("*".into(), "*".into()));
        assert_eq!(p("host"), ("host".into(), "0".into()));
        assert!(parse_hostport("[::1").is_err());
        assert!(parse_hostport("").is_err());
        assert_eq!(port_number("x", "*"), Ok(0));
        assert!(port_number("x", "http").is_err());
    }

    #[tokio::test]
    async fn expansion() {
        let got = resolve(&["127.0.0.1:0,127.0.0.1:0".into(), "[::1]:*".into()])
            .await
            .unwrap();
        assert_eq!(
            got,
            vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()]
        );
        let star = resolve(&["*:*".into()]).await.unwrap();
        assert!(!star.is_empty());
        assert!(star.iter().all(|a| a.port() == 0));
        // digits only: the host name with that port
        let named = resolve(&["0".into()]).await.unwrap();
        assert!(named.iter().all(|a| a.port() == 0));
        assert!(resolve(&["127.0.0.1:notaport".into()]).await.is_err());
    }
}
