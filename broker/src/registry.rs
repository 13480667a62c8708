//! Live connections, for operators (admin API, metrics) and for shutdown accounting.
//!
//! Each session owns an `Arc<SessionHandle>` and bumps its own counters (uncontended atomics);
//! readers sum them on demand, and a closing session folds its totals into [`Totals`] so
//! broker-wide counters never go backwards.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;

#[derive(Default, Debug)]
pub struct Counters {
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            frames_in: self.frames_in.load(Ordering::Relaxed),
            frames_out: self.frames_out.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }

    fn add(&self, s: &CounterSnapshot) {
        self.frames_in.fetch_add(s.frames_in, Ordering::Relaxed);
        self.frames_out.fetch_add(s.frames_out, Ordering::Relaxed);
        self.bytes_in.fetch_add(s.bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(s.bytes_out, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// What an operator can see of (and do to) one connection.
#[derive(Debug)]
pub struct SessionHandle {
    pub id: u64,
    pub peer: SocketAddr,
    pub connected_at_ms: u64,
    pub counters: Counters,
    pub subscriptions: AtomicU64,
    /// Set after CONNECT.
    pub login: Mutex<Option<String>>,
    pub version: Mutex<Option<&'static str>>,
    /// Cancelling it closes the connection (admin "close connection").
    pub close: CancellationToken,
}

#[derive(Default)]
pub struct Registry {
    sessions: RwLock<HashMap<u64, Arc<SessionHandle>>>,
    /// Totals of closed sessions.
    closed: Counters,
    pub connections_accepted: AtomicU64,
    pub connections_refused: AtomicU64,
}

impl Registry {
    pub fn register(&self, handle: Arc<SessionHandle>) {
        self.connections_accepted.fetch_add(1, Ordering::Relaxed);
        self.sessions.write().insert(handle.id, handle);
    }

    pub fn unregister(&self, id: u64) {
        if let Some(h) = self.sessions.write().remove(&id) {
            self.closed.add(&h.counters.snapshot());
        }
    }

    pub fn sessions(&self) -> Vec<Arc<SessionHandle>> {
        let mut v: Vec<_> = self.sessions.read().values().cloned().collect();
        v.sort_by_key(|h| h.id);
        v
    }

    pub fn get(&self, id: u64) -> Option<Arc<SessionHandle>> {
        self.sessions.read().get(&id).cloned()
    }

    pub fn open(&self) -> usize {
        self.sessions.read().len()
    }

    /// Broker-wide frames and bytes, open and closed sessions together.
    pub fn totals(&self) -> CounterSnapshot {
        let mut t = self.closed.snapshot();
        for h in self.sessions.read().values() {
            let s = h.counters.snapshot();
            t.frames_in += s.frames_in;
            t.frames_out += s.frames_out;
            t.bytes_in += s.bytes_in;
            t.bytes_out += s.bytes_out;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(id: u64) -> Arc<SessionHandle> {
        Arc::new(SessionHandle {
            id,
            peer: "127.0.0.1:1".parse().unwrap(),
            connected_at_ms: 0,
            counters: Counters::default(),
            subscriptions: AtomicU64::new(0),
            login: Mutex::new(None),
            version: Mutex::new(None),
            close: CancellationToken::new(),
        })
    }

    #[test]
    fn totals_include_closed_sessions_and_never_go_back() {
        let r = Registry::default();
        let a = handle(1);
        let b = handle(2);
        r.register(a.clone());
        r.register(b.clone());
        a.counters.frames_in.fetch_add(3, Ordering::Relaxed);
        b.counters.bytes_out.fetch_add(10, Ordering::Relaxed);
        assert_eq!(r.totals().frames_in, 3);
        r.unregister(1);
        assert_eq!(r.open(), 1);
        assert_eq!(r.totals().frames_in, 3);
        assert_eq!(r.totals().bytes_out, 10);
        assert_eq!(r.connections_accepted.load(Ordering::Relaxed), 2);
        assert!(r.get(1).is_none() && r.get(2).is_some());
    }
}
