//! Durability: a child process commits transactions on a durable embedded store
//! and prints an ack after each commit returns; the parent kills it with SIGKILL at
//! a random moment, reopens the store and checks that every acknowledged commit is
//! there (and that each commit's two writes are all-or-nothing). Three rounds
//! against the same directory, so recovery of a recovered store is covered too.
//!
//! The child is this test binary itself, re-run with `--ignored --exact
//! durability_child` and `OUTPOST_DURABILITY_DIR` set.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use foundationdb_tuple::Subspace;
use outpost_backend::store::embedded::{EmbeddedConfig, EmbeddedStore};
use outpost_backend::store::{Store, Transaction, TxError};
use rand::Rng;

const DIR_ENV: &str = "OUTPOST_DURABILITY_DIR";
const ROUND_ENV: &str = "OUTPOST_DURABILITY_ROUND";
const CHILD_TASKS: u32 = 8;

fn space() -> Subspace {
    Subspace::from_bytes(b"dur".to_vec())
}

/// The child: commits forever from several tasks, acking each commit on stdout.
#[test]
#[ignore = "run by `acknowledged_commits_survive_sigkill` as its child process"]
fn durability_child() -> anyhow::Result<()> {
    let dir = std::env::var(DIR_ENV).context("only run as the durability test's child")?;
    let round: u32 = std::env::var(ROUND_ENV)?.parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let store = EmbeddedStore::open(EmbeddedConfig::new(dir)).await?;
        let mut tasks = Vec::new();
        for task in 0..CHILD_TASKS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0u32.. {
                    store
                        .run(|tx| async move {
                            let s = space();
                            tx.set(&s.pack(&("k", round, task, i)), &i.to_be_bytes())?;
                            tx.atomic_add(&s.pack(&("count", round)), 1)?;
                            Ok::<_, TxError>(())
                        })
                        .await?;
                    println!("ack {round} {task} {i}");
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        anyhow::Ok(())
    })
}

#[test]
fn acknowledged_commits_survive_sigkill() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let mut rng = rand::thread_rng();
    for round in 0..3u32 {
        let mut child = Command::new(&exe)
            .args(["--ignored", "--exact", "durability_child", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(DIR_ENV, dir.path())
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });

        // Wait for the first ack, then kill at a random moment.
        let mut acked: HashSet<(u32, u32)> = HashSet::new();
        let started = Instant::now();
        let mut first_ack = None;
        let kill_after = Duration::from_millis(rng.gen_range(20..600));
        loop {
            if let Some(t) = first_ack {
                if Instant::now().duration_since(t) >= kill_after {
                    break;
                }
            }
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "child never acknowledged a commit"
            );
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(line) => {
                    if let Some(a) = parse_ack(&line, round)? {
                        acked.insert(a);
                        first_ack.get_or_insert_with(Instant::now);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(e) => bail!("child exited early: {e}"),
            }
        }
        child.kill()?; // SIGKILL
        child.wait()?;
        reader.join().ok();
        // Acks already written to the pipe were acknowledged before the kill.
        for line in rx.try_iter() {
            if let Some(a) = parse_ack(&line, round)? {
                acked.insert(a);
            }
        }

        let rt = tokio::runtime::Runtime::new()?;
        let (present, count) = rt.block_on(async {
            let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).await?;
            store
                .run(|tx| async move {
                    let s = space();
                    let (b, e) = s.subspace(&("k", round)).range();
                    let rows = tx.get_range(&b, &e, None, false).await?;
                    let count = tx
                        .get(&s.pack(&("count", round)))
                        .await?
                        .map(|v| i64::from_le_bytes(v.try_into().unwrap_or([0; 8])))
                        .unwrap_or(0);
                    Ok::<_, TxError>((rows, count))
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
        })?;
        let mut found = HashSet::new();
        for kv in &present {
            let (_, _, task, i): (String, u32, u32, u32) = space().unpack(&kv.key)?;
            ensure!(kv.value == i.to_be_bytes(), "corrupt value for {task}/{i}");
            found.insert((task, i));
        }
        let missing: Vec<_> = acked.difference(&found).collect();
        ensure!(
            missing.is_empty(),
            "round {round}: {} acknowledged commits lost after SIGKILL, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        ensure!(
            count == found.len() as i64,
            "round {round}: counter {count} != {} keys: a commit was torn",
            found.len()
        );
        ensure!(!acked.is_empty(), "no acks in round {round}");
        eprintln!(
            "round {round}: killed after {} acks; {} commits recovered (unacked in flight: {})",
            acked.len(),
            found.len(),
            found.len() - acked.len()
        );
    }
    Ok(())
}

fn parse_ack(line: &str, round: u32) -> anyhow::Result<Option<(u32, u32)>> {
    let Some(rest) = line.strip_prefix("ack ") else {
        return Ok(None); // libtest's own output
    };
    let parts: Vec<u32> = rest
        .split(' ')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad ack line {line:?}"))?;
    ensure!(parts.len() == 3 && parts[0] == round, "bad ack line {line:?}");
    Ok(Some((parts[1], parts[2])))
}
