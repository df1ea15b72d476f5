//! Framing: `Content-Length` is digits only; `chunked` is the only transfer coding.

use std::time::Duration;

use super::{Bounded, ask, body_of, get, stored_total};
use crate::support::{BOUND, sign};

fn webhook_with_framing(headers: &str, body: &[u8], signed_over: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nX-Signature: {}\r\n{headers}Connection: close\r\n\r\n",
        sign(signed_over)
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `Content-Length` is ASCII digits only (after trimming optional whitespace): anything else is
/// 400, and nothing is stored.
#[test]
fn content_length_that_is_not_plain_digits_is_400() {
    let server = Bounded::start(|_| {});
    let body = body_of("framing-1");
    let len = body.len();
    for value in [
        format!("+{len}"),
        format!("-{len}"),
        format!("0x{len:x}"),
        format!("{len}_0"),
        format!("{len}, {len}"),
        format!("{len}.0"),
        String::new(),
    ] {
        let bytes = webhook_with_framing(&format!("Content-Length: {value}\r\n"), &body, &body);
        let (seen, _) = ask(server.addr, &bytes, Duration::from_secs(2));
        assert_eq!(
            seen.status(),
            Some(400),
            "Content-Length: {value:?}: {seen:?}"
        );
    }
    assert_eq!(stored_total(server.addr), 0);
    // Optional whitespace around the digits is not part of the value.
    let bytes = webhook_with_framing(&format!("Content-Length:  {len} \r\n"), &body, &body);
    let (seen, _) = ask(server.addr, &bytes, Duration::from_secs(2));
    assert_eq!(
        seen.status(),
        Some(200),
        "Content-Length with OWS: {seen:?}"
    );
    assert_eq!(stored_total(server.addr), 1);
}

/// Only `chunked` is a transfer coding: others are 501; `chunked` is decoded and stored; a
/// request carrying both `Content-Length` and `Transfer-Encoding` is 400.
#[test]
fn transfer_encoding_other_than_chunked_is_501_and_with_content_length_400() {
    let server = Bounded::start(|_| {});
    let body = body_of("chunked-1");
    let mut chunked = Vec::new();
    for piece in body.chunks(17) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");

    for coding in ["gzip", "gzip, chunked", "identity", "compress"] {
        let bytes =
            webhook_with_framing(&format!("Transfer-Encoding: {coding}\r\n"), &chunked, &body);
        let (seen, _) = ask(server.addr, &bytes, Duration::from_secs(2));
        assert_eq!(
            seen.status(),
            Some(501),
            "Transfer-Encoding: {coding}: {seen:?}"
        );
    }
    let both = webhook_with_framing(
        &format!(
            "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
            chunked.len()
        ),
        &chunked,
        &body,
    );
    let (seen, _) = ask(server.addr, &both, Duration::from_secs(2));
    assert_eq!(
        seen.status(),
        Some(400),
        "Content-Length and Transfer-Encoding: {seen:?}"
    );
    assert_eq!(stored_total(server.addr), 0);

    let plain = webhook_with_framing("Transfer-Encoding: chunked\r\n", &chunked, &body);
    let (seen, _) = ask(server.addr, &plain, Duration::from_secs(2));
    assert_eq!(
        seen.status(),
        Some(200),
        "a valid chunked signed body: {seen:?}"
    );
    let listed = get(server.addr, "/messages", BOUND).resp("GET /messages");
    assert_eq!(listed.json()["data"][0]["message_id"], "chunked-1");
    assert_eq!(listed.json()["total"], 1);
}
