//! The checkpointer: moves committed pages from the WAL into the database file, off the commit path.
//!
//! SQLite's automatic checkpoint runs inside whichever commit crosses the threshold, so every
//! thousandth-page commit would also copy and fsync the database file while senders wait. The
//! writer turns that off (`wal_autocheckpoint = 0`) and this thread runs a `PASSIVE` checkpoint
//! on its own connection every `INTERVAL` instead: it never blocks the writer or readers, and a
//! checkpoint that cannot finish (a reader still needs old pages) simply finishes next time.

use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::db::Db;

const INTERVAL: Duration = Duration::from_millis(250);

/// Stops the checkpointer (after a last, complete checkpoint) when dropped or `stop`ped.
pub struct Checkpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub fn spawn(db: Db) -> Checkpointer {
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let thread = thread::Builder::new()
            .name("checkpointer".to_owned())
            .spawn(move || run(db, &stopped))
            .expect("spawning the checkpointer thread");
        Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Runs a final checkpoint that empties the WAL, and waits for the thread to end.
    pub fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(db: Db, stopped: &Receiver<()>) {
    // Anything but a timeout means `stop` was called (the sender was dropped).
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
        if let Err(error) = db.checkpoint_passive() {
            log::debug!("checkpoint did not run: {error}");
        }
    }
    if let Err(error) = db.checkpoint_truncate() {
        log::warn!("final checkpoint failed (the WAL is kept and replayed on next open): {error}");
    }
}
