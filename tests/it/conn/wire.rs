//! The client side of the connection layer's tests: raw HTTP/1.1 over
//! a real socket, so a test sees exactly the bytes the server wrote and whether it closed.
//! Every socket has read and write timeouts, so no test can hang on a server that misbehaves.

use std::io::{self, BufRead, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The longest any single read or write of a test waits.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to `addr` with `TIMEOUT` on every read and write.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Connects and writes `bytes` at once.
pub fn send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = connect(addr);
    stream.write_all(bytes).expect("write request");
    stream
}

/// One answer as read off the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads a status line and headers (no body).
pub fn read_head(reader: &mut impl BufRead) -> io::Result<Answer> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            ErrorKind::UnexpectedEof,
            "closed before an answer",
        ));
    }
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(ErrorKind::InvalidData, format!("status line {:?}", line)))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(ErrorKind::UnexpectedEof, "closed in a head"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| io::Error::new(ErrorKind::InvalidData, line.to_owned()))?;
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(Answer {
        status,
        headers,
        body: Vec::new(),
    })
}

/// Reads one answer framed by `Content-Length` (both servers under test always send one; a 1xx
/// answer has none and no body).
pub fn read_answer(reader: &mut impl BufRead) -> io::Result<Answer> {
    let mut answer = read_head(reader)?;
    let length = answer
        .header("content-length")
        .map(|value| value.parse::<usize>().expect("numeric Content-Length"))
        .unwrap_or(0);
    answer.body = vec![0; length];
    reader.read_exact(&mut answer.body)?;
    Ok(answer)
}

/// How reading to the end of a connection went.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// The server closed it (EOF).
    Closed,
    /// The server reset it (it closed with our bytes unread).
    Reset,
    /// Still open after `TIMEOUT`.
    Open,
}

/// Reads until the server closes the connection (or `TIMEOUT` passes): what came, and how it ended.
pub fn read_to_end(reader: &mut impl Read) -> (Vec<u8>, Ending) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return (bytes, Ending::Closed),
            Ok(read) => bytes.extend_from_slice(&buf[..read]),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (bytes, Ending::Open);
            }
            Err(_) => return (bytes, Ending::Reset),
        }
    }
}

/// True when the connection was ended by the server (closed or reset), not left open.
pub fn ended(ending: &Ending) -> bool {
    *ending != Ending::Open
}
