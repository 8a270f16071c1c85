//! Console sessions: in this server's memory only (a restart signs everyone out),
//! each holding the token its browser signed in with, which never goes back to the
//! browser.

use axum::http::HeaderValue;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// A session unused for this long ends.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);
/// Sessions held at once; past it, the one unused longest ends.
const MAX_SESSIONS: usize = 10_000;

pub struct Session {
    id: String,
    /// `Bearer <token>`, marked sensitive.
    pub authorization: HeaderValue,
    /// What the session's pages send with every change.
    pub csrf: String,
    pub email: String,
    last_used: Mutex<Instant>,
}

impl Session {
    pub fn csrf_matches(&self, presented: &str) -> bool {
        self.csrf.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Arc<Session>>>,
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    /// Opens a session for a checked token; returns its id (the cookie's value).
    pub fn open(&self, authorization: HeaderValue, email: String) -> String {
        let id = random_hex();
        let session = Arc::new(Session {
            id: id.clone(),
            authorization,
            csrf: random_hex(),
            email,
            last_used: Mutex::new(Instant::now()),
        });
        let mut all = self.by_id.lock().expect("sessions lock");
        all.retain(|_, s| s.idle() < IDLE);
        if all.len() >= MAX_SESSIONS
            && let Some(oldest) = all.values().max_by_key(|s| s.idle()).map(|s| s.id.clone())
        {
            all.remove(&oldest);
        }
        all.insert(id.clone(), session);
        id
    }

    /// The live session with this id, now marked used.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let mut all = self.by_id.lock().expect("sessions lock");
        let session = all.get(id)?.clone();
        if session.idle() >= IDLE {
            all.remove(id);
            return None;
        }
        *session.last_used.lock().expect("session lock") = Instant::now();
        Some(session)
    }

    /// Whether the session is still open (not signed out or expired).
    pub fn alive(&self, session: &Session) -> bool {
        self.get(&session.id).is_some()
    }

    pub fn close(&self, session: &Session) {
        self.by_id
            .lock()
            .expect("sessions lock")
            .remove(&session.id);
    }
}

impl Session {
    fn idle(&self) -> Duration {
        self.last_used.lock().expect("session lock").elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_find_and_close() {
        let sessions = Sessions::default();
        let id = sessions.open(HeaderValue::from_static("Bearer t"), "a@b".into());
        let s = sessions.get(&id).expect("open");
        assert_eq!(s.email, "a@b");
        assert!(s.csrf_matches(&s.csrf.clone()) && !s.csrf_matches("guess"));
        assert!(sessions.get("not-an-id").is_none());
        sessions.close(&s);
        assert!(sessions.get(&id).is_none());
    }
}
