//! Bind specifications, expanded the reference's way (`Kernel::_resolve`):
//!
//! * each entry may hold several, separated by `,`;
//! * an entry of only digits (or empty) means `<hostname>:<digits>`;
//! * `*` as host means every non-loopback local address (IPv4 outside
//!   127/8; IPv6 global unicast and unique local) — and, unlike the
//!   reference, 127.0.0.1 when there is none (logged);
//! * `*` as port means 0 (any free port);
//! * a host name binds every address it resolves to.
//!
//! Seeds go through the same expansion ([`resolve_seeds`]), as in the
//! reference (Kernel.pm 446), without the 127.0.0.1 fallback.

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
    pick_wildcard(interfaces.iter().map(|i| i.ip()))
}

/// The addresses `*` stands for among `ips` (Kernel.pm 335–349): IPv4
/// outside 127/8, then IPv6 global unicast (2000::/3) and unique local
/// (fc00::/7).
fn pick_wildcard(ips: impl IntoIterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut v4: Vec<IpAddr> = Vec::new();
    let mut v6: Vec<IpAddr> = Vec::new();
    for ip in ips {
        match ip {
            IpAddr::V4(a) if !a.is_loopback() => v4.push(IpAddr::V4(a)),
            IpAddr::V6(a) if matches!(a.octets()[0], 0x20..=0x3f | 0xfc | 0xfd) => {
                v6.push(IpAddr::V6(a))
            }
            _ => {}
        }
    }
    v4.extend(v6); // IPv6 after IPv4, as the reference orders them
    v4
}

/// What the expansion needs to know about this host: its name (for a
/// digits-only spec) and its addresses (for `*`). Injected in tests.
#[derive(Debug, Clone)]
pub(crate) struct HostInfo {
    /// The host name, `(POSIX::uname)[1]` in the reference.
    pub(crate) hostname: String,
    /// The host's interface addresses (loopback ones are skipped).
    pub(crate) addresses: Vec<IpAddr>,
}

impl HostInfo {
    /// This machine's name and interface addresses.
    pub(crate) fn this_host() -> HostInfo {
        HostInfo {
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            addresses: wildcard_addresses(),
        }
    }
}

/// One expanded entry, before names are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expanded {
    /// An address.
    Addr(SocketAddr),
    /// A host name to look up, with the spec it came from.
    Name {
        /// The spec as written (after the digits-only expansion).
        spec: String,
        /// The host part.
        host: String,
        /// The port.
        port: u16,
    },
    /// `*` on a host without a non-loopback address.
    NoWildcard {
        /// The spec as written.
        spec: String,
        /// The port.
        port: u16,
    },
}

/// The reference's `_resolve` (Kernel.pm 306–385) up to name lookups, for
/// binds and seeds alike: entries split at `,`; digits only (or empty) is
/// `<hostname>:<digits>`; port `*` is 0; host `*` is every non-loopback
/// address of `host`; an IP address is itself; anything else is a name
/// to look up.
pub(crate) fn expand(specs: &[String], host: &HostInfo) -> Result<Vec<Expanded>, AddressError> {
    let mut out = Vec::new();
    for spec in specs.iter().flat_map(|s| s.split(',')) {
        let spec = spec.trim();
        let spec = if spec.chars().all(|c| c.is_ascii_digit()) {
            if spec.is_empty() {
                host.hostname.clone()
            } else {
                format!("{}:{spec}", host.hostname)
            }
        } else {
            spec.to_owned()
        };
        let (h, port) = parse_hostport(&spec)?;
        let port = port_number(&spec, &port)?;
        if h == "*" {
            let ips = pick_wildcard(host.addresses.iter().copied());
            if ips.is_empty() {
                out.push(Expanded::NoWildcard { spec, port });
            }
            out.extend(
                ips.into_iter()
                    .map(|ip| Expanded::Addr(SocketAddr::new(ip, port))),
            );
        } else if let Ok(ip) = h.parse::<IpAddr>() {
            out.push(Expanded::Addr(SocketAddr::new(ip, port)));
        } else {
            out.push(Expanded::Name {
                spec,
                host: h,
                port,
            });
        }
    }
    Ok(out)
}

fn push_new<T: PartialEq>(out: &mut Vec<T>, t: T) {
    if !out.contains(&t) {
        out.push(t);
    }
}

/// Expands bind specifications as a node does (`*`, `*:*`, digits only,
/// host names; see the `binds` setting) into socket addresses, in order
/// and without duplicates. Unlike the reference, `*` on a host without a
/// non-loopback address binds 127.0.0.1 (logged); a name that does not
/// resolve is an error.
pub async fn resolve(specs: &[String]) -> Result<Vec<SocketAddr>, StartError> {
    let config = |e: AddressError| StartError::Config(e.into());
    let mut out: Vec<SocketAddr> = Vec::new();
    for e in expand(specs, &HostInfo::this_host()).map_err(config)? {
        match e {
            Expanded::Addr(a) => push_new(&mut out, a),
            Expanded::NoWildcard { spec, port } => {
                tracing::info!(
                    "bind {spec}: no non-loopback address on this host; binding 127.0.0.1 instead"
                );
                push_new(
                    &mut out,
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
                );
            }
            Expanded::Name { spec, host, port } => {
                let addrs = tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .map_err(|source| StartError::Bind { addr: spec, source })?;
                for a in addrs {
                    push_new(&mut out, a);
                }
            }
        }
    }
    Ok(out)
}

/// Expands seed specifications once, at start, as the reference does
/// (`set_seeds map _resolve`, Kernel.pm 446) with the same expansion as
/// the binds ([`expand`]): `4040` is `<hostname>:4040`, `*:4040` every
/// non-loopback address of this host, and each address a name resolves
/// to is its own seed (`host:port`, IPv6 as `[addr]:port`), without
/// duplicates. There is no 127.0.0.1 fallback: `*` on a host without a
/// non-loopback address gives no seed, as in Perl (logged).
///
/// aemp decision: a name that does not resolve now is kept as written
/// (logged), so that it is looked up again at each dial (the connector
/// tries every address a name resolves to), instead of being lost for
/// the node's lifetime as in Perl. A spec that cannot be parsed is an
/// error.
pub(crate) async fn resolve_seeds(
    specs: &[String],
    host: &HostInfo,
) -> Result<Vec<String>, AddressError> {
    let mut out: Vec<String> = Vec::new();
    for e in expand(specs, host)? {
        match e {
            Expanded::Addr(a) => push_new(&mut out, a.to_string()),
            Expanded::NoWildcard { spec, .. } => {
                tracing::warn!(seed = %spec, "seed: no non-loopback address on this host; no seed");
            }
            Expanded::Name { spec, host, port } => {
                match tokio::net::lookup_host((host.as_str(), port)).await {
                    Ok(addrs) => {
                        let addrs: Vec<SocketAddr> = addrs.collect();
                        if addrs.is_empty() {
                            tracing::warn!(seed = %spec, "seed resolves to no address now; kept, looked up at each dial");
                            push_new(&mut out, spec);
                        }
                        for a in addrs {
                            push_new(&mut out, a.to_string());
                        }
                    }
                    Err(error) => {
                        tracing::warn!(seed = %spec, %error, "seed does not resolve now; kept, looked up at each dial");
                        push_new(&mut out, spec);
                    }
                }
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

    fn host(addresses: &[&str]) -> HostInfo {
        HostInfo {
            hostname: "myhost".into(),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn expansion_of_digits_star_and_names_with_an_injected_host() {
        let h = host(&[
            "127.0.0.1",
            "10.1.2.3",
            "::1",
            "fe80::1",
            "2001:db8::5",
            "192.168.0.9",
        ]);
        let addr = |s: &str| Expanded::Addr(s.parse().unwrap());
        // digits only: <hostname>:<digits>; empty: the host name, port 0
        assert_eq!(
            expand(&strings(&["4040", ""]), &h).unwrap(),
            vec![
                Expanded::Name {
                    spec: "myhost:4040".into(),
                    host: "myhost".into(),
                    port: 4040
                },
                Expanded::Name {
                    spec: "myhost".into(),
                    host: "myhost".into(),
                    port: 0
                },
            ]
        );
        // `*`: every non-loopback address, IPv4 first, no link-local v6
        assert_eq!(
            expand(&strings(&["*:4040"]), &h).unwrap(),
            vec![
                addr("10.1.2.3:4040"),
                addr("192.168.0.9:4040"),
                addr("[2001:db8::5]:4040"),
            ]
        );
        // `,` separates, `*` port is 0, an IP is itself
        assert_eq!(
            expand(&strings(&["1.2.3.4:5,[::1]:*"]), &h).unwrap(),
            vec![addr("1.2.3.4:5"), addr("[::1]:0")]
        );
        // no non-loopback address
        assert_eq!(
            expand(&strings(&["*:1"]), &host(&["127.0.0.1", "::1"])).unwrap(),
            vec![Expanded::NoWildcard {
                spec: "*:1".into(),
                port: 1
            }]
        );
        assert!(expand(&strings(&["h:notaport"]), &h).is_err());
    }

    #[tokio::test]
    async fn seeds_are_expanded_like_binds_without_the_loopback_fallback() {
        let h = host(&["127.0.0.1", "10.1.2.3", "2001:db8::5"]);
        assert_eq!(
            resolve_seeds(&strings(&["*:4040", "10.1.2.3:4040", "[::1]:7"]), &h)
                .await
                .unwrap(),
            strings(&["10.1.2.3:4040", "[2001:db8::5]:4040", "[::1]:7"])
        );
        // none at all where binds would fall back to 127.0.0.1
        assert!(
            resolve_seeds(&strings(&["*:4040"]), &host(&["127.0.0.1"]))
                .await
                .unwrap()
                .is_empty()
        );
        // digits only: the (injected) host name, each address its own seed
        let local = HostInfo {
            hostname: "localhost".into(),
            addresses: Vec::new(),
        };
        let seeds = resolve_seeds(&strings(&["4040"]), &local).await.unwrap();
        assert!(seeds.contains(&"127.0.0.1:4040".to_owned()), "{seeds:?}");
        assert!(
            seeds.iter().all(|s| s.parse::<SocketAddr>().is_ok()),
            "{seeds:?}"
        );
        // a name that does not resolve now is kept for the dial
        assert_eq!(
            resolve_seeds(&strings(&["no-such-host.invalid:1"]), &local)
                .await
                .unwrap(),
            strings(&["no-such-host.invalid:1"])
        );
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
