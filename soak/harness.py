"""What the soak suite (soak/) and the benchmark (bench/) share: signing, starting a hookbox
process and waiting for its `listening` line, reading its /proc figures, and small HTTP clients
(a keep-alive one over http.client, and raw bytes for hostile ones).

Standard library only. bench/lib.py imports this file by path, so it depends on nothing else in
soak/.
"""

import hashlib
import hmac
import http.client
import json
import socket
import time


def sign(secret, body):
    """The X-Signature of `body` (bytes or str) under `secret`."""
    if isinstance(body, str):
        body = body.encode()
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------------------------
# The process


def wait_for_listening(log_path, process, timeout, name="server"):
    """The address from the server's `listening` JSON line in `log_path` (its stdout).
    Raises RuntimeError if the process exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log_path, "rb") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("msg") == "listening":
                    return record["addr"]
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited {process.returncode} before listening")
        time.sleep(0.02)
    raise RuntimeError(f"{name} did not log 'listening' within {timeout}s")


def status_kib(pid, field):
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM …), 0 if absent."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------------------------
# HTTP

CONNECTION_ERRORS = (OSError, http.client.HTTPException)


class Client:
    """One keep-alive HTTP/1.1 connection; reconnects (and counts it) when the server closes.
    `secret` (a class attribute, so a suite can set its own) signs `post_message`."""

    secret = None

    def __init__(self, host, port, timeout=10.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn = None
        self.reconnects = 0

    def request(self, method, path, body=None, headers=None):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            response = self.conn.getresponse()
            data = response.read()
        except CONNECTION_ERRORS:
            self.close()
            raise
        if response.will_close:
            self.close()
            self.reconnects += 1
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def post_message(self, body):
        return self.request(
            "POST", "/webhook", body,
            {"X-Signature": sign(self.secret, body), "Content-Type": "application/json"},
        )

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def one_request(host, port, method, path, body=None, headers=None, timeout=5.0):
    """One request on a connection of its own: (status, headers, body)."""
    client = Client(host, port, timeout)
    try:
        return client.request(method, path, body, headers)
    finally:
        client.close()


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


def raw_request(method, target, headers=(), body=b"", close=False):
    lines = [f"{method} {target} HTTP/1.1", "Host: hookbox"]
    lines += [f"{name}: {value}" for name, value in headers]
    if method == "POST" or body:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def take_responses(buffer):
    """Complete responses at the front of `buffer` (a bytearray, consumed): [(status, headers)]."""
    out = []
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return out
        head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        try:
            status = int(head[0].split(" ")[1])
        except (IndexError, ValueError):
            status = -1
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if len(buffer) < end + 4 + length:
            return out
        del buffer[:end + 4 + length]
        if status >= 200 or status < 0:
            out.append((status, headers))


def tcp_state(sock):
    """The kernel's TCP state of `sock` (1 ESTABLISHED, 7 CLOSE, 8 CLOSE_WAIT …), or 0."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except OSError:
        return 0


def peer_closed(sock):
    """True if the server closed this connection (EOF or reset); False while it is open."""
    try:
        data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return data == b""


def peer_closed_nb(sock):
    """`peer_closed` for a non-blocking socket: EOF or reset, without consuming data."""
    try:
        data = sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return data == b"" or data.startswith(b"H")  # an answer (408) counts as cut


def recv_available(sock):
    """Everything readable now (b"" if nothing yet), or None once the peer closed."""
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return b"".join(chunks)
        except OSError:
            return None
        if not data:
            return None if not chunks else b"".join(chunks)
        chunks.append(data)
