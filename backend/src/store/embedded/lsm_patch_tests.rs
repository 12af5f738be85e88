//! The patched lsm-tree under fjall (`third_party/lsm-tree.patch`): flushes and
//! compactions build and persist their new version outside the version lock
//! and only install it under it, compactions finish their output tables
//! before taking it, and replaced versions (with the memtables and tables only
//! they still hold) are dropped on a thread of their own.
//!
//! Each test drives flushes (a 256 KiB memtable), and compactions or none, while
//! readers check that no key's value is ever seen to go back or vanish, checks
//! every key's last write, flushes what is left, and reopens the database
//! **without its journal**: what the reopened tree has is only what its
//! persisted version references, so a version built from a stale base,
//! installed over a rotation, or persisted wrongly (or not at all) shows up
//! as a stale or lost value. With the journal, recovery would replay the
//! writes and hide it. How long the runtime stops is measured by
//! `benches/store_stall.rs`, not here.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fjall::compaction::Leveled;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

const WRITERS: u64 = 3;
const KEYS_PER_WRITER: u64 = 400;
/// Keys per write batch: 20 commits per writer per round.
const BATCH: usize = 20;
/// A round (each writer writes each of its keys once, the round in the value)
/// is ~250 KiB: about one flush.
const PADDING: usize = 200;

/// `compact`: leveled compaction as fjall's default has it; otherwise none
/// (an L0 threshold never reached), so that only flushes persist versions.
fn open(dir: &Path, compact: bool) -> anyhow::Result<(Database, Keyspace)> {
    let db = Database::builder(dir).open()?;
    let ks = db.keyspace("t", || {
        let options = KeyspaceCreateOptions::default().max_memtable_size(256 * 1024);
        if compact {
            options
        } else {
            options.compaction_strategy(Arc::new(Leveled::default().with_l0_threshold(u8::MAX)))
        }
    })?;
    Ok((db, ks))
}

fn key(writer: u64, k: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&writer.to_be_bytes());
    key[8..].copy_from_slice(&k.to_be_bytes());
    key
}

fn round_of(value: &[u8]) -> u64 {
    u64::from_be_bytes(value[..8].try_into().expect("8-byte round"))
}

/// The test keyspace's table files now, and the highest table id it ever
/// wrote (ids start at 0 and only grow: flushes and compaction outputs both
/// take one). Its tables folder is the one with the most ids; fjall's own
/// metadata keyspace has another.
fn tables(dir: &Path) -> (usize, u64) {
    fn walk(dir: &Path, folders: &mut Vec<Vec<u64>>) {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, folders);
            } else if dir.file_name() == Some("tables".as_ref()) {
                ids.extend(path.file_name().and_then(|n| n.to_str()?.parse::<u64>().ok()));
            }
        }
        folders.push(ids);
    }
    let mut folders = Vec::new();
    walk(dir, &mut folders);
    let ids = folders.into_iter().max_by_key(Vec::len).unwrap_or_default();
    (ids.len(), ids.iter().copied().max().unwrap_or(0))
}

#[test]
fn many_flushes_and_compactions_under_readers_lose_nothing_and_survive_a_reopen() -> anyhow::Result<()> {
    // 150 rounds write ~45 tables on an idle machine; on a loaded one
    // fjall's workers rotate late, so fewer and larger (7 in one CI run).
    // The writes go on, 50 rounds at a time, until at least 8 exist.
    let plan = Plan {
        rounds: 150,
        more_rounds: 50,
        max_rounds: 600,
        min_highest_table: 8,
    };
    let (live, highest) = run(&plan, true)?;
    // Not vacuous: the writes went through many flushes, and compactions
    // replaced tables (fewer live than were ever written).
    assert!(
        highest >= 8,
        "only {highest} tables were written in {} rounds",
        plan.max_rounds
    );
    assert!(
        live <= highest as usize,
        "{live} live tables, ids up to {highest}: no compaction ran"
    );
    Ok(())
}

/// Without compactions, the flushes' own versions are the only ones
/// persisted: one not persisted, or persisted wrongly, loses its table.
#[test]
fn flushes_alone_persist_every_table_they_install() -> anyhow::Result<()> {
    // Few enough flushes that fjall's write stall (20 tables in L0) is not met
    // (~10 tables idle; at least one during the writes and the last one).
    let plan = Plan {
        rounds: 40,
        more_rounds: 0,
        max_rounds: 40,
        min_highest_table: 1,
    };
    let (live, highest) = run(&plan, false)?;
    assert!(highest >= 1, "only {} table was written", highest + 1);
    assert_eq!(live, highest as usize + 1, "no table was compacted away");
    Ok(())
}

/// How much the writers write: `rounds` rounds, then `more_rounds` at a time
/// while the highest table id on disk is below `min_highest_table`, up to
/// `max_rounds` in all. How many tables a round makes depends on when
/// fjall's workers rotate, which a loaded machine delays; a fixed count of
/// rounds made the tests' not-vacuous checks flaky.
struct Plan {
    rounds: u64,
    more_rounds: u64,
    max_rounds: u64,
    min_highest_table: u64,
}

/// Writers, readers, the checks and the reopen without the journal (see the
/// module docs), for the rounds `plan` asks; returns the live table files
/// and the highest table id written.
fn run(plan: &Plan, compact: bool) -> anyhow::Result<(usize, u64)> {
    let dir = tempfile::tempdir()?;
    let (db, ks) = open(dir.path(), compact)?;
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2u64)
        .map(|r| {
            let (ks, done) = (ks.clone(), done.clone());
            std::thread::spawn(move || -> anyhow::Result<u64> {
                // The newest round this reader saw per key: it may only grow.
                let mut seen = HashMap::<[u8; 16], u64>::new();
                let mut reads = 0u64;
                let mut x = r + 1;
                while !done.load(Ordering::Relaxed) {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let k = key((x >> 33) % WRITERS, (x >> 13) % KEYS_PER_WRITER);
                    match (ks.get(k)?, seen.get(&k)) {
                        (Some(v), last) => {
                            let round = round_of(&v);
                            let last = last.copied().unwrap_or(0);
                            anyhow::ensure!(round >= last, "{k:?} went back from round {last} to {round}");
                            seen.insert(k, round);
                        }
                        (None, Some(last)) => anyhow::bail!("{k:?} vanished after round {last}"),
                        (None, None) => {}
                    }
                    reads += 1;
                }
                Ok(reads)
            })
        })
        .collect();
    // Rounds `start..end` by every writer; the readers run throughout.
    let write = |start: u64, end: u64| -> anyhow::Result<()> {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (db, ks) = (db.clone(), ks.clone());
                std::thread::spawn(move || write_rounds(&db, &ks, w, start..end))
            })
            .collect();
        for w in writers {
            w.join().expect("writer thread")?;
        }
        Ok(())
    };
    let mut rounds = plan.rounds.min(plan.max_rounds);
    write(0, rounds)?;
    while rounds < plan.max_rounds && tables(dir.path()).1 < plan.min_highest_table {
        let end = (rounds + plan.more_rounds.max(1)).min(plan.max_rounds);
        write(rounds, end)?;
        rounds = end;
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader thread")? > 0, "the reader read");
    }
    check_last_writes(&ks, rounds, "before the reopen")?;
    // Everything into tables, so that the journal is not needed. A rotation
    // waits for every sealed memtable's flush only if it rotated something
    // itself, and the active memtable may be empty just after a worker
    // rotated it (its flush still running): a last small write makes sure
    // there is something to rotate. It can still be a worker that rotates it,
    // between the write and ours (a request queued by the last batch): then
    // ours finds an empty memtable and returns at once (seen with a pause
    // after the write; one CI run reopened at a stale round, which this
    // explains). So wait for the flushes here too: a flush releases its
    // sealed memtable only once the version that holds its table is persisted.
    ks.insert(b"sentinel", b"last")?;
    ks.rotate_memtable_and_wait()?;
    wait_for_flushes(&ks)?;
    db.persist(PersistMode::SyncAll)?;
    let tables = tables(dir.path());
    drop((ks, db));
    let journals = remove_journals(dir.path());
    assert!(journals > 0, "no journal file found to remove");

    let (_db, ks) = open(dir.path(), compact)?;
    check_last_writes(&ks, rounds, "after a reopen without the journal")?;
    Ok(tables)
}

/// Returns once `ks` has no sealed memtable left (every one flushed, its
/// table in a persisted version); an error after a minute.
fn wait_for_flushes(ks: &Keyspace) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while ks.sealed_memtable_count() > 0 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{} sealed memtables still unflushed after a minute",
            ks.sealed_memtable_count()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(())
}

/// Writer `w`'s keys, once per round in `rounds`, the round in each value.
fn write_rounds(db: &Database, ks: &Keyspace, w: u64, rounds: std::ops::Range<u64>) -> anyhow::Result<()> {
    for round in rounds {
        // In batches (as the store commits): every commit while the memtable
        // is over its size queues a rotation request to fjall's workers, and
        // with one insert per commit a tiny memtable on a loaded machine
        // filled their queue (1,000) while both workers were rotating; each
        // then blocked sending itself the flush, and fjall deadlocked (seen
        // in CI; fjall 3.1.13's, not the patch's).
        for chunk in (0..KEYS_PER_WRITER).collect::<Vec<_>>().chunks(BATCH) {
            let mut batch = db.batch();
            for &k in chunk {
                let mut value = round.to_be_bytes().to_vec();
                value.resize(8 + PADDING, w as u8);
                batch.insert(ks, key(w, k), value);
            }
            batch.commit()?;
        }
    }
    Ok(())
}

/// Every key holds its writer's last round.
fn check_last_writes(ks: &Keyspace, rounds: u64, when: &str) -> anyhow::Result<()> {
    for w in 0..WRITERS {
        for k in 0..KEYS_PER_WRITER {
            let v = ks
                .get(key(w, k))?
                .ok_or_else(|| anyhow::anyhow!("key {w}/{k} lost {when}"))?;
            anyhow::ensure!(
                round_of(&v) == rounds - 1,
                "key {w}/{k} stale {when}: round {}",
                round_of(&v)
            );
        }
    }
    Ok(())
}

/// Deletes the database's journal files (`*.jnl`); returns how many.
fn remove_journals(dir: &Path) -> usize {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            removed += remove_journals(&path);
        } else if path.extension() == Some("jnl".as_ref()) && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}
