//! The budget for request bodies held in memory by all connections together.
//!
//! Each connection may hold one body of up to `max_body` bytes, and a client that sends part of
//! a body and stops holds what it sent until the body deadline. With a thousand such clients
//! that is the whole machine (1,500 connections holding 64 KiB each came to 123 MiB RSS). So a
//! connection reserves a body's bytes here *before* it buffers them — all of them from
//! `Content-Length`, or chunk by chunk — and gives them back when its request is done. A body
//! that does not fit is not read: it is answered 503 and the connection closes.
//!
//! A flood of large held bodies must not lock out ordinary webhooks, which are a few KiB: bodies
//! over `SMALL_BODY` may fill the budget only up to `LARGE_SHARE`; the rest is kept for small ones.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Observer;

/// A body of at most this many bytes may use the whole budget.
pub const SMALL_BODY: u64 = 16 * 1024;

/// Larger bodies may fill the budget only up to this fraction (numerator, denominator).
const LARGE_SHARE: (u64, u64) = (3, 4);

/// Bytes reserved for buffered request bodies, against a limit.
#[derive(Debug)]
pub struct BodyBudget {
    limit: u64,
    used: AtomicU64,
}

impl BodyBudget {
    pub fn new(limit: u64) -> BodyBudget {
        BodyBudget {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// Bytes reserved right now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// Reserves `bytes` more for a body that will then hold `body_total` bytes, if they fit.
    fn take(&self, bytes: u64, body_total: u64) -> bool {
        let ceiling = if body_total <= SMALL_BODY {
            self.limit
        } else {
            self.limit / LARGE_SHARE.1 * LARGE_SHARE.0
        };
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(bytes).filter(|&total| total <= ceiling)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::SeqCst);
    }
}

/// One request's share of the budget; given back when dropped (the request is done).
pub(crate) struct Reservation<'a> {
    budget: &'a BodyBudget,
    observer: &'a dyn Observer,
    bytes: u64,
}

impl<'a> Reservation<'a> {
    pub(crate) fn new(budget: &'a BodyBudget, observer: &'a dyn Observer) -> Reservation<'a> {
        Reservation {
            budget,
            observer,
            bytes: 0,
        }
    }

    /// Reserves `bytes` more for this body; false (and nothing reserved) when over budget.
    pub(crate) fn grow(&mut self, bytes: u64) -> bool {
        if bytes == 0 {
            return true;
        }
        let total = self.bytes.saturating_add(bytes);
        if !self.budget.take(bytes, total) {
            return false;
        }
        self.bytes = total;
        self.observer
            .body_buffer_changed(i64::try_from(bytes).unwrap_or(i64::MAX));
        true
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.give_back(self.bytes);
            self.observer
                .body_buffer_changed(-i64::try_from(self.bytes).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Quiet;
    impl Observer for Quiet {}

    #[test]
    fn reservations_are_given_back_on_drop() {
        let budget = BodyBudget::new(100 * 1024);
        {
            let mut first = Reservation::new(&budget, &Quiet);
            assert!(first.grow(10_000));
            assert!(first.grow(5_000));
            assert_eq!(budget.used(), 15_000);
        }
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn large_bodies_leave_a_quarter_for_small_ones() {
        let budget = BodyBudget::new(400 * 1024);
        let mut large = Vec::new();
        loop {
            let mut reservation = Reservation::new(&budget, &Quiet);
            if !reservation.grow(50 * 1024) {
                break;
            }
            large.push(reservation);
        }
        // 300 KiB of 400 KiB: six large bodies fit, the seventh does not.
        assert_eq!(large.len(), 6);
        assert_eq!(budget.used(), 300 * 1024);
        // Small bodies still fit, up to the whole budget and not past it.
        let mut small = Vec::new();
        for _ in 0..6 {
            let mut reservation = Reservation::new(&budget, &Quiet);
            assert!(reservation.grow(SMALL_BODY));
            small.push(reservation);
        }
        assert!(!Reservation::new(&budget, &Quiet).grow(SMALL_BODY));
        // A body that grows past SMALL_BODY chunk by chunk is held to the large share.
        drop(small);
        let mut growing = Reservation::new(&budget, &Quiet);
        assert!(growing.grow(SMALL_BODY));
        assert!(!growing.grow(1));
        drop(growing);
        drop(large);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_reservation_near_u64_max_is_refused_not_wrapped() {
        let budget = BodyBudget::new(u64::MAX);
        let mut first = Reservation::new(&budget, &Quiet);
        assert!(first.grow(10));
        assert!(!Reservation::new(&budget, &Quiet).grow(u64::MAX));
        assert_eq!(budget.used(), 10);
    }
}
