//! The JSON API: one function per route, each returning a [`Reply`] or an [`ApiError`].

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Value};

use super::routes::{query_param, queue_destination};
use super::sampler::{Rates, Sampler};
use super::stats::Snapshot;
use crate::broker::Broker;
use crate::error::ClientError;
use crate::queue::{Delivery, Queue, QueueStats};

/// Bytes of body shown in a browse listing.
pub const PREVIEW_BYTES: usize = 256;
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 1000;

pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Reply {
    pub fn json(status: StatusCode, value: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: Bytes::from(value.to_string()),
        }
    }

    pub fn ok(value: &Value) -> Reply {
        Reply::json(StatusCode::OK, value)
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn body(&self) -> Value {
        json!({ "error": self.message, "code": self.code })
    }

    /// A broker error, with the status its code calls for.
    pub fn from_client(e: ClientError) -> ApiError {
        let status = match e.code {
            "unknown-destination" => StatusCode::NOT_FOUND,
            "queue-exists" | "queue-configured" => StatusCode::CONFLICT,
            "bad-destination" => StatusCode::BAD_REQUEST,
            "access-denied" => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code, e.message)
    }
}

pub type ApiResult = Result<Reply, ApiError>;

pub fn find_queue(broker: &Broker, segment: &str) -> Result<Arc<Queue>, ApiError> {
    let destination = queue_destination(segment);
    broker.queue(&destination).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-queue",
            format!("queue {destination} does not exist"),
        )
    })
}

pub fn overview(broker: &Broker) -> ApiResult {
    let s = Snapshot::collect(broker);
    let m = &s.messages;
    let journal = s.journal.map(|j| {
        json!({
            "segments": j.segments,
            "bytes": j.bytes_on_disk,
            "entries": j.entries,
            "live_messages": j.live_messages,
            "fsyncs": j.fsyncs,
            "fsync_seconds_total": j.fsync_nanos as f64 / 1e9,
            "fsync_latency_avg_ms": if j.fsyncs == 0 { 0.0 } else { j.fsync_nanos as f64 / j.fsyncs as f64 / 1e6 },
            "write_errors": j.write_errors,
        })
    });
    Ok(Reply::ok(&json!({
        "version": s.version,
        "started_at": s.started_at_ms,
        "uptime_seconds": s.uptime_ms as f64 / 1000.0,
        "connections": {
            "open": s.connections_open,
            "accepted": s.connections_accepted,
            "refused": s.connections_refused,
        },
        "traffic": {
            "frames_in": s.traffic.frames_in,
            "frames_out": s.traffic.frames_out,
            "bytes_in": s.traffic.bytes_in,
            "bytes_out": s.traffic.bytes_out,
        },
        "messages": counters_json(m),
        "queues": s.queues.len(),
        "topics": s.topics.len(),
        "journal": journal,
        "process": { "rss_bytes": s.rss_bytes },
    })))
}

fn counters_json(c: &crate::queue::Counters) -> Value {
    json!({
        "enqueued": c.enqueued,
        "delivered": c.delivered,
        "acked": c.acked,
        "redelivered": c.redelivered,
        "expired": c.expired,
        "dead_lettered": c.dead_lettered,
        "dropped": c.dropped,
    })
}

/// One queue as the API and `/sys/stats` show it; `rates` when a sampler is running.
pub fn queue_json(q: &Queue, rates: Option<Rates>) -> Value {
    let QueueStats {
        depth,
        bytes,
        resident_bytes,
        ready,
        in_flight,
        consumers,
        closed,
        counters,
    } = q.stats();
    let mut v = json!({
        "name": q.name(),
        "destination": q.destination().as_str(),
        "persistent": q.is_persistent(),
        "temporary": q.owner().is_some(),
        "depth": depth,
        "bytes": bytes,
        "resident_bytes": resident_bytes,
        "ready": ready,
        "in_flight": in_flight,
        "consumers": consumers,
        "closed": closed,
        "counters": counters_json(&counters),
    });
    if let (Some(r), Some(obj)) = (rates, v.as_object_mut()) {
        obj.insert("rates".into(), json!(r));
    }
    v
}

pub fn queues(broker: &Broker, sampler: &Sampler) -> ApiResult {
    let list: Vec<Value> = broker
        .queues()
        .iter()
        .map(|q| queue_json(q, Some(sampler.rates(q.destination().as_str()))))
        .collect();
    Ok(Reply::ok(&json!({ "queues": list })))
}

pub fn queue(broker: &Broker, sampler: &Sampler, segment: &str) -> ApiResult {
    let q = find_queue(broker, segment)?;
    Ok(Reply::ok(&queue_json(
        &q,
        Some(sampler.rates(q.destination().as_str())),
    )))
}

pub fn history(sampler: &Sampler) -> ApiResult {
    let queues: Vec<Value> = sampler
        .history()
        .into_iter()
        .map(|(dest, points)| json!({ "destination": dest, "points": points }))
        .collect();
    Ok(Reply::ok(&json!({
        "interval_ms": super::sampler::INTERVAL.as_millis() as u64,
        "queues": queues,
    })))
}

fn page_param(query: Option<&str>, key: &str, default: usize) -> Result<usize, ApiError> {
    match query_param(query, key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                format!("{key} must be a non-negative integer, not {v:?}"),
            )
        }),
    }
}

fn message_id(q: &Queue, seq: u64) -> String {
    format!("{}@{seq}", q.destination())
}

fn message_json(q: &Queue, d: &Delivery) -> Value {
    let m = &d.msg;
    let headers: Vec<[&str; 2]> = m
        .headers
        .iter()
        .map(|(n, v)| [n.as_str(), v.as_str()])
        .collect();
    json!({
        "seq": d.seq,
        "message_id": message_id(q, d.seq),
        "priority": m.priority,
        "timestamp": m.timestamp_ms,
        "expires": m.expires_at_ms,
        "redelivery_count": d.redelivery_count,
        "headers": headers,
        "body_size": m.body.len(),
    })
}

pub fn messages(broker: &Broker, segment: &str, query: Option<&str>) -> ApiResult {
    let q = find_queue(broker, segment)?;
    let offset = page_param(query, "offset", 0)?;
    let limit = page_param(query, "limit", DEFAULT_PAGE)?.clamp(1, MAX_PAGE);
    let list: Vec<Value> = q
        .browse(offset.saturating_add(limit))
        .iter()
        .skip(offset)
        .map(|d| {
            let mut v = message_json(&q, d);
            let preview = &d.msg.body[..d.msg.body.len().min(PREVIEW_BYTES)];
            if let Some(obj) = v.as_object_mut() {
                obj.insert(
                    "body_preview".into(),
                    Value::String(String::from_utf8_lossy(preview).into_owned()),
                );
            }
            v
        })
        .collect();
    Ok(Reply::ok(&json!({
        "destination": q.destination().as_str(),
        "offset": offset,
        "limit": limit,
        "ready": q.stats().ready,
        "messages": list,
    })))
}

pub fn message(broker: &Broker, segment: &str, seq: u64) -> ApiResult {
    let q = find_queue(broker, segment)?;
    let d = q.peek(seq).ok_or_else(|| unknown_message(&q, seq))?;
    let mut v = message_json(&q, &d);
    let (body, encoding) = match std::str::from_utf8(&d.msg.body) {
        Ok(text) => (text.to_owned(), "utf-8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&d.msg.body),
            "base64",
        ),
    };
    if let Some(obj) = v.as_object_mut() {
        obj.insert("body".into(), Value::String(body));
        obj.insert("body_encoding".into(), Value::String(encoding.into()));
    }
    Ok(Reply::ok(&v))
}

fn unknown_message(q: &Queue, seq: u64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown-message",
        format!("no message {} in {}", seq, q.destination()),
    )
}

pub fn remove_message(broker: &Broker, segment: &str, seq: u64) -> ApiResult {
    let q = find_queue(broker, segment)?;
    if q.remove(broker, seq) {
        return Ok(Reply::ok(
            &json!({ "removed": seq, "message_id": message_id(&q, seq) }),
        ));
    }
    if q.peek(seq).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "message-in-flight",
            format!(
                "message {} is delivered to a consumer and awaits its acknowledgement; only ready messages can be removed",
                message_id(&q, seq)
            ),
        ));
    }
    Err(unknown_message(&q, seq))
}

pub fn purge(broker: &Broker, segment: &str) -> ApiResult {
    let q = find_queue(broker, segment)?;
    let n = q.purge(broker);
    Ok(Reply::ok(
        &json!({ "destination": q.destination().as_str(), "purged": n }),
    ))
}

pub async fn set_closed(
    broker: &Broker,
    segment: &str,
    closed: bool,
    query: Option<&str>,
) -> ApiResult {
    let q = find_queue(broker, segment)?;
    let evacuate = closed
        && super::routes::query_param(query, "dead_letter")
            .is_some_and(|v| v == "true" || v.is_empty());
    if evacuate {
        if q.policy().dead_letter.is_none() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "no-dead-letter-queue",
                format!(
                    "queue {} has no dead_letter queue to move its messages to",
                    q.destination()
                ),
            ));
        }
        let (moved, commit) = q.close_and_dead_letter(broker);
        if let Some(commit) = commit {
            commit.await.map_err(journal_error)?;
        }
        return Ok(Reply::ok(&json!({
            "destination": q.destination().as_str(),
            "closed": true,
            "dead_lettered": moved,
        })));
    }
    if let Some(commit) = q.set_closed(closed) {
        commit.await.map_err(journal_error)?;
    }
    Ok(Reply::ok(
        &json!({ "destination": q.destination().as_str(), "closed": closed }),
    ))
}

fn journal_error(e: crate::storage::JournalError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "journal-error",
        format!("the change is applied but could not be made durable: {e}"),
    )
}

pub fn create_queue(broker: &Broker, segment: &str) -> ApiResult {
    if segment.starts_with('/') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-destination",
            "only /queue/NAME queues can be created: name the queue without its prefix",
        ));
    }
    let q = broker
        .declare_queue(segment)
        .map_err(ApiError::from_client)?;
    Ok(Reply::json(StatusCode::CREATED, &queue_json(&q, None)))
}

pub async fn delete_queue(broker: &Broker, segment: &str) -> ApiResult {
    let destination = queue_destination(segment);
    let (q, commit) = broker
        .delete_queue(&destination)
        .map_err(ApiError::from_client)?;
    let depth = q.stats().depth;
    if let Some(commit) = commit {
        commit.await.map_err(journal_error)?;
    }
    Ok(Reply::ok(
        &json!({ "deleted": destination, "messages_dropped": depth }),
    ))
}

pub fn topics(broker: &Broker) -> ApiResult {
    let list: Vec<Value> = broker
        .topics()
        .iter()
        .map(|t| {
            let s = t.stats();
            json!({
                "name": t.name(),
                "destination": t.destination().as_str(),
                "subscribers": s.subscribers,
                "published": s.published,
            })
        })
        .collect();
    Ok(Reply::ok(&json!({ "topics": list })))
}

pub fn connections(broker: &Broker) -> ApiResult {
    let list: Vec<Value> = broker
        .registry
        .sessions()
        .iter()
        .map(|h| {
            let c = h.counters.snapshot();
            json!({
                "id": h.id,
                "peer": h.peer.to_string(),
                "login": *h.login.lock(),
                "version": *h.version.lock(),
                "connected_at": h.connected_at_ms,
                "subscriptions": h.subscriptions.load(std::sync::atomic::Ordering::Relaxed),
                "frames_in": c.frames_in,
                "frames_out": c.frames_out,
                "bytes_in": c.bytes_in,
                "bytes_out": c.bytes_out,
            })
        })
        .collect();
    Ok(Reply::ok(&json!({ "connections": list })))
}

pub fn close_connection(broker: &Broker, id: u64) -> ApiResult {
    let Some(h) = broker.registry.get(id) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-connection",
            format!("no open connection {id}"),
        ));
    };
    h.close.cancel();
    Ok(Reply::ok(
        &json!({ "closed": id, "peer": h.peer.to_string() }),
    ))
}
