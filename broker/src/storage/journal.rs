//! The write-ahead journal of the persistent queues.
//!
//! One journal serves every persistent queue of a data directory. Callers append batches of
//! [`Record`]s; one writer thread writes everything waiting, syncs once and completes every
//! waiter (group commit). [`Journal::open`] replays the directory and returns what the queues
//! must be rebuilt from.
//!
//! # On-disk format (format version 1)
//!
//! ```text
//! DIR/LOCK                        advisory lock (File::try_lock), held while the journal is open
//! DIR/00000000000000000001.seg    segment files, id = zero-padded u64, ids only increase
//! DIR/00000000000000000002.seg
//!
//! segment  = entry*                         (no file header; the first entry is a snapshot)
//! entry    = magic u32 = "STMJ" | len u32 | crc u32 | payload[len]
//!            (all integers little-endian; crc = CRC32C (Castagnoli) of the payload;
//!             2 <= len <= 2^30, anything else is corrupt)
//! payload  = version u8 (= 1) | kind u8 | body
//!   kind 1 = batch:    count u32 | record*count       (one append() = one batch entry)
//!   kind 2 = snapshot: count u32 | (name str | flags u8 (bit0 created, bit1 closed, bit2 keys)
//!                      | next_seq u64 [| key_count u32 | (key str | enqueued_at_ms u64)*key_count])*count
//!            (keys: the queue's latest idempotency keys, acknowledged messages' included, at most
//!             10,000, oldest first; a stompd that predates bit2 skips such a snapshot as corrupt)
//! record   = tag u8 | queue str | fields
//!   1 Enqueue      seq u64 | priority u8 | timestamp_ms u64 | has_expiry u8 [expires_at_ms u64]
//!                  | redelivery_count u32 | has_key u8 [idempotency_key str]
//!                  | header_count u32 | (name str | value str)*header_count | body bytes
//!   2 Ack          seq u64
//!   3 Redelivered  seq u64 | count u32        (absolute count, not an increment)
//!   4 QueueClosed  closed u8
//!   5 QueueCreated
//!   6 QueueDeleted
//! str = bytes = len u32 | data (str is UTF-8)
//! ```
//!
//! An entry whose version byte is not 1 makes [`Journal::open`] fail with
//! [`JournalError::UnsupportedFormat`] rather than be skipped: it was written by a newer stompd.
//!
//! # Replay semantics
//!
//! Segments are replayed in id order, entries in file order, the records of a batch in order:
//! - `Enqueue` makes the queue known, stores the message under `(queue, seq)` (replacing a
//!   message with the same seq: compaction re-appends live messages, see below) and raises the
//!   queue's `next_seq` to at least `seq + 1`.
//! - `Ack` removes the message; `Redelivered` sets its redelivery count; both are ignored for a
//!   message that is not there.
//! - `QueueClosed` / `QueueCreated` make the queue known and set its flag; `QueueDeleted`
//!   forgets the queue and all its messages.
//! - A snapshot sets `created`/`closed` of every queue it lists, raises `next_seq` and, when it
//!   carries keys, replaces the queue's remembered idempotency keys with them; an `Enqueue`
//!   with a key and a seq not below `next_seq` (not a compaction copy) appends its key.
//!
//! # Invariants
//!
//! 1. **Atomic batches.** A batch is one entry with one CRC: after any crash it is replayed
//!    whole or not at all.
//! 2. **Durable before receipted.** With [`FsyncPolicy::Always`] a [`Commit`] resolves `Ok`
//!    only after `fdatasync` of the bytes returned successfully. A failed write or sync fails
//!    every waiter of its group and the segment is truncated back to its length before the
//!    group, so a failed batch never becomes visible later and a failed sync is never reported
//!    as success by a later one.
//! 3. **Order.** Entries are written in channel order; appends made by one thread are written
//!    in the order they were made. Replay order is write order.
//! 4. **Only the tail can be torn.** Only the last segment is ever written to (a segment is
//!    synced before the next one is created, and the directory is synced after creating it).
//!    On open, an invalid region at the end of the last segment with no valid entry after it
//!    is a torn write and is truncated. Any other invalid region (bad CRC, impossible length)
//!    is corruption: it is reported with `tracing::warn!` and skipped by resynchronising on
//!    the next magic number whose entry verifies, so the valid entries after it are kept.
//! 5. **Every segment starts with a snapshot** of queue-level state (created, closed,
//!    next_seq of every known queue), so deleting older segments never loses that state.
//!    Opening the journal always starts a new segment, so entries are never appended after a
//!    truncation point or into a segment whose first entry was not a snapshot.
//! 6. **Deletion is oldest-first.** The writer knows, for each segment, which live messages
//!    have their latest enqueue record in it. The oldest segment is deleted (after syncing the
//!    head segment) as soon as it holds no live message. Acks, redelivery counts and
//!    queue-level records of a deleted segment are then redundant: their messages are gone or
//!    were re-appended with their current count, and newer snapshots carry queue state.
//! 7. **Compaction.** When more than two segments exist and the oldest is mostly dead, the
//!    writer re-appends its live messages, with their current redelivery counts, at the head,
//!    a bounded amount per pass (about 1 MiB read) between batches, then deletes it
//!    (invariant 6). "Mostly dead": the bytes that deleting it would free (it, plus the dead
//!    segments right after it that it pins) are at least four times what compaction rewrites
//!    (its live enqueue records plus one snapshot). For a full segment that is "live bytes
//!    under 25%"; it also lets one slow message in a small segment be moved so it no longer
//!    pins the dead segments behind it, and it cannot loop on segments that are mostly
//!    snapshot. Replay of a re-appended message replaces the older copy (same queue and seq),
//!    so a crash mid-compaction is harmless.
//!
//! # Durability by fsync policy
//!
//! - [`FsyncPolicy::Always`]: a resolved commit is on stable storage.
//! - [`FsyncPolicy::Interval`]: a commit resolves once written to the OS; the writer syncs at
//!   most once per interval. A process crash (even `kill -9`) loses nothing receipted; a power
//!   failure or OS crash may lose up to one interval of receipted data. An fsync failure in
//!   this mode is logged at error level: the data of that interval may be lost.
//! - [`FsyncPolicy::Never`]: the OS decides when data reaches the disk (process crashes are
//!   still safe, power failures are not). Segment roll-over, deletion and shutdown still sync.
//!
//! # Known limits
//!
//! - Resynchronisation after corruption trusts any CRC-valid entry: a message body that itself
//!   contains a complete journal entry could be mistaken for one when the entry around it is
//!   damaged.
//! - The channel to the writer is unbounded: callers bound it by awaiting their commits.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::storage::record::{self, DecodeError, PagedMessage, Payload, Record, StoredMessage};
use crate::storage::segment;
use crate::storage::state::{Index, ReplayMsg, State};
use crate::storage::writer::{Cmd, Done, Faults, Head, Pending, Writer};
pub use crate::storage::writer::{ErrorSink, FailureHook};
use stompd_protocol::ByteStr;

/// When a commit counts as durable. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Resolve commits after `fdatasync` (the default).
    Always,
    /// Resolve commits after the write; sync at most once per interval.
    Interval(Duration),
    /// Resolve commits after the write; never sync for them.
    Never,
}

/// How to open a journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalOptions {
    /// The data directory (created if missing).
    pub dir: PathBuf,
    /// A segment rolls over when the next entry would make it larger than this (a single larger
    /// entry gets a segment of its own).
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    /// Body bytes that recovery keeps in memory; messages replayed after it is used up come
    /// back as [`PagedMessage`]s, read with [`Journal::read_message`] when due.
    pub memory_budget: u64,
}

impl JournalOptions {
    /// 64 MiB segments, [`FsyncPolicy::Always`], no memory budget.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JournalOptions {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            fsync: FsyncPolicy::Always,
            memory_budget: u64::MAX,
        }
    }
}

/// Errors of the journal. Cheap to clone: one failed group fails all its waiters.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    #[error("data directory {} is in use by another stompd process", dir.display())]
    Locked { dir: PathBuf },
    #[error("no space left on the device of data directory {}: message not stored", dir.display())]
    DiskFull { dir: PathBuf },
    #[error("journal I/O error: cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    #[error(
        "journal segment {} holds an entry of format version {version} at offset {offset}; \
         this stompd reads version {}: it was written by a newer stompd",
        path.display(),
        record::FORMAT_VERSION
    )]
    UnsupportedFormat {
        path: PathBuf,
        offset: u64,
        version: u8,
    },
    #[error("batch of {size} bytes exceeds the journal's maximum entry size of {max} bytes")]
    EntryTooLarge { size: usize, max: usize },
    #[error("the journal is closed")]
    Closed,
    #[error("message {seq} is not in the journal")]
    NotStored { seq: u64 },
}

impl JournalError {
    /// Classifies an I/O error: out of space (or quota) becomes [`JournalError::DiskFull`].
    pub(crate) fn io(op: &'static str, path: &Path, dir: &Path, e: io::Error) -> JournalError {
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => JournalError::DiskFull {
                dir: dir.to_path_buf(),
            },
            _ => JournalError::Io {
                op,
                path: path.to_path_buf(),
                source: Arc::new(e),
            },
        }
    }
}

/// One queue as replay left it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveredQueue {
    /// Unacked messages held in memory, sorted by seq, redelivery counts applied.
    pub messages: Vec<StoredMessage>,
    /// Unacked messages left on disk (the memory budget was used up), sorted by seq.
    pub paged: Vec<PagedMessage>,
    /// Idempotency keys of the latest enqueues, acknowledged ones included, oldest first, with
    /// their enqueue times: the queue's duplicate window is rebuilt from them.
    pub keys: Vec<(ByteStr, u64)>,
    pub closed: bool,
    /// A `QueueCreated` record was seen (and no `QueueDeleted` after it).
    pub created: bool,
    /// Greater than every seq ever enqueued to the queue (since its last deletion).
    pub next_seq: u64,
}

/// What [`Journal::open`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    /// Segment files replayed.
    pub segments: u64,
    /// Valid entries replayed (snapshots included).
    pub entries: u64,
    /// Records applied.
    pub records: u64,
    /// Bytes of torn tail cut from the last segment.
    pub truncated_bytes: u64,
    /// Corrupt regions skipped (each reported with `tracing::warn!`).
    pub corrupt_entries_skipped: u64,
    pub elapsed: Duration,
}

/// The state to rebuild the persistent queues from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovered {
    pub queues: BTreeMap<String, RecoveredQueue>,
    pub report: RecoveryReport,
}

/// Counters of a running journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JournalStats {
    pub segments: u64,
    pub bytes_on_disk: u64,
    /// Entries written since open (compaction entries included).
    pub entries: u64,
    pub fsyncs: u64,
    pub fsync_nanos: u64,
    pub live_messages: u64,
    /// Messages re-appended by compaction since open.
    pub compacted_messages: u64,
    /// Failed writes or syncs since open.
    pub write_errors: u64,
}

#[derive(Debug, Default)]
pub(crate) struct StatsInner {
    pub segments: AtomicU64,
    pub bytes_on_disk: AtomicU64,
    pub entries: AtomicU64,
    pub fsyncs: AtomicU64,
    pub fsync_nanos: AtomicU64,
    pub live_messages: AtomicU64,
    pub compacted_messages: AtomicU64,
    pub write_errors: AtomicU64,
}

/// Resolves when an appended batch is durable per the fsync policy, or failed.
///
/// Dropping it does not cancel the append.
#[must_use = "a commit must be awaited to know the batch is durable"]
#[derive(Debug)]
pub struct Commit {
    state: CommitState,
}

#[derive(Debug)]
enum CommitState {
    Waiting(oneshot::Receiver<Result<(), JournalError>>),
    Ready(Option<Result<(), JournalError>>),
}

impl Commit {
    pub(crate) fn ready(r: Result<(), JournalError>) -> Commit {
        Commit {
            state: CommitState::Ready(Some(r)),
        }
    }

    /// Blocks the calling thread until the commit resolves. For synchronous callers (start-up,
    /// tests); it panics if called from within an async runtime (tokio's rule), await instead.
    pub fn wait(self) -> Result<(), JournalError> {
        match self.state {
            CommitState::Ready(r) => r.unwrap_or(Err(JournalError::Closed)),
            CommitState::Waiting(rx) => rx.blocking_recv().unwrap_or(Err(JournalError::Closed)),
        }
    }
}

impl Future for Commit {
    type Output = Result<(), JournalError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.state {
            CommitState::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(JournalError::Closed))),
            CommitState::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(JournalError::Closed))),
        }
    }
}

/// A cheap, cloneable handle to the journal. The writer thread stops when [`Journal::shutdown`]
/// is called or the last handle is dropped (which flushes and syncs, best effort).
#[derive(Debug, Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<Cmd>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<StatsInner>,
    dir: PathBuf,
    index: Arc<Mutex<Index>>,
    on_failure: Arc<std::sync::OnceLock<FailureHook>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn shutdown(&self) -> Result<(), JournalError> {
        // Take the handle first: a second caller returns at once.
        let Some(thread) = self.thread.lock().take() else {
            return Ok(());
        };
        let (tx, rx) = mpsc::channel();
        let result = if self.tx.send(Cmd::Shutdown(tx)).is_ok() {
            rx.recv().unwrap_or(Err(JournalError::Closed))
        } else {
            Err(JournalError::Closed)
        };
        if thread.join().is_err() {
            tracing::error!(dir = %self.dir.display(), "journal writer thread panicked");
            return Err(JournalError::Closed);
        }
        result
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(dir = %self.dir.display(), error = %e, "journal shutdown failed");
        }
    }
}

impl Journal {
    /// Locks the data directory, replays it and starts the writer thread. Synchronous: call
    /// it at start-up (or from `spawn_blocking`).
    pub fn open(opts: JournalOptions) -> Result<(Journal, Recovered), JournalError> {
        Self::open_with(opts, Faults::default())
    }

    pub(crate) fn open_with(
        opts: JournalOptions,
        faults: Faults,
    ) -> Result<(Journal, Recovered), JournalError> {
        let started = Instant::now();
        let dir = opts.dir.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|e| JournalError::io("create directory", &dir, &dir, e))?;
        let lock = lock_dir(&dir)?;

        let mut report = RecoveryReport::default();
        let (mut state, last) = replay(&dir, opts.memory_budget, &mut report)?;

        // Start a new segment (invariant 5), dropping an empty last one.
        let mut next_id = 1;
        if let Some((id, valid_len)) = last {
            next_id = id + 1;
            if valid_len == 0 {
                let path = dir.join(segment::file_name(id));
                std::fs::remove_file(&path)
                    .map_err(|e| JournalError::io("remove empty segment", &path, &dir, e))?;
                state.segments.remove(&id);
            }
        }
        let stats = Arc::new(StatsInner::default());
        let head = Head::create(&dir, next_id, &state.snapshot(), &stats)?;
        state.segments.insert(
            head.id,
            crate::storage::state::SegInfo {
                size: head.len,
                ..Default::default()
            },
        );

        // Split the replayed state: messages for the caller, locations for the writer.
        let mut recovered = Recovered::default();
        let resident = state.resident;
        let mut index: State<()> = State {
            queues: BTreeMap::new(),
            segments: std::mem::take(&mut state.segments),
            live_total: state.live_total,
            ..State::default()
        };
        for (name, q) in std::mem::take(&mut state.queues) {
            let mut locs = BTreeMap::new();
            let mut messages = Vec::new();
            let mut paged = Vec::new();
            for (seq, live) in q.msgs {
                locs.insert(
                    seq,
                    crate::storage::state::Live {
                        loc: live.loc,
                        msg: (),
                    },
                );
                match live.msg {
                    ReplayMsg::Loaded(m) => messages.push(m),
                    ReplayMsg::Paged(m) => paged.push(m),
                }
            }
            recovered.queues.insert(
                name.to_string(),
                RecoveredQueue {
                    messages,
                    paged,
                    keys: q.keys.iter().cloned().collect(),
                    closed: q.closed,
                    created: q.created,
                    next_seq: q.next_seq,
                },
            );
            index.queues.insert(
                name,
                crate::storage::state::QueueState {
                    created: q.created,
                    closed: q.closed,
                    next_seq: q.next_seq,
                    msgs: locs,
                    keys: q.keys,
                },
            );
        }
        report.elapsed = started.elapsed();
        recovered.report = report;
        tracing::info!(
            dir = %dir.display(),
            segments = recovered.report.segments,
            entries = recovered.report.entries,
            live_messages = index.live_total,
            resident_body_bytes = resident,
            truncated_bytes = recovered.report.truncated_bytes,
            corrupt_entries_skipped = recovered.report.corrupt_entries_skipped,
            elapsed_ms = recovered.report.elapsed.as_millis() as u64,
            "journal recovered"
        );

        let (tx, rx) = mpsc::channel();
        let index = Arc::new(Mutex::new(Index {
            state: index,
            files: Default::default(),
        }));
        let on_failure = Arc::new(std::sync::OnceLock::new());
        let writer = Writer::new(
            opts,
            index.clone(),
            head,
            lock,
            stats.clone(),
            faults,
            on_failure.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("stompd-journal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| JournalError::io("spawn writer thread for", &dir, &dir, e))?;
        let journal = Journal {
            inner: Arc::new(Inner {
                tx,
                thread: Mutex::new(Some(thread)),
                stats,
                dir,
                index,
                on_failure,
            }),
        };
        Ok((journal, recovered))
    }

    /// Appends `batch` as one atomic entry. The encoding happens here, in the caller's thread;
    /// the returned [`Commit`] resolves when the entry is durable per the fsync policy.
    /// Entries from one thread are written in call order. An empty batch writes nothing and
    /// resolves in order with the others.
    pub fn append(&self, batch: Vec<Record>) -> Commit {
        let (tx, rx) = oneshot::channel();
        match self.submit(batch, Done::Reply(tx)) {
            Ok(()) => Commit {
                state: CommitState::Waiting(rx),
            },
            Err(e) => Commit::ready(Err(e)),
        }
    }

    /// [`Journal::append`] for a batch nobody waits for (automatic acknowledgements, the
    /// removal of dead letters): no completion channel is allocated. A failure is logged by the
    /// writer.
    pub fn append_detached(&self, batch: Vec<Record>) {
        if let Err(e) = self.submit(batch, Done::Nobody) {
            tracing::error!(error = %e, "journal append refused");
        }
    }

    /// [`Journal::append`] that reports only a failure, to `on_error` (called on the writer
    /// thread, or here when the batch is refused at once). Appends of one thread are written in
    /// order, so a later [`Commit`] resolving means this batch was handled too.
    pub fn append_reporting(&self, batch: Vec<Record>, on_error: &ErrorSink) {
        if let Err(e) = self.submit(batch, Done::OnError(on_error.clone())) {
            on_error(&e);
        }
    }

    fn submit(&self, batch: Vec<Record>, done: Done) -> Result<(), JournalError> {
        let mut entry = segment::begin_entry(record::estimate_batch(&batch));
        let mut sizes = Vec::with_capacity(batch.len());
        if !batch.is_empty() {
            record::encode_batch(&mut entry, &batch, &mut sizes);
            if let Err(size) = segment::seal_entry(&mut entry) {
                return Err(JournalError::EntryTooLarge {
                    size,
                    max: segment::MAX_PAYLOAD,
                });
            }
        } else {
            entry.clear();
        }
        let pending = Pending {
            entry,
            records: batch,
            sizes,
            done,
        };
        self.inner
            .tx
            .send(Cmd::Append(pending))
            .map_err(|_| JournalError::Closed)
    }

    /// Resolves once everything appended before it is synced to disk, whatever the policy.
    pub fn sync(&self) -> Commit {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Cmd::Sync(tx)).is_err() {
            return Commit::ready(Err(JournalError::Closed));
        }
        Commit {
            state: CommitState::Waiting(rx),
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> JournalStats {
        let s = &self.inner.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        JournalStats {
            segments: get(&s.segments),
            bytes_on_disk: get(&s.bytes_on_disk),
            entries: get(&s.entries),
            fsyncs: get(&s.fsyncs),
            fsync_nanos: get(&s.fsync_nanos),
            live_messages: get(&s.live_messages),
            compacted_messages: get(&s.compacted_messages),
            write_errors: get(&s.write_errors),
        }
    }

    /// Reads a live message back from its enqueue record (a message paged out of memory).
    /// The message must have been written: see [`Journal::retain_stored`].
    pub fn read_message(&self, queue: &str, seq: u64) -> Result<StoredMessage, JournalError> {
        let dir = &self.inner.dir;
        let (file, loc, path) = {
            let mut index = self.inner.index.lock();
            let loc = index
                .state
                .loc(queue, seq)
                .copied()
                .ok_or(JournalError::NotStored { seq })?;
            let path = dir.join(segment::file_name(loc.segment));
            let file = match index.files.get(&loc.segment) {
                Some(f) => f.clone(),
                None => {
                    // Opened under the lock, so the writer cannot delete it in between.
                    let f = Arc::new(
                        File::open(&path).map_err(|e| JournalError::io("open", &path, dir, e))?,
                    );
                    index.files.insert(loc.segment, f.clone());
                    f
                }
            };
            (file, loc, path)
        };
        let payload = segment::read_entry_at(&file, loc.entry_offset)
            .map_err(|e| JournalError::io("read", &path, dir, e))?;
        if let Ok(Payload::Batch { records, .. }) = record::decode_payload(&payload) {
            for rec in records {
                if let Record::Enqueue { queue: q, mut msg } = rec {
                    if msg.seq == seq && &*q == queue {
                        msg.redelivery_count = loc.redelivery_count;
                        return Ok(msg);
                    }
                }
            }
        }
        Err(JournalError::Io {
            op: "find the message in",
            path,
            source: Arc::new(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "entry at offset {} holds no message {seq} of {queue}",
                    loc.entry_offset
                ),
            )),
        })
    }

    /// Keeps the seqs of `queue` whose enqueue records are written (so [`Journal::read_message`]
    /// finds them).
    pub fn retain_stored(&self, queue: &str, seqs: &mut Vec<u64>) {
        let index = self.inner.index.lock();
        match index.state.queues.get(queue) {
            Some(q) => seqs.retain(|s| q.msgs.contains_key(s)),
            None => seqs.clear(),
        }
    }

    /// Installs the hook told the records of every batch that fails to be written, on the
    /// writer thread, before the batch's waiters. Only the first call counts.
    pub fn on_failed_batch(&self, hook: FailureHook) {
        let _ = self.inner.on_failure.set(hook);
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Writes everything appended so far, syncs, stops the writer thread and releases the
    /// directory lock. Later appends fail with [`JournalError::Closed`]. Blocks; idempotent
    /// (a second call returns `Ok` at once).
    pub fn shutdown(&self) -> Result<(), JournalError> {
        self.inner.shutdown()
    }

    /// [`Journal::shutdown`], consuming this handle.
    pub fn close(self) -> Result<(), JournalError> {
        self.shutdown()
    }
}

/// Takes the directory lock; the returned file must stay open while the journal runs.
fn lock_dir(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join("LOCK");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| JournalError::io("open lock file", &path, dir, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(JournalError::Locked {
                dir: dir.to_path_buf(),
            })
        }
        Err(TryLockError::Error(e)) => return Err(JournalError::io("lock", &path, dir, e)),
    }
    // For people looking at the directory: who holds it. Not needed for correctness.
    let _ = file
        .set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(file)
}

/// Lists segment ids in increasing order.
fn list_segments(dir: &Path) -> Result<Vec<u64>, JournalError> {
    let mut ids = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| JournalError::io("list", dir, dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| JournalError::io("list", dir, dir, e))?;
        if let Some(id) = ent.file_name().to_str().and_then(segment::parse_file_name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// `(id, valid length)` of the last segment found by replay.
type LastSegment = Option<(u64, u64)>;

/// Replays every segment. Returns the state and the last segment.
fn replay(
    dir: &Path,
    memory_budget: u64,
    report: &mut RecoveryReport,
) -> Result<(State<ReplayMsg>, LastSegment), JournalError> {
    let ids = list_segments(dir)?;
    let mut state = State::<ReplayMsg> {
        budget: memory_budget,
        ..State::default()
    };
    let mut last = None;
    for (i, &id) in ids.iter().enumerate() {
        let is_last = i + 1 == ids.len();
        let path = dir.join(segment::file_name(id));
        let buf = std::fs::read(&path).map_err(|e| JournalError::io("read", &path, dir, e))?;
        let scan = segment::scan(&buf, is_last);
        report.segments += 1;
        for &(offset, len) in &scan.corrupt {
            tracing::warn!(
                segment = %path.display(),
                offset,
                bytes = len,
                "corrupt journal entry skipped (bad checksum or impossible length)"
            );
            report.corrupt_entries_skipped += 1;
        }
        let valid_len = match scan.torn_at {
            Some(at) => {
                let cut = buf.len() - at;
                tracing::warn!(
                    segment = %path.display(),
                    offset = at,
                    bytes = cut,
                    "torn write at the end of the journal truncated"
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| JournalError::io("open", &path, dir, e))?;
                f.set_len(at as u64)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| JournalError::io("truncate", &path, dir, e))?;
                report.truncated_bytes += cut as u64;
                at as u64
            }
            None => buf.len() as u64,
        };
        state.segments.entry(id).or_default().size = valid_len;
        for &(offset, len) in &scan.entries {
            let payload = &buf[offset + segment::HEADER_LEN..offset + len];
            let (records, sizes) = match record::decode_payload(payload) {
                Ok(Payload::Batch { records, sizes }) => (records, sizes),
                Ok(Payload::Snapshot(queues)) => {
                    report.entries += 1;
                    state.apply_snapshot(queues);
                    continue;
                }
                Err(DecodeError::Version(version)) => {
                    return Err(JournalError::UnsupportedFormat {
                        path,
                        offset: offset as u64,
                        version,
                    })
                }
                Err(e) => {
                    tracing::warn!(
                        segment = %path.display(),
                        offset,
                        error = %e,
                        "undecodable journal entry skipped"
                    );
                    report.corrupt_entries_skipped += 1;
                    continue;
                }
            };
            report.entries += 1;
            for (rec, size) in records.into_iter().zip(sizes) {
                report.records += 1;
                state.apply(rec, id, offset as u64, size);
            }
        }
        last = Some((id, valid_len));
    }
    Ok((state, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::writer::{FaultState, Faults};
    use bytes::Bytes;

    fn opts(dir: &Path) -> JournalOptions {
        JournalOptions::new(dir)
    }

    fn msg(seq: u64, body: &str) -> StoredMessage {
        StoredMessage {
            seq,
            priority: (seq % 10) as u8,
            timestamp_ms: 1000 + seq,
            expires_at_ms: seq.is_multiple_of(2).then_some(5000 + seq),
            redelivery_count: 0,
            idempotency_key: seq.is_multiple_of(3).then(|| format!("k{seq}").into()),
            headers: vec![("h".into(), format!("v{seq}").into())],
            body: Bytes::from(body.to_owned()),
        }
    }

    /// Without an idempotency key: the compaction tests use tiny segments, where a snapshot
    /// carrying remembered keys would outweigh what compaction frees.
    fn plain(seq: u64, body: &str) -> StoredMessage {
        StoredMessage {
            idempotency_key: None,
            ..msg(seq, body)
        }
    }

    fn enq_plain(queue: &str, seq: u64) -> Record {
        Record::Enqueue {
            queue: queue.into(),
            msg: plain(seq, &format!("body of {queue} {seq}")),
        }
    }

    fn enq(queue: &str, seq: u64) -> Record {
        Record::Enqueue {
            queue: queue.into(),
            msg: msg(seq, &format!("body of {queue} {seq}")),
        }
    }

    fn ack(queue: &str, seq: u64) -> Record {
        Record::Ack {
            queue: queue.into(),
            seq,
        }
    }

    fn seqs(r: &Recovered, queue: &str) -> Vec<u64> {
        r.queues
            .get(queue)
            .map(|q| q.messages.iter().map(|m| m.seq).collect())
            .unwrap_or_default()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(segment::parse_file_name)
                    .is_some()
            })
            .collect();
        v.sort();
        v
    }

    /// `(offset, len)` of the entries of a segment file.
    fn entries_of(path: &Path) -> Vec<(usize, usize)> {
        segment::scan(&std::fs::read(path).unwrap(), true).entries
    }

    fn append(j: &Journal, batch: Vec<Record>) {
        j.append(batch).wait().unwrap();
    }

    /// Lets the writer finish deletion and compaction work.
    fn settle(j: &Journal) -> JournalStats {
        let mut last = j.stats();
        let mut same = 0;
        for _ in 0..10_000 {
            j.sync().wait().unwrap();
            let now = j.stats();
            if now.segments == last.segments && now.compacted_messages == last.compacted_messages {
                same += 1;
                if same == 5 {
                    break;
                }
            } else {
                same = 0;
            }
            last = now;
        }
        j.stats()
    }

    #[test]
    fn replay_after_clean_close() {
        let tmp = tempfile::tempdir().unwrap();
        let (j, r) = Journal::open(opts(tmp.path())).unwrap();
        assert!(r.queues.is_empty());
        assert_eq!(r.report.segments, 0);
        append(&j, vec![Record::QueueCreated { queue: "a".into() }]);
        append(&j, vec![enq("a", 0), enq("a", 1), enq("b", 0)]);
        append(&j, vec![enq("a", 2)]);
        append(&j, vec![ack("a", 1)]);
        append(
            &j,
            vec![Record::Redelivered {
                queue: "a".into(),
                seq: 2,
                count: 3,
            }],
        );
        append(
            &j,
            vec![Record::QueueClosed {
                queue: "b".into(),
                closed: true,
            }],
        );
        append(&j, vec![]);
        j.close().unwrap();

        let (j, r) = Journal::open(opts(tmp.path())).unwrap();
        assert_eq!(seqs(&r, "a"), vec![0, 2]);
        let a = &r.queues["a"];
        assert!(a.created && !a.closed);
        assert_eq!(a.next_seq, 3);
        assert_eq!(a.messages[0], msg(0, "body of a 0"));
        let mut m2 = msg(2, "body of a 2");
        m2.redelivery_count = 3;
        assert_eq!(a.messages[1], m2);
        let b = &r.queues["b"];
        assert!(!b.created && b.closed);
        assert_eq!(seqs(&r, "b"), vec![0]);
        assert_eq!(r.report.segments, 1);
        assert_eq!(r.report.entries, 1 + 6); // snapshot + 6 batches
        assert_eq!(r.report.records, 8);
        assert_eq!(
            r.report.truncated_bytes + r.report.corrupt_entries_skipped,
            0
        );
        assert_eq!(j.stats().live_messages, 3);
        drop(j);

        // and again: the state survives a second generation of segments
        let (_j, r2) = Journal::open(opts(tmp.path())).unwrap();
        assert_eq!(r2.queues, r.queues);
    }

    fn copy_segments(from: &Path, to: &Path) {
        for p in segment_files(from) {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }

    #[test]
    fn torn_tail_at_every_byte_offset_drops_only_the_partial_batch() {
        let pristine = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(opts(pristine.path())).unwrap();
        append(&j, vec![enq("q", 0), enq("q", 1)]);
        append(&j, vec![Record::QueueCreated { queue: "t".into() }]);
        // The last batch: a transaction-like mix that must apply whole or not at all.
        append(
            &j,
            vec![
                enq("q", 2),
                ack("q", 0),
                Record::QueueClosed {
                    queue: "q".into(),
                    closed: true,
                },
                enq("t", 0),
            ],
        );
        j.close().unwrap();
        let last = segment_files(pristine.path()).pop().unwrap();
        let &(offset, len) = entries_of(&last).last().unwrap();
        let file_len = std::fs::metadata(&last).unwrap().len() as usize;
        assert_eq!(offset + len, file_len);

        for cut in offset..file_len {
            let tmp = tempfile::tempdir().unwrap();
            copy_segments(pristine.path(), tmp.path());
            let path = tmp.path().join(last.file_name().unwrap());
            OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(cut as u64)
                .unwrap();
            let mut o = opts(tmp.path());
            o.fsync = FsyncPolicy::Never; // keeps 200 reopens fast; recovery is the same
            let (j, r) = Journal::open(o.clone()).unwrap();
            assert_eq!(seqs(&r, "q"), vec![0, 1], "cut at {cut}");
            assert!(!r.queues["q"].closed, "cut at {cut}");
            assert_eq!(seqs(&r, "t"), Vec::<u64>::new(), "cut at {cut}");
            assert!(r.queues["t"].created);
            assert_eq!(r.report.truncated_bytes, (cut - offset) as u64);
            assert_eq!(r.report.corrupt_entries_skipped, 0);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), offset as u64);
            // appending after the repair works and survives the next open
            append(&j, vec![enq("q", 7)]);
            j.close().unwrap();
            if (cut - offset) % 8 == 0 || cut + 1 == file_len {
                let (_j, r) = Journal::open(o).unwrap();
                assert_eq!(seqs(&r, "q"), vec![0, 1, 7], "cut at {cut}");
                assert_eq!(r.report.truncated_bytes, 0);
            }
        }
    }

    #[test]
    fn corrupt_middle_entry_is_skipped_and_later_entries_kept() {
        for (what, field_offset) in [("payload byte", segment::HEADER_LEN + 5), ("length", 5)] {
            let tmp = tempfile::tempdir().unwrap();
            let (j, _) = Journal::open(opts(tmp.path())).unwrap();
            for seq in 0..5 {
                append(&j, vec![enq("q", seq)]);
            }
            j.close().unwrap();
            let last = segment_files(tmp.path()).pop().unwrap();
            let entries = entries_of(&last);
            assert_eq!(entries.len(), 6, "snapshot + 5");
            let (offset, _) = entries[3]; // the batch holding seq 2
            let mut bytes = std::fs::read(&last).unwrap();
            bytes[offset + field_offset] ^= 0x5a;
            std::fs::write(&last, &bytes).unwrap();

            let (j, r) = Journal::open(opts(tmp.path())).unwrap();
            assert_eq!(seqs(&r, "q"), vec![0, 1, 3, 4], "{what}");
            assert_eq!(r.report.corrupt_entries_skipped, 1, "{what}");
            assert_eq!(r.report.truncated_bytes, 0, "{what}");
            assert_eq!(r.queues["q"].next_seq, 5);
            append(&j, vec![enq("q", 5)]);
            j.close().unwrap();
            // the corrupt entry is now in an older segment: still skipped, nothing lost
            let (_j, r) = Journal::open(opts(tmp.path())).unwrap();
            assert_eq!(seqs(&r, "q"), vec![0, 1, 3, 4, 5], "{what}");
            assert_eq!(r.report.corrupt_entries_skipped, 1, "{what}");
        }
    }

    #[test]
    fn newer_format_version_is_refused_not_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let mut entry = segment::begin_entry(8);
        entry.extend_from_slice(&[record::FORMAT_VERSION + 1, 1, 0, 0, 0, 0]);
        segment::seal_entry(&mut entry).unwrap();
        std::fs::write(tmp.path().join(segment::file_name(1)), &entry).unwrap();
        let err = Journal::open(opts(tmp.path())).unwrap_err();
        assert!(
            matches!(
                err,
                JournalError::UnsupportedFormat {
                    version: 2,
                    offset: 0,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("newer stompd"));
    }

    #[test]
    fn a_locked_directory_is_refused_with_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(opts(tmp.path())).unwrap();
        let err = Journal::open(opts(tmp.path())).unwrap_err();
        assert!(matches!(err, JournalError::Locked { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "data directory {} is in use by another stompd process",
                tmp.path().display()
            )
        );
        // dropping the last handle releases the lock
        drop(j);
        let (j, _) = Journal::open(opts(tmp.path())).unwrap();
        j.shutdown().unwrap();
        assert!(matches!(
            j.append(vec![enq("q", 0)]).wait(),
            Err(JournalError::Closed)
        ));
        assert!(j.shutdown().is_ok(), "shutdown is idempotent");
        let _again = Journal::open(opts(tmp.path())).unwrap();
    }

    #[test]
    fn segments_roll_over_and_are_deleted_once_all_acked() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = opts(tmp.path());
        o.segment_bytes = 1024;
        let (j, _) = Journal::open(o.clone()).unwrap();
        for seq in 0..60 {
            append(&j, vec![enq("q", seq)]);
        }
        let s = settle(&j);
        assert!(s.segments > 4, "{s:?}");
        assert_eq!(s.live_messages, 60);
        assert_eq!(segment_files(tmp.path()).len() as u64, s.segments);
        for f in segment_files(tmp.path()) {
            let len = std::fs::metadata(&f).unwrap().len();
            assert!(len <= 1024, "{} has {len} bytes", f.display());
        }
        // ack in order: older segments go away while newer ones still hold live messages
        for seq in 0..30 {
            append(&j, vec![ack("q", seq)]);
        }
        let half = settle(&j);
        assert!(half.segments < s.segments, "{half:?} vs {s:?}");
        for seq in 30..60 {
            append(&j, vec![ack("q", seq)]);
        }
        let s = settle(&j);
        assert_eq!(s.live_messages, 0);
        assert!(s.segments <= 2, "{s:?}");
        assert_eq!(segment_files(tmp.path()).len() as u64, s.segments);
        assert_eq!(
            s.bytes_on_disk,
            segment_files(tmp.path())
                .iter()
                .map(|f| std::fs::metadata(f).unwrap().len())
                .sum::<u64>()
        );
        j.close().unwrap();
        let (_j, r) = Journal::open(o).unwrap();
        assert_eq!(seqs(&r, "q"), Vec::<u64>::new());
        assert_eq!(
            r.queues["q"].next_seq, 60,
            "queue state outlives deleted segments"
        );
    }

    #[test]
    fn compaction_moves_live_messages_and_deletes_old_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = opts(tmp.path());
        o.segment_bytes = 2048;
        let (j, _) = Journal::open(o.clone()).unwrap();
        append(&j, vec![Record::QueueCreated { queue: "a".into() }]);
        for seq in 0..200 {
            append(&j, vec![enq_plain("a", seq)]);
        }
        append(
            &j,
            vec![Record::QueueClosed {
                queue: "a".into(),
                closed: true,
            }],
        );
        let first_files = segment_files(tmp.path());
        let before = settle(&j);
        assert!(before.segments > 5, "{before:?}");
        // keep every 20th message; give some of them redelivery counts
        for seq in (0..200).filter(|s| s % 20 != 0) {
            append(&j, vec![ack("a", seq)]);
        }
        for seq in [0, 40, 180] {
            append(
                &j,
                vec![Record::Redelivered {
                    queue: "a".into(),
                    seq,
                    count: seq as u32 + 1,
                }],
            );
        }
        let after = settle(&j);
        assert!(after.compacted_messages > 0, "{after:?}");
        assert_eq!(after.live_messages, 10);
        assert!(after.segments <= 4, "{after:?}");
        assert!(
            first_files.iter().take(3).all(|f| !f.exists()),
            "the oldest segments were deleted"
        );
        j.close().unwrap();

        let (_j, r) = Journal::open(o).unwrap();
        let a = &r.queues["a"];
        assert!(a.closed && a.created);
        assert_eq!(a.next_seq, 200);
        let want: Vec<u64> = (0..200).filter(|s| s % 20 == 0).collect();
        assert_eq!(seqs(&r, "a"), want);
        for m in &a.messages {
            let mut expected = plain(m.seq, &format!("body of a {}", m.seq));
            if [0, 40, 180].contains(&m.seq) {
                expected.redelivery_count = m.seq as u32 + 1;
            }
            assert_eq!(m, &expected);
        }
    }

    #[test]
    fn group_commit_shares_fsyncs_between_concurrent_appends() {
        let tmp = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(opts(tmp.path())).unwrap();
        let base = j.stats().fsyncs;
        const THREADS: u64 = 8;
        const EACH: u64 = 40;
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let j = j.clone();
                s.spawn(move || {
                    let q = format!("q{t}");
                    for seq in 0..EACH {
                        j.append(vec![enq(&q, seq)]).wait().unwrap();
                    }
                });
            }
        });
        let stats = j.stats();
        let fsyncs = stats.fsyncs - base;
        assert!(
            fsyncs < THREADS * EACH,
            "{fsyncs} fsyncs for {} appends",
            THREADS * EACH
        );
        assert_eq!(stats.live_messages, THREADS * EACH);
        assert!(stats.fsync_nanos > 0);
        j.close().unwrap();
        let (_j, r) = Journal::open(opts(tmp.path())).unwrap();
        for t in 0..THREADS {
            assert_eq!(seqs(&r, &format!("q{t}")), (0..EACH).collect::<Vec<_>>());
        }
    }

    #[test]
    fn handles_are_shareable_across_threads_and_tasks() {
        fn send_sync<T: Send + Sync + 'static>() {}
        fn send<T: Send + Unpin + 'static>() {}
        send_sync::<Journal>();
        send_sync::<JournalError>();
        send::<Commit>();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn commits_are_futures() {
        let tmp = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(opts(tmp.path())).unwrap();
        let commits: Vec<Commit> = (0..20).map(|seq| j.append(vec![enq("q", seq)])).collect();
        for c in commits {
            c.await.unwrap();
        }
        j.sync().await.unwrap();
        assert_eq!(j.stats().live_messages, 20);
    }

    #[test]
    fn failed_writes_and_syncs_fail_their_waiters_and_leave_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let faults = Faults(Arc::new(FaultState::default()));
        let (j, _) = Journal::open_with(opts(tmp.path()), faults.clone()).unwrap();
        append(&j, vec![enq("q", 0)]);
        let seg = segment_files(tmp.path()).pop().unwrap();
        let len_before = std::fs::metadata(&seg).unwrap().len();

        faults.0.fail_writes.store(1, Ordering::SeqCst);
        let err = j.append(vec![enq("q", 1)]).wait().unwrap_err();
        assert!(matches!(err, JournalError::DiskFull { .. }), "{err:?}");
        assert!(err.to_string().contains("no space left"), "{err}");
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), len_before);

        faults.0.fail_syncs.store(1, Ordering::SeqCst);
        let err = j.append(vec![enq("q", 2)]).wait().unwrap_err();
        assert!(matches!(err, JournalError::Io { .. }), "{err:?}");
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), len_before);

        // space is back: appends succeed again
        append(&j, vec![enq("q", 3)]);
        let s = j.stats();
        assert_eq!(s.write_errors, 2);
        assert_eq!(s.live_messages, 2);
        j.close().unwrap();
        let (_j, r) = Journal::open(opts(tmp.path())).unwrap();
        assert_eq!(seqs(&r, "q"), vec![0, 3]);
        assert_eq!(
            r.report.corrupt_entries_skipped + r.report.truncated_bytes,
            0
        );
    }

    #[test]
    fn interval_and_never_policies_keep_everything_on_clean_close() {
        for policy in [
            FsyncPolicy::Interval(Duration::from_millis(5)),
            FsyncPolicy::Never,
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let mut o = opts(tmp.path());
            o.fsync = policy;
            let (j, _) = Journal::open(o.clone()).unwrap();
            let base = j.stats().fsyncs;
            for seq in 0..50 {
                append(&j, vec![enq("q", seq)]);
            }
            if policy == FsyncPolicy::Never {
                assert_eq!(j.stats().fsyncs, base, "never syncs for appends");
            }
            j.sync().wait().unwrap();
            drop(j); // last handle: flush and sync
            let (_j, r) = Journal::open(o).unwrap();
            assert_eq!(seqs(&r, "q"), (0..50).collect::<Vec<_>>(), "{policy:?}");
        }
    }

    #[test]
    fn deleting_a_queue_drops_its_messages_and_frees_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = opts(tmp.path());
        o.segment_bytes = 1024;
        let (j, _) = Journal::open(o.clone()).unwrap();
        append(&j, vec![Record::QueueCreated { queue: "d".into() }]);
        for seq in 0..40 {
            append(&j, vec![enq("d", seq)]);
        }
        append(&j, vec![Record::QueueDeleted { queue: "d".into() }]);
        append(&j, vec![enq("d", 0)]); // a new queue of the same name
        let s = settle(&j);
        assert_eq!(s.live_messages, 1);
        assert!(s.segments <= 2, "{s:?}");
        j.close().unwrap();
        let (_j, r) = Journal::open(o).unwrap();
        let d = &r.queues["d"];
        assert!(!d.created);
        assert_eq!(d.next_seq, 1);
        assert_eq!(seqs(&r, "d"), vec![0]);
    }

    #[test]
    fn paged_messages_are_read_back_from_wherever_compaction_moved_them() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = opts(tmp.path());
        o.segment_bytes = 2048;
        let (j, _) = Journal::open(o).unwrap();
        for seq in 0..200 {
            append(&j, vec![enq_plain("a", seq)]);
        }
        for seq in [0, 99, 199] {
            assert_eq!(
                j.read_message("a", seq).unwrap(),
                plain(seq, &format!("body of a {seq}"))
            );
        }
        assert!(matches!(
            j.read_message("a", 500),
            Err(JournalError::NotStored { seq: 500 })
        ));
        assert!(matches!(
            j.read_message("zz", 1),
            Err(JournalError::NotStored { .. })
        ));
        let mut v = vec![5, 500, 7];
        j.retain_stored("a", &mut v);
        assert_eq!(v, [5, 7]);
        let first_files = segment_files(tmp.path());
        for seq in (0..200).filter(|s| s % 20 != 0) {
            append(&j, vec![ack("a", seq)]);
        }
        append(
            &j,
            vec![Record::Redelivered {
                queue: "a".into(),
                seq: 40,
                count: 3,
            }],
        );
        let after = settle(&j);
        assert!(after.compacted_messages > 0, "{after:?}");
        assert!(
            !first_files[0].exists(),
            "the first segment was compacted away"
        );
        for seq in (0..200).step_by(20) {
            let mut want = plain(seq, &format!("body of a {seq}"));
            if seq == 40 {
                want.redelivery_count = 3;
            }
            assert_eq!(j.read_message("a", seq).unwrap(), want);
        }
        assert!(matches!(
            j.read_message("a", 1),
            Err(JournalError::NotStored { seq: 1 })
        ));
    }

    #[test]
    fn replay_keeps_messages_whole_up_to_the_memory_budget_and_pages_out_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(opts(tmp.path())).unwrap();
        for seq in 0..10 {
            append(&j, vec![enq("a", seq)]);
        }
        append(&j, vec![ack("a", 0)]);
        append(
            &j,
            vec![Record::Redelivered {
                queue: "a".into(),
                seq: 6,
                count: 2,
            }],
        );
        j.close().unwrap();

        // Bodies are 11 bytes ("body of a N"): two fit in 30 bytes.
        let mut o = opts(tmp.path());
        o.memory_budget = 30;
        let (j, r) = Journal::open(o).unwrap();
        let a = &r.queues["a"];
        assert_eq!(seqs(&r, "a"), vec![1]);
        let paged: Vec<u64> = a.paged.iter().map(|p| p.seq).collect();
        assert_eq!(paged, (2..10).collect::<Vec<_>>());
        for p in &a.paged {
            let m = msg(p.seq, &format!("body of a {}", p.seq));
            assert_eq!(p.priority, m.priority);
            assert_eq!(p.timestamp_ms, m.timestamp_ms);
            assert_eq!(p.expires_at_ms, m.expires_at_ms);
            assert_eq!(p.idempotency_key, m.idempotency_key);
            assert_eq!(p.size, 11);
            assert_eq!(p.redelivery_count, if p.seq == 6 { 2 } else { 0 });
            let mut back = m;
            back.redelivery_count = p.redelivery_count;
            assert_eq!(j.read_message("a", p.seq).unwrap(), back);
        }
    }

    #[test]
    fn idempotency_keys_outlive_their_acknowledged_messages_and_deleted_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = opts(tmp.path());
        o.segment_bytes = 1024;
        let (j, _) = Journal::open(o.clone()).unwrap();
        for seq in 0..90 {
            append(&j, vec![enq("a", seq)]);
        }
        let first = segment_files(tmp.path());
        assert!(first.len() > 2, "{first:?}");
        for seq in 0..90 {
            append(&j, vec![ack("a", seq)]);
        }
        let s = settle(&j);
        assert_eq!(s.live_messages, 0);
        assert!(
            !first[0].exists(),
            "the segments of the acked messages were deleted"
        );
        j.close().unwrap();
        for _ in 0..2 {
            // Twice: the second time, only the snapshots written since carry the keys.
            let (j, r) = Journal::open(o.clone()).unwrap();
            let a = &r.queues["a"];
            assert!(a.messages.is_empty());
            let want: Vec<(ByteStr, u64)> = (0..90)
                .filter(|s: &u64| s.is_multiple_of(3))
                .map(|s| (ByteStr::from(format!("k{s}")), 1000 + s))
                .collect();
            assert_eq!(a.keys, want);
            j.close().unwrap();
        }
    }
}
