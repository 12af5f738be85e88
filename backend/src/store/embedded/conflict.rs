//! Conflict resolution for the embedded backend, in the style of FoundationDB's
//! resolvers: each transaction records what it read (point keys and ranges) since
//! its read version; each commit records what it wrote in a bounded log of recent
//! commits. At commit, under the commit lock, a transaction conflicts if any commit
//! newer than its read version wrote a key inside its read set.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::store::StoreError;

/// What a transaction read with conflict-tracking reads.
#[derive(Debug, Default)]
pub(super) struct ReadSet {
    points: Vec<Vec<u8>>,
    /// Half-open `[begin, end)` ranges.
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

impl ReadSet {
    pub(super) fn add_point(&mut self, key: &[u8]) {
        self.points.push(key.to_vec());
    }

    pub(super) fn add_range(&mut self, begin: &[u8], end: &[u8]) {
        if begin < end {
            self.ranges.push((begin.to_vec(), end.to_vec()));
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.points.is_empty() && self.ranges.is_empty()
    }
}

/// What one committed transaction wrote.
#[derive(Debug)]
pub(super) struct CommitRecord {
    pub(super) version: u64,
    pub(super) at: Instant,
    /// Sorted, deduplicated written keys (sets, clears, atomic ops, stamped keys).
    pub(super) points: Vec<Vec<u8>>,
    /// Cleared `[begin, end)` ranges.
    pub(super) ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

impl CommitRecord {
    fn touches_key(&self, key: &[u8]) -> bool {
        self.points.binary_search_by(|p| p.as_slice().cmp(key)).is_ok()
            || self
                .ranges
                .iter()
                .any(|(b, e)| b.as_slice() <= key && key < e.as_slice())
    }

    fn touches_range(&self, begin: &[u8], end: &[u8]) -> bool {
        let first = self.points.partition_point(|p| p.as_slice() < begin);
        if self.points.get(first).is_some_and(|p| p.as_slice() < end) {
            return true;
        }
        self.ranges
            .iter()
            .any(|(b, e)| b.as_slice() < end && begin < e.as_slice())
    }

    fn conflicts_with(&self, reads: &ReadSet) -> bool {
        reads.points.iter().any(|k| self.touches_key(k))
            || reads.ranges.iter().any(|(b, e)| self.touches_range(b, e))
    }
}

/// The recent-commits log, bounded in age and length.
#[derive(Debug)]
pub(super) struct CommitLog {
    records: VecDeque<CommitRecord>,
    /// Highest version dropped from the log: a transaction whose read version is
    /// below it cannot be checked any more and is too old.
    floor: u64,
    max_records: usize,
    max_age: Duration,
}

impl CommitLog {
    pub(super) fn new(max_records: usize, max_age: Duration) -> Self {
        CommitLog {
            records: VecDeque::new(),
            floor: 0,
            max_records,
            max_age,
        }
    }

    /// Checks a transaction that read `reads` at `read_version`.
    pub(super) fn check(&self, read_version: u64, reads: &ReadSet) -> Result<(), StoreError> {
        if reads.is_empty() {
            return Ok(());
        }
        if read_version < self.floor {
            return Err(StoreError::TransactionTooOld);
        }
        // Newest records last; walk back until reaching the read version.
        for record in self.records.iter().rev() {
            if record.version <= read_version {
                break;
            }
            if record.conflicts_with(reads) {
                return Err(StoreError::Conflict);
            }
        }
        Ok(())
    }

    /// Whether a commit newer than `read_version` wrote `key`, looking at
    /// most `max_commits` commits back; `None` when that does not cover every
    /// commit since (more of them, or the log no longer holds them all).
    pub(super) fn written_since(&self, read_version: u64, key: &[u8], max_commits: usize) -> Option<bool> {
        if read_version < self.floor {
            return None;
        }
        let mut newer = self.records.iter().rev().take_while(|r| r.version > read_version);
        for record in newer.by_ref().take(max_commits) {
            if record.touches_key(key) {
                return Some(true);
            }
        }
        match newer.next() {
            None => Some(false),
            Some(_) => None,
        }
    }

    pub(super) fn push(&mut self, record: CommitRecord) {
        let now = record.at;
        self.records.push_back(record);
        while let Some(front) = self.records.front() {
            let too_many = self.records.len() > self.max_records;
            let too_old = now.duration_since(front.at) > self.max_age;
            if !(too_many || too_old) {
                break;
            }
            self.floor = self.floor.max(front.version);
            self.records.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: u64, points: &[&[u8]], ranges: &[(&[u8], &[u8])]) -> CommitRecord {
        let mut points: Vec<Vec<u8>> = points.iter().map(|p| p.to_vec()).collect();
        points.sort();
        CommitRecord {
            version,
            at: Instant::now(),
            points,
            ranges: ranges.iter().map(|(b, e)| (b.to_vec(), e.to_vec())).collect(),
        }
    }

    #[test]
    fn point_and_range_intersections() {
        let mut log = CommitLog::new(100, Duration::from_secs(10));
        log.push(record(5, &[b"b", b"m"], &[(b"x", b"z")]));

        let mut reads = ReadSet::default();
        reads.add_point(b"c");
        assert!(log.check(4, &reads).is_ok());
        reads.add_range(b"c", b"m"); // end exclusive: "m" not inside
        assert!(log.check(4, &reads).is_ok());
        reads.add_point(b"y"); // inside cleared range
        assert!(matches!(log.check(4, &reads), Err(StoreError::Conflict)));
        // Same reads at a read version that already includes the commit: fine.
        assert!(log.check(5, &reads).is_ok());

        let mut r2 = ReadSet::default();
        r2.add_range(b"a", b"c");
        assert!(matches!(log.check(4, &r2), Err(StoreError::Conflict)));
        let mut r3 = ReadSet::default();
        r3.add_range(b"w", b"xa");
        assert!(matches!(log.check(4, &r3), Err(StoreError::Conflict)));
    }

    #[test]
    fn written_since_looks_at_the_newer_commits_only_and_knows_when_it_cannot_tell() {
        let mut log = CommitLog::new(3, Duration::from_secs(10));
        log.push(record(1, &[b"a"], &[]));
        log.push(record(2, &[b"b"], &[(b"x", b"z")]));
        log.push(record(3, &[b"c"], &[]));
        assert_eq!(log.written_since(1, b"b", 10), Some(true));
        assert_eq!(log.written_since(1, b"y", 10), Some(true), "in a cleared range");
        assert_eq!(
            log.written_since(2, b"b", 10),
            Some(false),
            "older than the read version"
        );
        assert_eq!(log.written_since(1, b"a", 10), Some(false));
        assert_eq!(log.written_since(3, b"c", 10), Some(false));
        // Two newer commits, one looked at: it cannot tell (unless found).
        assert_eq!(log.written_since(1, b"a", 1), None);
        assert_eq!(log.written_since(1, b"c", 1), Some(true));
        // Commit 1 dropped (floor 1): read version 0 is no longer covered.
        log.push(record(4, &[b"d"], &[]));
        assert_eq!(log.written_since(0, b"q", 10), None);
        assert_eq!(log.written_since(1, b"q", 10), Some(false));
    }

    #[test]
    fn truncated_log_reports_too_old() {
        let mut log = CommitLog::new(2, Duration::from_secs(10));
        for v in 1..=4 {
            log.push(record(v, &[b"k"], &[]));
        }
        let mut reads = ReadSet::default();
        reads.add_point(b"other");
        assert!(matches!(log.check(1, &reads), Err(StoreError::TransactionTooOld)));
        assert!(log.check(2, &reads).is_ok());
    }
}
