//! Name resolution: [`lookup_host`], the system's resolver (`getaddrinfo`) on a worker
//! thread, so that a slow DNS server blocks a thread of the pool and never the runtime.
//!
//! IP literals (`"127.0.0.1"`, `"::1"`, and the bracketed `"[::1]"` of URLs) are parsed
//! on the runtime's thread and never reach the resolver: connecting to an address costs
//! no thread hop.

#![forbid(unsafe_code)]

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use crate::thread::to_thread;

/// Resolves `host` to the socket addresses of `port`, in the order the system's resolver
/// gives them (`getaddrinfo`, which sorts them by RFC 6724 preference), without blocking
/// the runtime: the lookup runs on a worker thread ([`to_thread`](crate::to_thread)).
///
/// An IP literal is answered at once, without a thread: `"192.0.2.1"`, `"::1"`, and
/// `"[::1]"` (the bracketed form of URLs, accepted here although the system's resolver
/// rejects it). An IPv6 literal with a zone (`"fe80::1%eth0"`) goes to the resolver,
/// which understands zones.
///
/// # Cancellation
///
/// Dropping the future midway abandons the lookup: the caller goes on at once, the
/// worker thread finishes the lookup on its own and drops the answer. No result is lost
/// that anyone could still use.
///
/// # Errors
///
/// When the resolver fails (unknown name, no network, …) or finds no address, an
/// `io::Error` whose message names the host and the port and says what went wrong; its
/// kind is the resolver's (usually `Other` or `Uncategorized` for an unknown name) or
/// `NotFound` for an empty answer.
///
/// # Panics
///
/// A name (not an IP literal) looked up outside a trellis runtime panics, as
/// [`to_thread`](crate::to_thread) does.
///
/// # Examples
///
/// ```
/// trellis::run(async {
///     // "localhost" is in /etc/hosts: this needs no network.
///     let addrs = trellis::net::lookup_host("localhost", 80).await?;
///     assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
///
///     // IP literals never reach the resolver.
///     let v6 = trellis::net::lookup_host("[::1]", 443).await?;
///     assert_eq!(v6, ["[::1]:443".parse().unwrap()]);
///
///     let err = trellis::net::lookup_host("nonexistent.invalid", 80).await.unwrap_err();
///     assert!(err.to_string().contains("nonexistent.invalid"));
/// # Ok::<(), std::io::Error>(()) }).unwrap();
/// ```
pub async fn lookup_host(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Some(ip) = ip_literal(host) {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let owned = host.to_owned();
    let answer = to_thread(move || (owned.as_str(), port).to_socket_addrs()).await;
    match answer {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "the name {host:?} (port {port}) resolves to no address; check the \
                         host name"
                    ),
                ))
            } else {
                Ok(addrs)
            }
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!(
                "could not resolve {host:?} (port {port}): {e}; check the host name and the \
                 network"
            ),
        )),
    }
}

/// `host` as an IP address if it is a literal: plain, or IPv6 in brackets.
fn ip_literal(host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    let inner = host.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}
