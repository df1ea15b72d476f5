//! `hookbox healthcheck`: asks a running server on this machine whether it is ready.
//!
//! The runtime image has no shell and no curl, so the container healthcheck is the binary itself.
//! It reads the same `HOST`/`PORT` as the server and exits 0 only on a 200 from `/health/ready`.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::Config;

const TIMEOUT: Duration = Duration::from_secs(3);

/// Ok when the server answers `GET /health/ready` with 200; otherwise why not.
pub fn check(config: &Config) -> Result<(), String> {
    let addr = probe_address(config)?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|error| format!("cannot connect to {addr}: {error}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .and_then(|()| {
            stream.write_all(
                b"GET /health/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            )
        })
        .map_err(|error| format!("cannot send to {addr}: {error}"))?;
    let mut response = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut response)
        .map_err(|error| format!("no answer from {addr}: {error}"))?;
    let text = String::from_utf8_lossy(&response);
    if text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").trim();
        Err(format!("{addr} is not ready: {body}"))
    }
}

/// The listener's address, with a wildcard host replaced by loopback. `HOST` is an IP address
/// (config checks it), so nothing is resolved.
fn probe_address(config: &Config) -> Result<SocketAddr, String> {
    let ip: IpAddr = config
        .host
        .parse()
        .map_err(|_| format!("HOST={} is not an IP address", config.host))?;
    let ip = match ip {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(SocketAddr::new(ip, config.port))
}
