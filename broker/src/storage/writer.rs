//! The journal's writer thread: group commit, segment roll-over, deletion and compaction.
//!
//! It is the only owner of the segment files once [`Journal::open`] has replayed them. See the
//! module docs of [`crate::storage::journal`] for the invariants it keeps.
//!
//! [`Journal::open`]: crate::storage::journal::Journal::open

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::storage::journal::{FsyncPolicy, JournalError, JournalOptions, StatsInner};
use crate::storage::record::{self, Payload, Record, SnapshotQueue};
use crate::storage::segment;
use crate::storage::state::{Index, SegInfo};
use parking_lot::Mutex;

/// Bytes of old segment read per compaction pass (at least one entry is always read).
const COMPACT_PASS_BYTES: u64 = 1 << 20;
/// Entries read per compaction pass, at most.
const COMPACT_PASS_ENTRIES: usize = 4096;
/// Compaction of a segment is worth it when it frees at least this many times what it
/// rewrites.
const COMPACT_GAIN: u64 = 4;
/// After a failed compaction write, wait this long before trying again.
const COMPACT_BACKOFF: Duration = Duration::from_secs(1);

pub(crate) type Reply = oneshot::Sender<Result<(), JournalError>>;

pub(crate) enum Cmd {
    Append(Pending),
    Sync(Reply),
    Shutdown(mpsc::Sender<Result<(), JournalError>>),
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cmd::Append(_) => "Append",
            Cmd::Sync(_) => "Sync",
            Cmd::Shutdown(_) => "Shutdown",
        })
    }
}

impl Cmd {
    fn fail(self, e: JournalError) {
        match self {
            Cmd::Append(p) => p.complete(Err(e)),
            Cmd::Sync(r) => {
                let _ = r.send(Err(e));
            }
            Cmd::Shutdown(r) => {
                let _ = r.send(Err(e));
            }
        }
    }
}

/// An encoded entry waiting to be written, with its records (applied to the index once the
/// entry is written) and the record sizes.
pub(crate) struct Pending {
    /// The whole entry, header included; empty for an empty batch.
    pub entry: Vec<u8>,
    pub records: Vec<Record>,
    pub sizes: Vec<u32>,
    pub done: Done,
}

/// Who learns how an append ended.
pub(crate) enum Done {
    /// Nobody (a failure is still logged by the writer).
    Nobody,
    /// A [`crate::storage::Commit`] waits for the result.
    Reply(Reply),
    /// Only a failure is reported, through a callback shared by many appends: no allocation
    /// per append (fire-and-forget SENDs).
    OnError(ErrorSink),
}

/// Told about the failure of an append made with [`crate::storage::Journal::append_reporting`].
pub type ErrorSink = Arc<dyn Fn(&JournalError) + Send + Sync>;

/// Told the records of every batch that could not be written (before its waiters are), so the
/// owner can take back what it already made visible: a message whose SEND gets ERROR
/// `disk-full` must not be delivered anyway. See [`crate::storage::Journal::on_failed_batch`].
pub type FailureHook = Arc<dyn Fn(&[Record]) + Send + Sync>;

impl Pending {
    fn complete(self, r: Result<(), JournalError>) {
        match (self.done, r) {
            // The caller may have dropped its Commit; that is fine.
            (Done::Reply(done), r) => {
                let _ = done.send(r);
            }
            (Done::OnError(sink), Err(e)) => sink(&e),
            _ => {}
        }
    }
}

/// Fault injection for tests: the next N writes fail after writing half their bytes (as a
/// full disk would), the next N syncs fail.
#[cfg(test)]
#[derive(Debug, Default, Clone)]
pub(crate) struct Faults(pub Arc<FaultState>);

#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    pub fail_writes: std::sync::atomic::AtomicU32,
    pub fail_syncs: std::sync::atomic::AtomicU32,
}

#[cfg(test)]
impl Faults {
    fn take(n: &std::sync::atomic::AtomicU32) -> bool {
        n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
            .is_ok()
    }

    fn before_write(&self, file: &mut File, buf: &[u8]) -> io::Result<()> {
        if Self::take(&self.0.fail_writes) {
            file.write_all(&buf[..buf.len() / 2])?;
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        Ok(())
    }

    fn before_sync(&self) -> io::Result<()> {
        if Self::take(&self.0.fail_syncs) {
            return Err(io::Error::other("injected fsync failure"));
        }
        Ok(())
    }
}

#[cfg(not(test))]
#[derive(Debug, Default, Clone)]
pub(crate) struct Faults(());

#[cfg(not(test))]
impl Faults {
    #[inline]
    fn before_write(&self, _: &mut File, _: &[u8]) -> io::Result<()> {
        Ok(())
    }

    #[inline]
    fn before_sync(&self) -> io::Result<()> {
        Ok(())
    }
}

/// The segment being written.
#[derive(Debug)]
pub(crate) struct Head {
    pub id: u64,
    file: File,
    path: PathBuf,
    /// Bytes of valid entries; the file position.
    pub len: u64,
    /// Length of the snapshot that starts the segment.
    pub base_len: u64,
    /// A failed write could not be rolled back: write no more to this segment.
    broken: bool,
}

impl Head {
    /// Creates segment `id` starting with a snapshot of `queues`, synced, directory synced.
    pub(crate) fn create(
        dir: &Path,
        id: u64,
        queues: &[SnapshotQueue],
        stats: &StatsInner,
    ) -> Result<Head, JournalError> {
        let path = dir.join(segment::file_name(id));
        let mut entry = segment::begin_entry(64 + queues.len() * 32);
        record::encode_snapshot(&mut entry, queues);
        segment::seal_entry(&mut entry).map_err(|size| JournalError::EntryTooLarge {
            size,
            max: segment::MAX_PAYLOAD,
        })?;
        let created = (|| {
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(&path)?;
            file.write_all(&entry)?;
            let t = Instant::now();
            file.sync_data()?;
            stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            stats
                .fsync_nanos
                .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
            segment::sync_dir(dir)?;
            Ok(file)
        })();
        match created {
            Ok(file) => {
                stats.entries.fetch_add(1, Ordering::Relaxed);
                Ok(Head {
                    id,
                    file,
                    path,
                    len: entry.len() as u64,
                    base_len: entry.len() as u64,
                    broken: false,
                })
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(JournalError::io("create segment", &path, dir, e))
            }
        }
    }
}

pub(crate) struct Writer {
    dir: PathBuf,
    segment_bytes: u64,
    policy: FsyncPolicy,
    /// Locations of live messages; shared with [`crate::storage::Journal::read_message`].
    index: Arc<Mutex<Index>>,
    head: Head,
    /// Written but not yet synced.
    dirty: bool,
    last_sync: Instant,
    stats: Arc<StatsInner>,
    /// Segments whose compaction or deletion failed: left alone until the next open.
    stuck: BTreeSet<u64>,
    compact_backoff_until: Option<Instant>,
    /// Read handle on the segment being compacted.
    compact_file: Option<(u64, File)>,
    buf: Vec<u8>,
    /// Holds the directory lock until the writer stops.
    _lock: File,
    faults: Faults,
    on_failure: Arc<std::sync::OnceLock<FailureHook>>,
}

impl Writer {
    pub(crate) fn new(
        opts: JournalOptions,
        index: Arc<Mutex<Index>>,
        head: Head,
        lock: File,
        stats: Arc<StatsInner>,
        faults: Faults,
        on_failure: Arc<std::sync::OnceLock<FailureHook>>,
    ) -> Writer {
        let writer = Writer {
            dir: opts.dir,
            segment_bytes: opts.segment_bytes,
            policy: opts.fsync,
            index,
            head,
            dirty: false,
            last_sync: Instant::now(),
            stats,
            stuck: BTreeSet::new(),
            compact_backoff_until: None,
            compact_file: None,
            buf: Vec::new(),
            _lock: lock,
            faults,
            on_failure,
        };
        writer.publish();
        writer
    }

    pub(crate) fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let mut cmds = Vec::new();
        loop {
            self.delete_dead_segments();
            self.publish();
            let first = match self.next_wakeup() {
                None => match rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => break,
                },
                Some(timeout) => match rx.recv_timeout(timeout) {
                    Ok(c) => Some(c),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
            };
            if let Some(c) = first {
                // Group commit: take everything that is waiting.
                cmds.push(c);
                while let Ok(c) = rx.try_recv() {
                    cmds.push(c);
                }
            }
            if let Some(reply) = self.process(&mut cmds) {
                let result = self.finish();
                while let Ok(c) = rx.try_recv() {
                    c.fail(JournalError::Closed);
                }
                self.publish();
                let _ = reply.send(result);
                return;
            }
            self.interval_sync();
            self.compact_pass();
        }
        // Every handle is gone (normally Journal's Drop sends Shutdown first).
        if let Err(e) = self.finish() {
            tracing::error!(error = %e, "journal final sync failed");
        }
        self.publish();
    }

    /// Writes the commands in order, one write (+ sync) per run of appends that fits the head
    /// segment. Returns the reply channel if a shutdown was requested.
    fn process(&mut self, cmds: &mut Vec<Cmd>) -> Option<mpsc::Sender<Result<(), JournalError>>> {
        let mut chunk: Vec<Pending> = Vec::new();
        let mut chunk_bytes = 0u64;
        let mut iter = cmds.drain(..);
        while let Some(cmd) = iter.next() {
            match cmd {
                Cmd::Append(p) => {
                    let len = p.entry.len() as u64;
                    if len > 0 && self.must_roll(chunk_bytes, len) {
                        self.commit_chunk(std::mem::take(&mut chunk));
                        chunk_bytes = 0;
                        if let Err(e) = self.roll() {
                            self.fail(p, e);
                            continue;
                        }
                    }
                    chunk_bytes += len;
                    chunk.push(p);
                }
                Cmd::Sync(reply) => {
                    self.commit_chunk(std::mem::take(&mut chunk));
                    chunk_bytes = 0;
                    let r = if self.dirty { self.sync_head() } else { Ok(()) };
                    let _ = reply.send(r);
                }
                Cmd::Shutdown(reply) => {
                    self.commit_chunk(std::mem::take(&mut chunk));
                    for c in iter {
                        c.fail(JournalError::Closed);
                    }
                    return Some(reply);
                }
            }
        }
        drop(iter);
        self.commit_chunk(chunk);
        None
    }

    /// Whether an entry of `len` bytes after `pending` unwritten bytes needs a new segment.
    fn must_roll(&self, pending: u64, len: u64) -> bool {
        let used = self.head.len + pending;
        self.head.broken || (used + len > self.segment_bytes && used > self.head.base_len)
    }

    /// Writes a run of entries with one write call, syncs per policy, then applies their
    /// records and completes their waiters. On failure the segment is cut back and every
    /// waiter gets the error. Returns whether the entries were written.
    fn commit_chunk(&mut self, chunk: Vec<Pending>) -> bool {
        if chunk.is_empty() {
            return true;
        }
        let start = self.head.len;
        self.buf.clear();
        let mut offsets = Vec::with_capacity(chunk.len());
        for p in &chunk {
            offsets.push(start + self.buf.len() as u64);
            self.buf.extend_from_slice(&p.entry);
        }
        if self.buf.is_empty() {
            // Only empty batches: nothing to write, everything before them is already done.
            for p in chunk {
                p.complete(Ok(()));
            }
            return true;
        }
        let result = self.write_head().and_then(|()| {
            self.dirty = true;
            if self.policy == FsyncPolicy::Always {
                self.sync_head()
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                let written = self.buf.len() as u64;
                self.head.len += written;
                let mut index = self.index.lock();
                let state = &mut index.state;
                if let Some(seg) = state.segments.get_mut(&self.head.id) {
                    seg.size = self.head.len;
                }
                let mut entries = 0;
                let mut waiters = Vec::with_capacity(chunk.len());
                for (p, offset) in chunk.into_iter().zip(offsets) {
                    let Pending {
                        entry,
                        records,
                        sizes,
                        done,
                    } = p;
                    if !entry.is_empty() {
                        entries += 1;
                    }
                    for (rec, size) in records.into_iter().zip(sizes) {
                        state.apply(rec, self.head.id, offset, size);
                    }
                    if let Done::Reply(done) = done {
                        waiters.push(done);
                    }
                }
                drop(index);
                // Counters first, so a caller whose commit resolved sees its own effects.
                self.stats.entries.fetch_add(entries, Ordering::Relaxed);
                self.publish();
                for done in waiters {
                    let _ = done.send(Ok(()));
                }
                true
            }
            Err(e) => {
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    segment = %self.head.path.display(),
                    error = %e,
                    entries = chunk.len(),
                    "journal write failed; the batches were not stored"
                );
                self.rollback(start);
                for p in chunk {
                    self.fail(p, e.clone());
                }
                false
            }
        }
    }

    /// A batch that will never be written: the owner takes back its effects, then its waiter
    /// learns the error.
    fn fail(&self, p: Pending, e: JournalError) {
        if let Some(hook) = self.on_failure.get() {
            hook(&p.records);
        }
        p.complete(Err(e));
    }

    fn write_head(&mut self) -> Result<(), JournalError> {
        let r = self
            .faults
            .before_write(&mut self.head.file, &self.buf)
            .and_then(|()| self.head.file.write_all(&self.buf));
        r.map_err(|e| JournalError::io("write", &self.head.path, &self.dir, e))
    }

    fn sync_head(&mut self) -> Result<(), JournalError> {
        let t = Instant::now();
        self.last_sync = t;
        let r = self
            .faults
            .before_sync()
            .and_then(|()| self.head.file.sync_data());
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.stats
            .fsync_nanos
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r.map_err(|e| JournalError::io("sync", &self.head.path, &self.dir, e))?;
        self.dirty = false;
        Ok(())
    }

    /// Cuts the head back to `len` after a failed write or sync, so nothing of the failed
    /// group can show up later. If that fails too, the head is abandoned for a new segment
    /// (replay then skips the garbage as corruption).
    fn rollback(&mut self, len: u64) {
        let file = &mut self.head.file;
        let r = file
            .set_len(len)
            .and_then(|()| file.seek(SeekFrom::Start(len)))
            .and_then(|_| file.sync_data());
        match r {
            Ok(()) => self.dirty = false,
            Err(e) => {
                tracing::error!(
                    segment = %self.head.path.display(),
                    error = %e,
                    "cannot cut the journal segment back after a failed write; starting a new segment"
                );
                self.head.broken = true;
            }
        }
    }

    /// Closes the head (synced) and starts the next segment with a snapshot.
    fn roll(&mut self) -> Result<(), JournalError> {
        if self.dirty {
            self.sync_head()?;
        }
        let snapshot = self.index.lock().state.snapshot();
        let head = Head::create(&self.dir, self.head.id + 1, &snapshot, &self.stats)?;
        self.index.lock().state.segments.insert(
            head.id,
            SegInfo {
                size: head.len,
                ..SegInfo::default()
            },
        );
        self.head = head;
        self.dirty = false;
        Ok(())
    }

    fn interval_sync(&mut self) {
        if let FsyncPolicy::Interval(every) = self.policy {
            if self.dirty && self.last_sync.elapsed() >= every {
                if let Err(e) = self.sync_head() {
                    self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        error = %e,
                        "journal sync failed: data receipted in the last interval may be lost on power failure"
                    );
                }
            }
        }
    }

    /// Syncs whatever is unsynced (shutdown).
    fn finish(&mut self) -> Result<(), JournalError> {
        if self.dirty {
            self.sync_head()
        } else {
            Ok(())
        }
    }

    fn next_wakeup(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut wake = None;
        if let (FsyncPolicy::Interval(every), true) = (self.policy, self.dirty) {
            wake = Some((self.last_sync + every).saturating_duration_since(now));
        }
        if self.compaction_candidate(false).is_some() {
            let at = self
                .compact_backoff_until
                .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
            wake = Some(wake.map_or(at, |w: Duration| w.min(at)));
        }
        wake
    }

    /// Deletes the oldest segments while they hold no live message (never the head).
    fn delete_dead_segments(&mut self) {
        loop {
            let oldest = {
                let index = self.index.lock();
                match index.state.segments.iter().next() {
                    Some((&oldest, info))
                        if oldest != self.head.id
                            && info.live_count == 0
                            && !self.stuck.contains(&oldest) =>
                    {
                        oldest
                    }
                    _ => break,
                }
            };
            // Whatever made it dead (acks, compaction copies) must be on disk first.
            if self.dirty {
                if let Err(e) = self.sync_head() {
                    tracing::warn!(error = %e, "journal sync before segment deletion failed");
                    return;
                }
            }
            let path = self.dir.join(segment::file_name(oldest));
            // No live message is in it, so no reader can look it up any more; one that already
            // holds its handle keeps reading the unlinked file.
            self.index.lock().files.remove(&oldest);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::error!(segment = %path.display(), error = %e, "cannot delete journal segment");
                    self.stuck.insert(oldest);
                    return;
                }
            }
            if self
                .compact_file
                .as_ref()
                .is_some_and(|(id, _)| *id == oldest)
            {
                self.compact_file = None;
            }
            self.index.lock().state.segments.remove(&oldest);
            // One at a time, so a crash can never keep an older segment and lose a newer one.
            if let Err(e) = segment::sync_dir(&self.dir) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "journal directory sync failed");
            }
        }
    }

    /// The oldest segment if compacting it is worth it: more than two segments, and the bytes
    /// it would free (it and the dead segments right after it) are at least `COMPACT_GAIN`
    /// times what it would rewrite (its live enqueue records plus a snapshot).
    fn compaction_candidate(&self, respect_backoff: bool) -> Option<u64> {
        if respect_backoff
            && self
                .compact_backoff_until
                .is_some_and(|t| Instant::now() < t)
        {
            return None;
        }
        let index = self.index.lock();
        if index.state.segments.len() <= 2 {
            return None;
        }
        let mut iter = index.state.segments.iter();
        let (&oldest, info) = iter.next()?;
        if oldest == self.head.id || info.live_count == 0 || self.stuck.contains(&oldest) {
            return None;
        }
        let mut freed = info.size;
        for (&id, seg) in iter {
            if id == self.head.id || seg.live_count > 0 {
                break;
            }
            freed += seg.size;
        }
        let cost = info.live_bytes + self.head.base_len + segment::HEADER_LEN as u64;
        (freed >= COMPACT_GAIN * cost).then_some(oldest)
    }

    /// Re-appends a bounded part of the oldest segment's live messages at the head.
    fn compact_pass(&mut self) {
        let Some(oldest) = self.compaction_candidate(true) else {
            return;
        };
        self.compact_backoff_until = None;
        let offsets: Vec<u64> = match self.index.lock().state.segments.get(&oldest) {
            Some(info) => info
                .live_entries
                .keys()
                .copied()
                .take(COMPACT_PASS_ENTRIES)
                .collect(),
            None => return,
        };
        let mut records = Vec::new();
        let mut read = 0u64;
        for offset in offsets {
            let payload = match self.read_entry(oldest, offset) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(
                        segment = oldest,
                        offset,
                        error = %e,
                        "cannot read a live entry for compaction; leaving the segment in place"
                    );
                    self.stuck.insert(oldest);
                    return;
                }
            };
            read += payload.len() as u64;
            let batch = match record::decode_payload(&payload) {
                Ok(Payload::Batch { records, .. }) => records,
                Ok(Payload::Snapshot(_)) | Err(_) => {
                    tracing::error!(
                        segment = oldest,
                        offset,
                        "live entry no longer decodes; leaving the segment in place"
                    );
                    self.stuck.insert(oldest);
                    return;
                }
            };
            for rec in batch {
                if let Record::Enqueue { queue, mut msg } = rec {
                    let Some(loc) = self.index.lock().state.loc(&queue, msg.seq).copied() else {
                        continue;
                    };
                    if loc.segment == oldest && loc.entry_offset == offset {
                        msg.redelivery_count = loc.redelivery_count;
                        records.push(Record::Enqueue { queue, msg });
                    }
                }
            }
            if read >= COMPACT_PASS_BYTES {
                break;
            }
        }
        if records.is_empty() {
            tracing::error!(
                segment = oldest,
                "journal index and segment disagree; leaving the segment in place"
            );
            self.stuck.insert(oldest);
            return;
        }
        let moved = records.len() as u64;
        let mut entry = segment::begin_entry(record::estimate_batch(&records));
        let mut sizes = Vec::with_capacity(records.len());
        record::encode_batch(&mut entry, &records, &mut sizes);
        if segment::seal_entry(&mut entry).is_err() {
            self.stuck.insert(oldest);
            return;
        }
        let len = entry.len() as u64;
        let pending = Pending {
            entry,
            records,
            sizes,
            done: Done::Nobody,
        };
        if self.must_roll(0, len) {
            if let Err(e) = self.roll() {
                tracing::warn!(error = %e, "journal compaction postponed");
                self.compact_backoff_until = Some(Instant::now() + COMPACT_BACKOFF);
                return;
            }
        }
        if self.commit_chunk(vec![pending]) {
            self.stats
                .compacted_messages
                .fetch_add(moved, Ordering::Relaxed);
        } else {
            self.compact_backoff_until = Some(Instant::now() + COMPACT_BACKOFF);
        }
    }

    /// Reads and verifies the payload of the entry at `offset` of segment `id`.
    fn read_entry(&mut self, id: u64, offset: u64) -> io::Result<Vec<u8>> {
        if self.compact_file.as_ref().is_none_or(|(cur, _)| *cur != id) {
            let file = File::open(self.dir.join(segment::file_name(id)))?;
            self.compact_file = Some((id, file));
        }
        let Some((_, file)) = self.compact_file.as_ref() else {
            return Err(io::Error::other("no segment open"));
        };
        segment::read_entry_at(file, offset)
    }

    fn publish(&self) {
        let s = &self.stats;
        let index = self.index.lock();
        let state = &index.state;
        s.segments
            .store(state.segments.len() as u64, Ordering::Relaxed);
        s.bytes_on_disk.store(
            state.segments.values().map(|seg| seg.size).sum(),
            Ordering::Relaxed,
        );
        s.live_messages.store(state.live_total, Ordering::Relaxed);
    }
}
