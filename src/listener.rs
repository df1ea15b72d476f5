//! The listening socket. We bind it ourselves because options set on a Linux listening socket
//! are inherited by every connection it accepts.

use std::io;
use std::net::{TcpListener, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

const BACKLOG: i32 = 1024;

/// Binds `host:port` with the options every accepted connection should carry:
/// - `TCP_NODELAY`: an answer is written in one piece and should leave at once; with Nagle's
///   algorithm a second segment waits for the client's delayed ACK (seen as a 40 ms p50 on
///   `/messages` before this).
/// - `SO_KEEPALIVE`: connections to peers that vanished are eventually noticed and closed.
/// - `SO_REUSEADDR`: a restart can bind at once, without waiting out TIME_WAIT.
///
/// Read and write time limits are not socket options here: the connection thread arms each read
/// and write with what is left of its total deadline (see `conn`).
pub fn bind(host: &str, port: u16) -> io::Result<TcpListener> {
    let addr = (host, port).to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            "address resolves to nothing",
        )
    })?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_keepalive(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
