use std::io::Read;
use std::io::Result as IoResult;
use std::sync::mpsc::channel;
use std::sync::mpsc::{Receiver, Sender};

/// A `Reader` that reads exactly the number of bytes from a sub-reader.
///
/// If the limit is reached, it returns EOF. If the limit is not reached
/// when the destructor is called, the remaining bytes will be read and
/// thrown away.
pub struct EqualReader<R>
where
    R: Read,
{
    reader: R,
    size: usize,
    last_read_signal: Sender<IoResult<()>>,
    // hookbox patch: set when the drop below gives up on draining (see UnreadBody).
    unread_body: Option<crate::util::UnreadBody>,
}

impl<R> EqualReader<R>
where
    R: Read,
{
    pub fn new(reader: R, size: usize) -> (EqualReader<R>, Receiver<IoResult<()>>) {
        let (tx, rx) = channel();

        let r = EqualReader {
            reader,
            size,
            last_read_signal: tx,
            unread_body: None,
        };

        (r, rx)
    }
}

impl<R> EqualReader<R>
where
    R: Read,
{
    // hookbox patch: the connection's flag, set if this body is abandoned undrained.
    pub fn mark_unread_in(mut self, flag: crate::util::UnreadBody) -> Self {
        self.unread_body = Some(flag);
        self
    }

    fn abandon(&self) {
        if let Some(flag) = &self.unread_body {
            flag.store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

impl<R> Read for EqualReader<R>
where
    R: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if self.size == 0 {
            return Ok(0);
        }

        let buf = if buf.len() < self.size {
            buf
        } else {
            &mut buf[..self.size]
        };

        match self.reader.read(buf) {
            Ok(len) => {
                self.size -= len;
                Ok(len)
            }
            err @ Err(_) => err,
        }
    }
}

impl<R> Drop for EqualReader<R>
where
    R: Read,
{
    fn drop(&mut self) {
        // hookbox patch: the upstream code allocated `vec![0; remaining]`, so a request whose
        // Content-Length claims terabytes aborted the process on drop. Drain with a fixed buffer,
        // and at most MAX_DRAIN bytes: past that the connection is not worth saving; it is
        // marked (UnreadBody) and closed instead of reading the rest as the next request.
        // The drain is also bounded in time: a client trickling its body must not hold the
        // thread that dropped this reader for longer than MAX_DRAIN_TIME.
        const MAX_DRAIN: usize = 1024 * 1024;
        const MAX_DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);
        if self.size > MAX_DRAIN {
            self.abandon();
            return;
        }
        let started = std::time::Instant::now();
        let mut remaining_to_read = self.size;
        let mut buf = [0u8; 4096];

        while remaining_to_read > 0 && started.elapsed() < MAX_DRAIN_TIME {
            let chunk = remaining_to_read.min(buf.len());
            match self.reader.read(&mut buf[..chunk]) {
                Err(e) => {
                    self.last_read_signal.send(Err(e)).ok();
                    self.abandon();
                    break;
                }
                Ok(0) => {
                    self.last_read_signal.send(Ok(())).ok();
                    break;
                }
                Ok(other) => {
                    remaining_to_read -= other;
                }
            }
        }
        if remaining_to_read > 0 {
            self.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EqualReader;
    use std::io::Read;

    #[test]
    fn test_limit() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let (mut equal_reader, _) = EqualReader::new(org_reader.by_ref(), 5);

            let mut string = String::new();
            equal_reader.read_to_string(&mut string).unwrap();
            assert_eq!(string, "hello");
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }

    #[test]
    fn test_not_enough() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let (mut equal_reader, _) = EqualReader::new(org_reader.by_ref(), 5);

            let mut vec = [0];
            equal_reader.read_exact(&mut vec).unwrap();
            assert_eq!(vec[0], b'h');
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }
}
