// hookbox patch (whole file): marks a connection as unusable when a request body was dropped
// before its end. Whatever is left of that body would otherwise be parsed as the next request:
// a request smuggled inside a body, behind a proxy that treated it as a body.

use std::io::{Read, Result as IoResult};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Shared by a connection and the bodies of its requests: set once a body is abandoned.
pub type UnreadBody = Arc<AtomicBool>;

/// Wraps a body reader whose end is only known by reading it (chunked transfer encoding).
pub struct MarkIfUnread<R: Read> {
    inner: R,
    finished: bool,
    flag: UnreadBody,
}

impl<R: Read> MarkIfUnread<R> {
    pub fn new(inner: R, flag: UnreadBody) -> Self {
        MarkIfUnread {
            inner,
            finished: false,
            flag,
        }
    }
}

impl<R: Read> Read for MarkIfUnread<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        let read = self.inner.read(buf)?;
        if read == 0 && !buf.is_empty() {
            self.finished = true;
        }
        Ok(read)
    }
}

impl<R: Read> Drop for MarkIfUnread<R> {
    fn drop(&mut self) {
        if !self.finished {
            self.flag.store(true, Ordering::Release);
        }
    }
}
