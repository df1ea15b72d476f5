//! The listening socket. We bind it ourselves (tiny_http only accepts on it) because options set
//! on a Linux listening socket are inherited by every connection it accepts, and tiny_http gives
//! us no other way to reach those connections' sockets.

use std::io;
use std::net::{TcpListener, ToSocketAddrs};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// A client that stops reading its response cannot hold a worker longer than this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

const BACKLOG: i32 = 1024;

/// Binds `host:port` with the options every accepted connection should carry:
/// - `TCP_NODELAY`: tiny_http writes the head and the body of a response separately; with Nagle's
///   algorithm the body waits for the client's delayed ACK, adding ~40 ms to any response over
///   1 KiB (seen as a 40 ms p50 on `/messages` before this).
/// - `SO_RCVTIMEO` (`read_timeout`): an idle keep-alive connection, or a client that stops
///   sending mid-request, is closed after this long instead of holding a thread forever. On the
///   listener it also makes `accept` wake up idle every `read_timeout`; our patched tiny_http
///   accept loop simply goes round again (upstream would have stopped accepting for good).
/// - `SO_SNDTIMEO`: a bounded write, so a peer that never reads cannot block a worker forever.
/// - `SO_KEEPALIVE`: connections to peers that vanished are eventually noticed and closed.
/// - `SO_REUSEADDR`: a restart can bind at once, without waiting out TIME_WAIT.
pub fn bind(host: &str, port: u16, read_timeout: Duration) -> io::Result<TcpListener> {
    let addr = (host, port).to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            "address resolves to nothing",
        )
    })?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_read_timeout(Some(read_timeout))?;
    socket.set_write_timeout(Some(WRITE_TIMEOUT))?;
    socket.set_keepalive(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
