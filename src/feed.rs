//! What a waiting feed (`GET /feed?wait=S`) waits on: a generation number that moves after every
//! commit that stored a message, and a flag that shutdown sets.
//!
//! The writer bumps it right after each such commit, so a waiter on this instance wakes at once.
//! Commits made elsewhere (another instance on PostgreSQL, `hookbox import` on the same SQLite
//! file) are seen by the watcher: while anyone waits, it reads the store's newest position every
//! `config::FEED_WATCH_EVERY` (`Config::feed_watch_every`) on its own connection and bumps the generation when it moved (a short poll,
//! which needs no help from the writers of other instances).
//!
//! Waiters sit on their connection's own thread (`answer::Pipeline::dispatch`), never on a worker.
//!
//! No wake-up is lost: a feed read takes the generation *before* its snapshot, and the writer
//! bumps *after* its commit. A commit its snapshot missed therefore ended after the read began,
//! so its bump comes after the generation was taken, and the waiter finds the generation moved.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::store::Store;

#[derive(Default)]
pub struct Notifier {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    generation: u64,
    closed: bool,
    waiters: usize,
}

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// Something was committed since the generation the waiter saw.
    Changed,
    /// The deadline passed first.
    TimedOut,
    /// The server is shutting down.
    Closed,
}

impl Notifier {
    /// Taken before a feed read; `wait` compares against it.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Called after a commit that stored a message.
    pub fn bump(&self) {
        self.lock().generation += 1;
        self.changed.notify_all();
    }

    /// Wakes every waiter for good (shutdown); later waits return at once.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Waits until the generation moves past `seen`, `until` passes, or shutdown.
    pub fn wait(&self, seen: u64, until: Instant) -> Woke {
        let mut state = self.lock();
        state.waiters += 1;
        if state.waiters == 1 {
            // The watcher sleeps while nobody waits.
            self.changed.notify_all();
        }
        let woke = loop {
            if state.closed {
                break Woke::Closed;
            }
            if state.generation != seen {
                break Woke::Changed;
            }
            let now = Instant::now();
            if now >= until {
                break Woke::TimedOut;
            }
            state = self
                .changed
                .wait_timeout(state, until - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        };
        state.waiters -= 1;
        woke
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the state is plain numbers.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The notifier and the watcher thread: started with the server, stopped at its shutdown.
pub struct Watcher {
    notifier: Arc<Notifier>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts the watcher on its own store connection, reading it every `every` while anyone
    /// waits.
    pub fn start(store: Store, every: Duration) -> Watcher {
        let notifier = Arc::new(Notifier::default());
        let watched = Arc::clone(&notifier);
        let thread = thread::Builder::new()
            .name("feed-watcher".to_owned())
            .spawn(move || watch(&watched, store, every))
            .expect("spawning the feed watcher");
        Watcher {
            notifier,
            thread: Some(thread),
        }
    }

    pub fn notifier(&self) -> Arc<Notifier> {
        Arc::clone(&self.notifier)
    }

    /// Wakes every waiter for good, and ends the watcher.
    pub fn stop(&mut self) {
        self.notifier.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn watch(notifier: &Notifier, mut store: Store, every: Duration) {
    let mut last = None;
    loop {
        {
            let mut state = notifier.lock();
            while !state.closed && state.waiters == 0 {
                state = notifier
                    .changed
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if state.closed {
                return;
            }
        }
        // The first reading bumps too: a commit it is the first to see may have been missed by
        // a waiter that read before it (see the module comment).
        if let Ok(end) = store.feed_end() {
            if last != Some(end) {
                last = Some(end);
                notifier.bump();
            }
        }
        let until = Instant::now() + every;
        let mut state = notifier.lock();
        while !state.closed && Instant::now() < until {
            state = notifier
                .changed
                .wait_timeout(state, until.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bump_after_the_generation_was_taken_wakes_a_later_wait_at_once() {
        let notifier = Notifier::default();
        let seen = notifier.generation();
        notifier.bump();
        let far = Instant::now() + Duration::from_secs(60);
        assert_eq!(notifier.wait(seen, far), Woke::Changed);
    }

    #[test]
    fn a_wait_ends_at_its_deadline_or_at_close() {
        let notifier = Arc::new(Notifier::default());
        let seen = notifier.generation();
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(notifier.wait(seen, soon), Woke::TimedOut);
        assert!(Instant::now() >= soon);
        let waiter = {
            let notifier = Arc::clone(&notifier);
            thread::spawn(move || notifier.wait(seen, Instant::now() + Duration::from_secs(60)))
        };
        notifier.close();
        assert_eq!(waiter.join().unwrap(), Woke::Closed);
    }
}
