//! A reply slot: one value, one waiter. A connection thread waits on one for its worker's result
//! or its webhook's commit.
//!
//! Why not a capacity-one channel: crossbeam's (and std's, which is crossbeam's) blocking receive
//! spins, then calls `sched_yield` several times, then parks. With dozens of connection threads
//! runnable on two cores each yield is a context switch that does no work; profiles showed them
//! as most of ingest's CPU. A waiter here parks on a futex at once (`Condvar`), and a filler
//! wakes exactly that waiter, once.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

struct State<T> {
    value: Option<T>,
    /// The filler was dropped without filling: nothing will come.
    abandoned: bool,
    /// The waiter stopped waiting (its deadline passed, or it was dropped).
    gone: bool,
}

struct Inner<T> {
    state: Mutex<State<T>>,
    filled: Condvar,
}

impl<T> Inner<T> {
    /// A poisoned lock only means a panic elsewhere while holding it; every change under it is
    /// a single assignment, so the state is whole.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The end that fills the slot (a worker, the writer's completion).
pub struct Filler<T> {
    inner: Option<Arc<Inner<T>>>,
}

/// The end that waits (the connection thread).
pub struct Waiter<T> {
    inner: Arc<Inner<T>>,
}

/// Why a wait ended without a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// The deadline passed first; a later fill is handed back to the filler.
    Timeout,
    /// The filler was dropped unfilled (a bug caught by `catch_unwind`, or a shutdown's end).
    Abandoned,
}

/// A new empty slot.
pub fn slot<T>() -> (Filler<T>, Waiter<T>) {
    let inner = Arc::new(Inner {
        state: Mutex::new(State {
            value: None,
            abandoned: false,
            gone: false,
        }),
        filled: Condvar::new(),
    });
    (
        Filler {
            inner: Some(Arc::clone(&inner)),
        },
        Waiter { inner },
    )
}

impl<T> Filler<T> {
    /// Fills the slot and wakes its waiter; hands the value back when nobody waits any more.
    pub fn fill(mut self, value: T) -> Result<(), T> {
        let inner = self.inner.take().expect("a filler fills once");
        let mut state = inner.lock();
        if state.gone {
            return Err(value);
        }
        state.value = Some(value);
        drop(state);
        inner.filled.notify_one();
        Ok(())
    }
}

impl<T> Filler<T> {
    /// Whether the waiter still waits (it has not timed out or gone away).
    pub fn awaited(&self) -> bool {
        self.inner.as_ref().is_some_and(|inner| !inner.lock().gone)
    }
}

impl<T> Drop for Filler<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.lock().abandoned = true;
            inner.filled.notify_one();
        }
    }
}

impl<T> Waiter<T> {
    /// Waits for the value, without a deadline.
    pub fn wait(self) -> Result<T, Missed> {
        self.wait_until(None)
    }

    /// Waits for the value until `deadline` (none: for as long as it takes).
    pub fn wait_until(self, deadline: Option<Instant>) -> Result<T, Missed> {
        let mut state = self.inner.lock();
        loop {
            if let Some(value) = state.value.take() {
                return Ok(value);
            }
            if state.abandoned {
                return Err(Missed::Abandoned);
            }
            state = match deadline {
                None => self
                    .inner
                    .filled
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        state.gone = true;
                        return Err(Missed::Timeout);
                    }
                    self.inner
                        .filled
                        .wait_timeout(state, left)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0
                }
            };
        }
    }
}

impl<T> Drop for Waiter<T> {
    fn drop(&mut self) {
        self.inner.lock().gone = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_value_filled_before_or_after_the_wait_arrives() {
        let (filler, waiter) = slot();
        filler.fill(1).unwrap();
        assert_eq!(waiter.wait(), Ok(1));
        let (filler, waiter) = slot();
        let thread = std::thread::spawn(move || waiter.wait());
        filler.fill(2).unwrap();
        assert_eq!(thread.join().unwrap(), Ok(2));
    }

    #[test]
    fn a_dropped_filler_ends_the_wait() {
        let (filler, waiter) = slot::<u8>();
        let thread = std::thread::spawn(move || waiter.wait());
        drop(filler);
        assert_eq!(thread.join().unwrap(), Err(Missed::Abandoned));
    }

    #[test]
    fn a_fill_after_the_deadline_is_handed_back() {
        let (filler, waiter) = slot();
        let deadline = Instant::now() + Duration::from_millis(1);
        assert!(filler.awaited());
        assert_eq!(waiter.wait_until(Some(deadline)), Err(Missed::Timeout));
        assert!(!filler.awaited());
        assert_eq!(filler.fill(3), Err(3));
    }
}
