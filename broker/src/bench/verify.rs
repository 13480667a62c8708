//! Exactly-once and per-producer order checks.
//!
//! Every SEND carries `bench-producer:P` and `bench-seq:N` (N counts from 0 per producer). A
//! [`Tracker`] per consumer records, per producer, a bitmap of the seqs it saw and the last seq:
//! a seq not above the last is out of order, a seq already in the bitmap a duplicate. Competing
//! consumers of one queue each see an increasing subsequence of every producer; their trackers
//! are merged (bitmaps or-ed, overlaps counted as duplicates) and the union must be complete.
//! Topic subscribers must each see everything, so each tracker is checked alone.

/// What one consumer (or the union of several) saw.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    producers: Vec<ProducerTrack>,
    /// MESSAGE frames without the bench headers, or from another run.
    pub foreign: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub received: u64,
}

#[derive(Clone, Debug, Default)]
struct ProducerTrack {
    seen: Vec<u64>,
    last: Option<u64>,
    count: u64,
}

/// The verdict against what the producers sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub missing: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub foreign: u64,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.missing == 0 && self.duplicates == 0 && self.out_of_order == 0
    }

    fn add(&mut self, o: Verdict) {
        self.missing += o.missing;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        self.foreign += o.foreign;
    }
}

impl Tracker {
    pub fn new(producers: usize) -> Self {
        Tracker {
            producers: vec![ProducerTrack::default(); producers],
            ..Tracker::default()
        }
    }

    /// Records one message from producer `p` with sequence `seq`.
    pub fn record(&mut self, p: usize, seq: u64) {
        self.received += 1;
        let Some(t) = self.producers.get_mut(p) else {
            self.foreign += 1;
            return;
        };
        let word = (seq / 64) as usize;
        if word >= t.seen.len() {
            let want = (word + 1).max(t.seen.len() * 2);
            t.seen.resize(want, 0);
        }
        let bit = 1u64 << (seq % 64);
        if t.seen[word] & bit != 0 {
            self.duplicates += 1;
        } else {
            t.seen[word] |= bit;
            t.count += 1;
        }
        if t.last.is_some_and(|last| seq <= last) {
            self.out_of_order += 1;
        }
        t.last = Some(seq);
    }

    pub fn foreign(&mut self) {
        self.received += 1;
        self.foreign += 1;
    }

    /// Or-s `other` into `self`; a seq both saw is a duplicate (a queue delivered it twice).
    pub fn merge(&mut self, other: &Tracker) {
        self.received += other.received;
        self.foreign += other.foreign;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        for (mine, theirs) in self.producers.iter_mut().zip(&other.producers) {
            if mine.seen.len() < theirs.seen.len() {
                mine.seen.resize(theirs.seen.len(), 0);
            }
            for (a, b) in mine.seen.iter_mut().zip(&theirs.seen) {
                self.duplicates += u64::from((*a & *b).count_ones());
                *a |= *b;
            }
            mine.count = mine.seen.iter().map(|w| u64::from(w.count_ones())).sum();
        }
    }

    /// Checks that producer `p` sent seqs `0..sent[p]` and all of them were seen.
    pub fn verdict(&self, sent: &[u64]) -> Verdict {
        let mut v = Verdict {
            duplicates: self.duplicates,
            out_of_order: self.out_of_order,
            foreign: self.foreign,
            missing: 0,
        };
        for (p, &n) in sent.iter().enumerate() {
            let got = self.producers.get(p).map(|t| {
                // Only seqs below n count: anything above was never sent (it would be foreign).
                let full = (n / 64) as usize;
                let mut c: u64 = t
                    .seen
                    .iter()
                    .take(full)
                    .map(|w| u64::from(w.count_ones()))
                    .sum();
                if n % 64 != 0 {
                    if let Some(w) = t.seen.get(full) {
                        c += u64::from((w & ((1u64 << (n % 64)) - 1)).count_ones());
                    }
                }
                c
            });
            v.missing += n - got.unwrap_or(0).min(n);
        }
        v
    }
}

/// Union of competing consumers of one queue.
pub fn verify_queue(trackers: &[Tracker], sent: &[u64]) -> Verdict {
    let mut union = Tracker::new(sent.len());
    for t in trackers {
        union.merge(t);
    }
    union.verdict(sent)
}

/// Every topic subscriber alone.
pub fn verify_topic(trackers: &[Tracker], sent: &[u64]) -> Verdict {
    let mut v = Verdict::default();
    for t in trackers {
        v.add(t.verdict(sent));
    }
    v
}

/// Parses a decimal without allocating; `None` for anything else.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_in_order_stream_verifies() {
        let mut t = Tracker::new(2);
        for s in 0..100 {
            t.record(0, s);
            t.record(1, s);
        }
        assert!(t.verdict(&[100, 100]).ok());
        assert_eq!(t.verdict(&[101, 100]).missing, 1);
    }

    #[test]
    fn gaps_dups_and_reordering_are_counted() {
        let mut t = Tracker::new(1);
        for s in [0, 1, 3, 3, 2] {
            t.record(0, s);
        }
        let v = t.verdict(&[5]);
        assert_eq!(v.missing, 1);
        assert_eq!(v.duplicates, 1);
        assert_eq!(v.out_of_order, 2);
        assert!(!v.ok());
    }

    #[test]
    fn competing_consumers_union() {
        let (mut a, mut b) = (Tracker::new(1), Tracker::new(1));
        for s in 0..1000u64 {
            if s % 3 == 0 {
                a.record(0, s);
            } else {
                b.record(0, s);
            }
        }
        assert!(verify_queue(&[a.clone(), b.clone()], &[1000]).ok());
        b.record(0, 999);
        assert_eq!(verify_queue(&[a.clone(), b], &[1000]).duplicates, 1);
        // A topic subscriber that saw only a third misses the rest.
        assert_eq!(verify_topic(&[a], &[1000]).missing, 666);
    }

    #[test]
    fn parses_decimals() {
        assert_eq!(parse_u64(b"12345"), Some(12345));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1x"), None);
    }
}
