#!/usr/bin/env python3
"""Writes the seed inputs of each fuzz target into fuzz/corpus/<target>/ (not committed: this
script is). Each seed starts with the bytes the target reads its settings from, as
`arbitrary::Unstructured::int_in_range` reads them (big-endian, modulo the range's width)."""
import hashlib
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def be(value, width):
    return value.to_bytes(width, "big")


def write(target, seeds):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    for seed in seeds:
        name = "seed-" + hashlib.sha1(seed).hexdigest()[:16]
        with open(os.path.join(folder, name), "wb") as out:
            out.write(seed)


# head_and_body, raw mode: mode (even), max_body 1024, max_head_bytes 64+1984, max_headers
# 1+11, budget 4096, one piece of 7 bytes; then the bytes a client sends.
RAW = bytes([0]) + be(1024, 2) + be(1984, 2) + bytes([11]) + be(4096, 2) + bytes([0, 6])
write("head_and_body", [RAW + stream for stream in [
    b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n",
    b"POST /webhook HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
    b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
    b"GET /health/live HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\n\n",
    b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    b"\r\nPOST / HTTP/1.1\nContent-Length: 99999\nExpect: 100-continue\n\nx",
]] + [bytes([1]) + bytes(range(40, 120))])

# webhook_message: raw bodies (even first byte), and generated ones (odd).
write("webhook_message", [bytes([0]) + body for body in [
    b'{"message_id":"m1","from":"+919876543210","to":"+14155550100","ts":"2025-01-15T10:00:00Z","text":"hi"}',
    b'{"message_id":"m2","from":"+1","to":"+2","ts":"2025-01-15T10:00:00.123456789Z","text":null}',
    b'{"message_id":"","from":"1","to":"+2x","ts":"2025-02-30T10:00:00Z","text":5}',
    b'[1,2]',
    b'{"message_id":"m',
]] + [bytes([1]) + bytes(range(0, 200, 3))])

write("query_string", [
    b"limit=10&from=%2B15551234567&since=2025-01-15T10:00:00Z&q=hello%20world",
    b"offset=5&limit=100&from=+1&from=%00",
    b"cursor=00ff&limit=0&offset=-1&q=%ff",
    b"since=2025-01-15T10:00:00.5Z&id=m%0A1&q=100%",
])

write("cursor", [bytes([1]) + bytes(range(0, 120, 5)), bytes([0, 5, 1, 0]) + b"6332" + b"ab" * 30])

write("import_line", [bytes([7, 255]) + lines for lines in [
    b'{"message_id":"m1","from":"+1","to":"+2","ts":"2025-01-15T10:00:00Z","text":"a"}\n'
    b'\n   \r\n{"message_id":"m1","from":"+1","to":"+2","ts":"2025-01-15T10:00:00Z"}\r\n'
    b'not json\n{"message_id":"m2","from":"+1","to":"+2","ts":"2025-01-15T10:00:01Z"}',
    b'\xef\xbb\xbf{"message_id":"b","from":"+1","to":"+2","ts":"2025-01-15T10:00:00Z"}\n',
]] + [bytes([3, 40]) + b'{"message_id":"' + b"x" * 100 + b'"}\nshort\n'])
