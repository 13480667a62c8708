//! Segment files: names, entry framing and scanning (with resynchronisation after corruption).
//!
//! See the module docs of [`crate::storage::journal`] for the format and its invariants.

use std::fs::File;
use std::io;
use std::path::Path;

/// First four bytes of every entry: "STMJ" read as a little-endian u32.
pub(crate) const MAGIC: u32 = u32::from_le_bytes(*b"STMJ");
/// magic u32 | payload length u32 | CRC32C u32
pub(crate) const HEADER_LEN: usize = 12;
/// Largest payload an entry may carry; a header claiming more is corrupt.
pub(crate) const MAX_PAYLOAD: usize = 1 << 30;
/// Smallest valid payload: version byte + kind byte.
const MIN_PAYLOAD: usize = 2;

pub(crate) const SEGMENT_SUFFIX: &str = ".seg";

/// `00000000000000000042.seg`
pub(crate) fn file_name(id: u64) -> String {
    format!("{id:020}{SEGMENT_SUFFIX}")
}

/// The id of a segment file name, or `None` for any other file.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Starts an entry: reserves the header, the payload is appended after it.
pub(crate) fn begin_entry(capacity: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + capacity);
    v.extend_from_slice(&[0u8; HEADER_LEN]);
    v
}

/// Fills in the header of an entry built with [`begin_entry`]. Returns the payload size as the
/// error when it exceeds [`MAX_PAYLOAD`].
pub(crate) fn seal_entry(entry: &mut [u8]) -> Result<(), usize> {
    let payload_len = entry.len() - HEADER_LEN;
    if payload_len > MAX_PAYLOAD {
        return Err(payload_len);
    }
    let crc = crc32c::crc32c(&entry[HEADER_LEN..]);
    entry[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    entry[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    entry[8..12].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn u32_at(buf: &[u8], pos: usize) -> Option<u32> {
    let b = buf.get(pos..pos.checked_add(4)?)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    Some(u32::from_le_bytes(a))
}

/// The payload length announced by a header, if the header itself is plausible.
pub(crate) fn header_payload_len(header: &[u8]) -> Option<usize> {
    if u32_at(header, 0)? != MAGIC {
        return None;
    }
    let len = u32_at(header, 4)? as usize;
    (MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len).then_some(len)
}

/// Verifies a payload against the CRC of its header.
pub(crate) fn payload_matches(header: &[u8], payload: &[u8]) -> bool {
    u32_at(header, 8) == Some(crc32c::crc32c(payload))
}

/// If a complete, CRC-valid entry starts at `pos`, returns its total length (header included).
pub(crate) fn check_entry(buf: &[u8], pos: usize) -> Option<usize> {
    let header = buf.get(pos..pos.checked_add(HEADER_LEN)?)?;
    let len = header_payload_len(header)?;
    let start = pos + HEADER_LEN;
    let payload = buf.get(start..start.checked_add(len)?)?;
    payload_matches(header, payload).then_some(HEADER_LEN + len)
}

/// The offset of the next valid entry strictly after `pos`, if any.
pub(crate) fn resync(buf: &[u8], pos: usize) -> Option<usize> {
    let magic = MAGIC.to_le_bytes();
    let mut p = pos.checked_add(1)?;
    while p + HEADER_LEN <= buf.len() {
        let found = buf[p..].windows(4).position(|w| w == magic)?;
        p += found;
        if check_entry(buf, p).is_some() {
            return Some(p);
        }
        p += 1;
    }
    None
}

/// What scanning one segment's bytes found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Scan {
    /// `(offset, total length)` of every valid entry, in file order.
    pub entries: Vec<(usize, usize)>,
    /// `(offset, length)` of every corrupt region skipped before a later valid entry (and, in a
    /// segment that is not the last, of an invalid region at its end).
    pub corrupt: Vec<(usize, usize)>,
    /// In the last segment: where the torn tail starts (everything from there is invalid and
    /// no valid entry follows). The file should be truncated to this length.
    pub torn_at: Option<usize>,
}

/// Splits a segment's bytes into valid entries. A bad entry is skipped by resynchronising on
/// the next magic number whose entry verifies; when none does, the rest of the file is a torn
/// tail if `last` (the segment being written when the process stopped), corruption otherwise.
pub(crate) fn scan(buf: &[u8], last: bool) -> Scan {
    let mut out = Scan::default();
    let mut pos = 0;
    while pos < buf.len() {
        if let Some(len) = check_entry(buf, pos) {
            out.entries.push((pos, len));
            pos += len;
            continue;
        }
        match resync(buf, pos) {
            Some(next) => {
                out.corrupt.push((pos, next - pos));
                pos = next;
            }
            None => {
                if last {
                    out.torn_at = Some(pos);
                } else {
                    out.corrupt.push((pos, buf.len() - pos));
                }
                break;
            }
        }
    }
    out
}

/// Makes a directory's entries (created, removed files) durable.
/// Reads and verifies the payload of the entry at `offset` of `file` (positional read: the file
/// may be shared between threads).
pub(crate) fn read_entry_at(file: &std::fs::File, offset: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut header = [0u8; HEADER_LEN];
    file.read_exact_at(&mut header, offset)?;
    let len = header_payload_len(&header)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad entry header"))?;
    let mut payload = vec![0u8; len];
    file.read_exact_at(&mut payload, offset + HEADER_LEN as u64)?;
    if !payload_matches(&header, &payload) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad entry checksum",
        ));
    }
    Ok(payload)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(payload: &[u8]) -> Vec<u8> {
        let mut e = begin_entry(payload.len());
        e.extend_from_slice(payload);
        seal_entry(&mut e).unwrap();
        e
    }

    #[test]
    fn names_round_trip_and_reject_strangers() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        for bad in [
            "LOCK",
            "42.seg",
            "0000000000000000004x.seg",
            "00000000000000000042.tmp",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn scan_finds_entries_skips_corruption_and_spots_torn_tails() {
        let a = entry(b"\x01\x01aaaa");
        let b = entry(b"\x01\x01bbbbbbbb");
        let c = entry(b"\x01\x01cc");
        let mut buf = [a.clone(), b.clone(), c.clone()].concat();
        let s = scan(&buf, true);
        assert_eq!(
            s.entries,
            vec![
                (0, a.len()),
                (a.len(), b.len()),
                (a.len() + b.len(), c.len())
            ]
        );
        assert!(s.corrupt.is_empty() && s.torn_at.is_none());

        // corrupt a byte in b's payload: b is skipped, c kept
        buf[a.len() + HEADER_LEN + 3] ^= 0xff;
        let s = scan(&buf, true);
        assert_eq!(s.entries, vec![(0, a.len()), (a.len() + b.len(), c.len())]);
        assert_eq!(s.corrupt, vec![(a.len(), b.len())]);
        assert_eq!(s.torn_at, None);

        // torn c: a tail in the last segment, corruption elsewhere
        let whole = [a.clone(), b.clone(), c.clone()].concat();
        let torn = &whole[..whole.len() - 1];
        let s = scan(torn, true);
        assert_eq!(s.torn_at, Some(a.len() + b.len()));
        assert_eq!(s.entries.len(), 2);
        let s = scan(torn, false);
        assert_eq!(s.torn_at, None);
        assert_eq!(s.corrupt, vec![(a.len() + b.len(), c.len() - 1)]);
    }

    #[test]
    fn impossible_lengths_are_rejected() {
        let mut e = entry(b"\x01\x01xx");
        e[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(check_entry(&e, 0), None);
        e[4..8].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(check_entry(&e, 0), None);
    }
}
