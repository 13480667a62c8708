//! Listeners and the accept loop. Accepting does nothing but admission: the connection limits are
//! checked and a task is spawned; the handshake (and later TLS) happens inside that task.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::session;

/// Counts open connections, in total and per source address.
#[derive(Default)]
pub struct ConnectionCounter {
    inner: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Holds a connection's place in the counts; released on drop.
pub struct ConnectionSlot {
    counter: Arc<ConnectionCounter>,
    ip: IpAddr,
}

impl ConnectionCounter {
    pub fn try_acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        total_limit: Option<usize>,
        per_ip_limit: Option<usize>,
    ) -> Result<ConnectionSlot, &'static str> {
        let mut inner = self.inner.lock();
        if total_limit.is_some_and(|l| inner.0 >= l) {
            return Err("too many connections");
        }
        let per_ip = inner.1.get(&ip).copied().unwrap_or(0);
        if per_ip_limit.is_some_and(|l| per_ip >= l) {
            return Err("too many connections from this address");
        }
        inner.0 += 1;
        *inner.1.entry(ip).or_insert(0) += 1;
        Ok(ConnectionSlot {
            counter: self.clone(),
            ip,
        })
    }

    pub fn open(&self) -> usize {
        self.inner.lock().0
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut inner = self.counter.inner.lock();
        inner.0 -= 1;
        if let Some(n) = inner.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                inner.1.remove(&self.ip);
            }
        }
    }
}

/// Binds every address, logging `listening on ADDR` with the real port.
pub async fn bind_all(addrs: &[SocketAddr], kind: &str) -> anyhow::Result<Vec<TcpListener>> {
    let mut out = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ({kind}): {e}"))?;
        let local = listener.local_addr()?;
        tracing::info!(protocol = kind, "listening on {local}");
        out.push(listener);
    }
    Ok(out)
}

/// Accepts STOMP connections until `shutdown` is cancelled; sessions are tracked by `tracker`.
pub async fn serve_stomp(
    listener: TcpListener,
    broker: Arc<Broker>,
    counter: Arc<ConnectionCounter>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let config = broker.config();
        let slot = counter.try_acquire(
            peer.ip(),
            config.server.connection_limit(),
            config.server.connection_limit_per_ip(),
        );
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            match slot {
                Ok(_slot) => {
                    let _ = stream.set_nodelay(true);
                    session::run(stream, peer, None, broker, shutdown).await;
                }
                Err(reason) => refuse(stream, peer, reason).await,
            }
        });
    }
}

async fn refuse(mut stream: TcpStream, peer: SocketAddr, reason: &'static str) {
    tracing::info!(%peer, reason, "connection refused");
    let mut frame = bytes::BytesMut::new();
    stompd_protocol::encode_frame(
        &mut frame,
        stompd_protocol::Version::V1_0,
        stompd_protocol::Command::Error,
        [("message", reason), ("code", "connection-limit")],
        b"",
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(&frame).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
