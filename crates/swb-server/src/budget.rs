//! The memory that request bodies may hold at once. A body is read into memory only
//! with a reservation for its declared length (or the body limit, when it declares
//! none); the reservation shrinks to what arrived and lasts as long as the bytes do
//! (the call's input lives until its answer). A request that finds the budget spent
//! waits for up to the body timeout, then gets `overloaded`.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use swb_api::{ApiError, ErrorCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reservations are counted in KiB so that any body fits a `u32` of them.
const UNIT: u64 = 1024;

pub struct BodyBudget {
    permits: Arc<Semaphore>,
    total: u64,
}

/// Bytes read under a reservation, which is returned when the last copy is dropped.
struct Held {
    bytes: Bytes,
    _reservation: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

fn units(bytes: u64) -> u64 {
    bytes.div_ceil(UNIT).max(1)
}

impl BodyBudget {
    pub fn new(bytes: u64) -> Self {
        let total = units(bytes);
        Self {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Reserves room for a body of up to `bytes`, waiting up to `wait` for it.
    pub async fn reserve(&self, bytes: u64, wait: Duration) -> Result<Reservation, ApiError> {
        let n = units(bytes).min(self.total);
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        // Most of the time there is room: no timer then.
        if let Ok(permit) = self.permits.clone().try_acquire_many_owned(n) {
            return Ok(Reservation(permit));
        }
        match tokio::time::timeout(wait, self.permits.clone().acquire_many_owned(n)).await {
            Ok(Ok(permit)) => Ok(Reservation(permit)),
            _ => Err(ApiError::new(
                ErrorCode::Overloaded,
                format!(
                    "the server is holding as many request bodies as it may ({} MiB); try again",
                    (self.total * UNIT) >> 20
                ),
            )),
        }
    }
}

pub struct Reservation(OwnedSemaphorePermit);

impl Reservation {
    /// The bytes, holding the part of the reservation they use until they are dropped.
    pub fn hold(mut self, bytes: Bytes) -> Bytes {
        let used = units(bytes.len() as u64) as usize;
        if self.0.num_permits() > used {
            drop(self.0.split(self.0.num_permits() - used));
        }
        Bytes::from_owner(Held {
            bytes,
            _reservation: self.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_hold_their_size_until_dropped() {
        let budget = BodyBudget::new(10 * UNIT);
        let wait = Duration::from_millis(50);
        // Reserved for a declared 8 KiB, held at the 2 KiB that arrived.
        let held = budget
            .reserve(8 * UNIT, wait)
            .await
            .unwrap()
            .hold(Bytes::from(vec![7u8; 2 * UNIT as usize]));
        assert_eq!(budget.permits.available_permits(), 8);
        let copy = held.slice(1..);
        drop(held);
        assert_eq!(
            budget.permits.available_permits(),
            8,
            "a copy still holds it"
        );
        let e = budget.reserve(9 * UNIT, wait).await.err().unwrap();
        assert_eq!(e.code, ErrorCode::Overloaded);
        drop(copy);
        assert_eq!(budget.permits.available_permits(), 10);
        // A body larger than the whole budget waits for all of it rather than forever.
        budget.reserve(100 * UNIT, wait).await.unwrap();
    }
}
