//! The accept loop: takes connections, holds them to `max_connections`, starts a thread for
//! each, and stops (closing the port, cutting waiting connections) on request.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::budget::BodyBudget;
use super::connection::Connection;
use super::{CloseReason, Handler, Limits, Observer};

/// Stack for each connection thread. The deepest path a connection thread runs is a webhook's
/// handler, verified and parsed on it: serde_json parses nesting up to its limit of 128 levels
/// by recursion. Measured alone, a 127-deep array needs 64 KiB of stack in a release build and
/// 256 KiB in a debug one (frames several times larger). A release connection gets 256 KiB, four
/// times that parse and everything around it; a debug one (the test suite) 1 MiB. Only touched
/// pages count towards RSS (an honest webhook touches a few), and a reservation of an eighth of
/// the 2 MiB default keeps a thousand threads' address space small too.
pub const CONNECTION_STACK: usize = if cfg!(debug_assertions) {
    1024 * 1024
} else {
    256 * 1024
};

/// Where a connection is, for shutdown: waiting connections are cut, busy ones finish.
pub(super) const WAITING: u8 = 0;
pub(super) const BUSY: u8 = 1;

/// An open connection's socket and where it is (`WAITING` or `BUSY`).
type OpenConnection = (Arc<TcpStream>, Arc<AtomicU8>);

pub(super) struct Shared {
    pub(super) limits: Limits,
    pub(super) handler: Handler,
    pub(super) observer: Arc<dyn Observer>,
    pub(super) budget: BodyBudget,
    pub(super) stopping: AtomicBool,
    next_id: AtomicU64,
    /// Every open connection's socket (shared with its thread: one descriptor) and state.
    open: Mutex<HashMap<u64, OpenConnection>>,
    /// Signalled whenever a connection ends.
    ended: Condvar,
}

impl Shared {
    /// The open connections. A thread that panicked while holding the lock cannot have left
    /// the map half-changed (every change is one insert or remove), so a poisoned lock is used.
    fn open(&self) -> MutexGuard<'_, HashMap<u64, OpenConnection>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running server. `stop` ends accepting; dropping it stops too.
pub struct Serving {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept_thread: Option<thread::JoinHandle<()>>,
}

/// Starts accepting on `listener`; each connection gets a thread of its own. Fails if the
/// accept thread cannot be started.
pub fn serve(
    listener: TcpListener,
    limits: Limits,
    handler: Handler,
    observer: Arc<dyn Observer>,
) -> io::Result<Serving> {
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        budget: BodyBudget::new(limits.body_budget),
        limits,
        handler,
        observer,
        stopping: AtomicBool::new(false),
        next_id: AtomicU64::new(0),
        open: Mutex::new(HashMap::new()),
        ended: Condvar::new(),
    });
    let accept_thread = {
        let shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("accept".to_owned())
            .spawn(move || {
                let accepting = std::panic::AssertUnwindSafe(|| accept_loop(&listener, &shared));
                if std::panic::catch_unwind(accepting).is_err() {
                    shared
                        .observer
                        .stopped_accepting("the accept loop panicked");
                }
            })?
    };
    Ok(Serving {
        shared,
        addr,
        accept_thread: Some(accept_thread),
    })
}

impl Serving {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.open().len()
    }

    /// Bytes of request bodies reserved in the budget right now.
    pub fn body_buffer_bytes(&self) -> u64 {
        self.shared.budget.used()
    }

    /// Stops accepting (the listening socket is closed before this returns) and cuts every
    /// connection that is waiting for a request; a connection busy with one finishes it, answers
    /// with `Connection: close`, and ends.
    pub fn stop(&mut self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wakes the accept thread from `accept`; it sees `stopping` and drops the listener.
        let _ = TcpStream::connect_timeout(&wake_addr(self.addr), Duration::from_secs(1));
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
        for (stream, state) in self.shared.open().values() {
            if state.load(Ordering::SeqCst) == WAITING {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Waits until every connection has ended, or `timeout` passed; true when all ended.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut open = self.shared.open();
        while !open.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            open = match self.shared.ended.wait_timeout(open, left) {
                Ok((open, _)) => open,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }

    /// Cuts every connection still open, busy or not (the end of a shutdown grace period).
    pub fn cut_all(&self) {
        for (stream, _) in self.shared.open().values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The address that reaches our own listener (an unspecified bind address is not connectable).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match target {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    target
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                match error.kind() {
                    ErrorKind::WouldBlock
                    | ErrorKind::TimedOut
                    | ErrorKind::Interrupted
                    | ErrorKind::ConnectionAborted => {}
                    // Out of descriptors, say: they free up as connections close. Back off.
                    _ => {
                        shared.observer.accept_failed(&error);
                        thread::sleep(Duration::from_millis(20));
                    }
                }
                continue;
            }
        };
        let stream = Arc::new(stream);
        let state = Arc::new(AtomicU8::new(WAITING));
        let id = {
            let mut open = shared.open();
            if open.len() >= shared.limits.max_connections {
                drop(open);
                // Counted before the refusal leaves, so a client that reads it sees it counted.
                shared.observer.refused();
                refuse(&stream);
                continue;
            }
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            open.insert(id, (Arc::clone(&stream), Arc::clone(&state)));
            id
        };
        shared.observer.opened();
        // Connections are capped, so a thread each is bounded; no pool to queue behind.
        let spawned = {
            let shared = Arc::clone(shared);
            let stream = Arc::clone(&stream);
            thread::Builder::new()
                .name("conn".to_owned())
                .stack_size(CONNECTION_STACK)
                .spawn(move || run_connection(&shared, id, &stream, &state))
        };
        if let Err(error) = spawned {
            // Out of memory or threads: this connection is closed, the loop goes on, and the
            // operator hears of it. Never a panic in the accept loop.
            shared.observer.spawn_failed(&error);
            refuse(&stream);
            end_connection(shared, id, CloseReason::Error);
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A connection's thread: serves it, then takes it off the open list.
fn run_connection(shared: &Shared, id: u64, stream: &TcpStream, state: &AtomicU8) {
    let reason = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Connection::new(stream, state, shared).run()
    }))
    .unwrap_or(CloseReason::Error);
    let _ = stream.shutdown(Shutdown::Both);
    end_connection(shared, id, reason);
}

fn end_connection(shared: &Shared, id: u64, reason: CloseReason) {
    shared.open().remove(&id);
    shared.ended.notify_all();
    shared.observer.closed(reason);
}

/// Over the connection limit: a canned answer, written without waiting, then close. No thread is
/// started for it, so a flood of connections costs only the accept loop's time.
fn refuse(stream: &TcpStream) {
    const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
        Content-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\n\
        Content-Length: 51\r\n\r\n{\"detail\":\"too many open connections, retry later\"}";
    let _ = stream.set_nonblocking(true);
    let _ = (&*stream).write(REFUSAL);
    let _ = stream.shutdown(Shutdown::Write);
}
