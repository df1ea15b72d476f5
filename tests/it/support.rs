//! Test support: a real server on an OS-chosen loopback port with its own temporary database, and
//! a tiny raw HTTP/1.1 client, so tests control every byte sent (unencoded `+`, odd bodies,
//! hostile requests) and see every byte returned.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hookbox::{Config, ServerHandle};
use serde_json::Value;

pub const SECRET: &str = "testsecret";

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "hookbox-test-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running in-process server. Stops (gracefully) and deletes its database on drop.
pub struct TestServer {
    handle: Option<ServerHandle>,
    pub addr: SocketAddr,
    pub dir: TempDir,
}

impl TestServer {
    /// A server with `SECRET` configured and default settings.
    pub fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    /// A server whose config `adjust` may change (secret, limits, workers…).
    pub fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = TempDir::new();
        let mut config = Config::for_database(dir.path().join("test.db"), Some(SECRET));
        adjust(&mut config);
        TestServer::start_in(dir, config)
    }

    /// A server on an existing directory (for restart tests); `config.database` decides the file.
    pub fn start_in(dir: TempDir, config: Config) -> TestServer {
        let handle = hookbox::start(config).expect("server starts");
        TestServer {
            addr: handle.addr(),
            handle: Some(handle),
            dir,
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("test.db")
    }

    /// Stops the server and hands back its directory, e.g. to restart on the same file.
    pub fn stop(mut self) -> TempDir {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
        }
        std::mem::replace(&mut self.dir, TempDir::new())
    }

    pub fn get(&self, target: &str) -> Resp {
        self.send("GET", target, &[], b"")
    }

    /// POSTs `body` to /webhook signed with `SECRET`.
    pub fn post_webhook(&self, body: &[u8]) -> Resp {
        let signature = sign(body);
        self.send("POST", "/webhook", &[("X-Signature", &signature)], body)
    }

    /// POSTs a valid message built from its parts.
    pub fn post_message(&self, id: &str, from: &str, ts: &str, text: Option<&str>) -> Resp {
        self.post_webhook(message(id, from, ts, text).as_bytes())
    }

    pub fn send(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        self.raw(&request_bytes(self.addr, method, target, headers, body))
    }

    /// Sends `bytes` as they are and parses the one response.
    pub fn raw(&self, bytes: &[u8]) -> Resp {
        let mut stream = self.connect();
        stream.write_all(bytes).unwrap();
        read_response(&mut stream)
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
    }

    /// The value of one sample line of /metrics, e.g. `webhook_requests_total{result="created"}`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = self.get("/metrics").text();
        metric_value(&text, series)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
        }
    }
}

/// One HTTP/1.1 request with `Content-Length` and `Connection: close`, as bytes.
pub fn request_bytes(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().unwrap())
    })
}

pub fn sign(body: &[u8]) -> String {
    hookbox::signature::sign_hex(SECRET.as_bytes(), body)
}

/// A valid message body.
pub fn message(id: &str, from: &str, ts: &str, text: Option<&str>) -> String {
    serde_json::json!({
        "message_id": id,
        "from": from,
        "to": "+14155550100",
        "ts": ts,
        "text": text,
    })
    .to_string()
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Reads one response from a stream the server will close (we always send `Connection: close`).
pub fn read_response(stream: &mut TcpStream) -> Resp {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Reads one response by its `Content-Length`, without waiting for the server to close the
/// connection: for requests whose body the server must answer without reading (or finishing).
pub fn read_response_by_length(stream: &mut TcpStream) -> Resp {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = parse_response(&raw[..split + 4]);
            let length: usize = head
                .header("content-length")
                .map_or(0, |value| value.parse().unwrap());
            if raw.len() >= split + 4 + length {
                return parse_response(&raw[..split + 4 + length]);
            }
        }
        let n = stream.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "connection closed mid-response: {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    }
}

/// A small deterministic PRNG (xorshift64*): inputs and orders differ per seed, not per run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn range(&mut self, low: u32, high_inclusive: u32) -> u32 {
        low + self.below((high_inclusive - low + 1) as usize) as u32
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Fisher–Yates, in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// A string from `alphabet` (chars, so multi-byte ones stay whole).
    pub fn string_from(&mut self, alphabet: &[char], max_len: usize) -> String {
        let len = self.below(max_len + 1);
        (0..len).map(|_| *self.pick(alphabet)).collect()
    }
}
