//! A TCP proxy between hookbox and PostgreSQL that the test controls: it can go silent (keep
//! every socket open, forward nothing: what a stopped or stalled server looks like from the
//! client, since the kernel still acknowledges) and resume; and it can terminate TLS with a
//! test-made certificate, so a client's certificate checks meet a chain the test decides.
//! Loopback only; every thread ends when the proxy is dropped and its sockets close.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// `SSLRequest`: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

#[derive(Default)]
struct Gate {
    silent: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn wait_open(&self) {
        let mut silent = self.silent.lock().unwrap();
        while *silent {
            silent = self.changed.wait(silent).unwrap();
        }
    }
}

pub struct Proxy {
    addr: SocketAddr,
    gate: Arc<Gate>,
    stopped: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Forwards every connection to `upstream` as it is.
    pub fn plain(upstream: SocketAddr) -> Proxy {
        Proxy::start(upstream, None)
    }

    /// Answers `SSLRequest` with `S`, terminates TLS with `tls`, and forwards the plain protocol
    /// to `upstream` (which sees an ordinary non-TLS connection).
    pub fn tls(upstream: SocketAddr, tls: Arc<rustls::ServerConfig>) -> Proxy {
        Proxy::start(upstream, Some(tls))
    }

    fn start(upstream: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = Arc::new(Gate::default());
        let stopped = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let (accept_gate, accept_stopped, accept_streams) = (
            Arc::clone(&gate),
            Arc::clone(&stopped),
            Arc::clone(&streams),
        );
        thread::spawn(move || {
            for client in listener.incoming() {
                if accept_stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let mut held = accept_streams.lock().unwrap();
                held.push(client.try_clone().unwrap());
                held.push(server.try_clone().unwrap());
                drop(held);
                let gate = Arc::clone(&accept_gate);
                match &tls {
                    None => {
                        pump(
                            client.try_clone().unwrap(),
                            server.try_clone().unwrap(),
                            &gate,
                        );
                        pump(server, client, &gate);
                    }
                    Some(tls) => {
                        let tls = Arc::clone(tls);
                        thread::spawn(move || {
                            let _ = terminate_tls(client, server, tls);
                        });
                    }
                }
            }
        });
        Proxy {
            addr,
            gate,
            stopped,
            streams,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on nothing is forwarded either way; sockets stay open.
    pub fn silence(&self) {
        *self.gate.silent.lock().unwrap() = true;
    }

    /// Forwards again, what was held first.
    pub fn resume(&self) {
        *self.gate.silent.lock().unwrap() = false;
        self.gate.changed.notify_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.resume();
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let _ = TcpStream::connect(self.addr); // wakes the accept loop to see `stopped`
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, gate: &Arc<Gate>) {
    let gate = Arc::clone(gate);
    thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            let read = match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            gate.wait_open();
            if to.write_all(&buffer[..read]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// One TLS-terminated connection, both directions on this thread (rustls's connection is not
/// shared between threads): non-blocking sockets, polled.
fn terminate_tls(
    mut client: TcpStream,
    mut server: TcpStream,
    tls: Arc<rustls::ServerConfig>,
) -> io::Result<()> {
    let mut request = [0u8; 8];
    client.read_exact(&mut request)?;
    if request != SSL_REQUEST {
        return Ok(()); // This proxy only speaks TLS.
    }
    client.write_all(b"S")?;
    let mut connection = rustls::ServerConnection::new(tls).map_err(io::Error::other)?;
    client.set_nonblocking(true)?;
    server.set_nonblocking(true)?;
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let mut progressed = false;
        match connection.read_tls(&mut client) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                progressed = true;
                connection.process_new_packets().map_err(io::Error::other)?;
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
        match connection.reader().read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(read) => {
                progressed = true;
                write_all_polled(&mut server, &buffer[..read])?;
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
        match server.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(read) => {
                progressed = true;
                connection.writer().write_all(&buffer[..read])?;
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
        while connection.wants_write() {
            match connection.write_tls(&mut client) {
                Ok(_) => progressed = true,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => return Err(error),
            }
        }
        if !progressed {
            thread::sleep(Duration::from_millis(1)); // a poll interval, not a synchronisation
        }
    }
}

fn write_all_polled(stream: &mut TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(written) => bytes = &bytes[written..],
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(1));
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
