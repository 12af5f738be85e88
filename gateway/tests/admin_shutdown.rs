//! The admin API at shutdown: a request in progress is answered before the
//! gateway's exit (`RunningGateway::wait`, then the runtime's end, as in
//! `main`), an idle kept-alive connection does not hold the exit up, and a
//! connection still open at the end of `admin_timeouts.shutdown_grace_ms` is
//! cut. Raw HTTP/1.1 over `TcpStream`s against a real gateway; the request
//! held in progress is one whose body arrives slowly (a flag's `PUT`), which
//! the gateway must read whole before it answers.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::*;
use outpost_backend::store::AnyStore;
use outpost_gateway::GatewayConfig;

/// A flag body for `PUT /flags/drain-test`.
const FLAG: &str = r#"{"key":"drain-test","default":{"type":"string","value":"plain"},"rules":[]}"#;

/// The head of a `PUT` of [`FLAG`], kept alive.
fn put_flag_head() -> String {
    format!(
        "PUT /flags/drain-test?actor=test&expected_version=0 HTTP/1.1\r\nhost: admin\r\n\
         authorization: Bearer {TEST_ADMIN_TOKEN}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        FLAG.len()
    )
}

/// A gateway run as `main` runs it: on a runtime of its own, told to shut
/// down, awaited, and then its runtime dropped (the process's exit: every
/// task still running is dropped with it).
struct Process {
    admin: SocketAddr,
    stop: mpsc::Sender<()>,
    exited: mpsc::Receiver<Duration>,
}

impl Process {
    fn start(config: GatewayConfig, store: AnyStore) -> Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop, stopped) = mpsc::channel::<()>();
        let (exited_tx, exited) = mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let running = match rt.block_on(outpost_gateway::start_with_store(config, store)) {
                Ok(r) => r,
                Err(e) => return ready_tx.send(Err(e.to_string())).expect("send"),
            };
            ready_tx.send(Ok(running.admin_addr)).expect("send");
            let _ = stopped.recv();
            let start = Instant::now();
            running.handle().shutdown();
            rt.block_on(running.wait());
            let took = start.elapsed();
            drop(rt);
            let _ = exited_tx.send(took);
        });
        let admin = ready_rx.recv()?.map_err(anyhow::Error::msg)?;
        Ok(Process { admin, stop, exited })
    }

    /// Shuts the gateway down; [`Process::exited`] then says how long its
    /// `wait` took, once its runtime is gone.
    fn shut_down(&self) {
        let _ = self.stop.send(());
    }
}

/// Reads until the server closes; a reset ends the read too.
fn read_all(s: &mut TcpStream) -> Result<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e).context("reading"),
        }
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test]
async fn a_request_in_progress_at_shutdown_is_answered_before_the_exit() -> Result<()> {
    let world = World::new().await?;
    let process = Process::start(world.config(), world.store.clone())?;
    let admin = process.admin;
    let answer = tokio::task::spawn_blocking(move || -> Result<String> {
        let mut s = TcpStream::connect(admin)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let (first, rest) = FLAG.split_at(FLAG.len() / 2);
        s.write_all(put_flag_head().as_bytes())?;
        s.write_all(first.as_bytes())?;
        // The request is in progress (its body half read) when the shutdown
        // begins; the rest arrives well after it.
        std::thread::sleep(Duration::from_millis(300));
        process.shut_down();
        std::thread::sleep(Duration::from_millis(700));
        // A write into a connection the exit cut may fail: what was
        // answered (nothing, then) tells.
        let _ = s.write_all(rest.as_bytes());
        let answer = read_all(&mut s)?;
        // As any client of a `connection: close` answer (the exit would
        // otherwise wait for the lingering close).
        drop(s);
        process
            .exited
            .recv_timeout(Duration::from_secs(30))
            .context("the gateway did not exit")?;
        Ok(answer)
    })
    .await??;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer:?}");
    // The connection ends after it, and says so.
    assert!(answer.contains("connection: close\r\n"), "{answer:?}");
    let (_, body) = answer.split_once("\r\n\r\n").context("no answer head")?;
    let flag: serde_json::Value = serde_json::from_str(body).with_context(|| format!("{answer:?}"))?;
    assert_eq!(flag["version"], 1, "{flag}");
    Ok(())
}

#[tokio::test]
async fn an_idle_kept_alive_connection_does_not_hold_the_exit_up() -> Result<()> {
    let world = World::new().await?;
    let mut config = world.config();
    // Far past what the test allows: only closing idle connections at once
    // (without the 5 s lingering close) meets it.
    config.admin_timeouts.shutdown_grace_ms = 60_000;
    config.admin_timeouts.head_ms = 60_000;
    let process = Process::start(config, world.store.clone())?;
    let admin = process.admin;
    let took = tokio::task::spawn_blocking(move || -> Result<Duration> {
        let mut s = TcpStream::connect(admin)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: admin\r\n\r\n")?;
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf)?;
        let answer = String::from_utf8_lossy(&buf[..n]);
        if !answer.starts_with("HTTP/1.1 200 OK") || !answer.ends_with("ok") {
            bail!("first answer: {answer:?}");
        }
        // Kept alive, idle, neither read nor closed by the client: as a
        // pooled connection of a client busy elsewhere.
        process.shut_down();
        let took = process
            .exited
            .recv_timeout(Duration::from_secs(60))
            .context("the gateway did not exit")?;
        drop(s);
        Ok(took)
    })
    .await??;
    assert!(
        took < Duration::from_secs(3),
        "the gateway's wait took {took:?} with only an idle admin connection open"
    );
    Ok(())
}

#[tokio::test]
async fn a_connection_still_open_at_the_end_of_the_grace_is_cut() -> Result<()> {
    const GRACE: Duration = Duration::from_millis(1_000);
    let world = World::new().await?;
    let mut gw = world
        .gateway(|c| {
            c.admin_timeouts.shutdown_grace_ms = GRACE.as_millis() as u64;
            // A body dripping a byte every 100 ms is within these for a minute.
            c.admin_timeouts.body_idle_ms = 5_000;
            c.admin_timeouts.body_ms = 60_000;
        })
        .await?;
    let admin = gw.admin;
    let (shutdown_tx, shutdown_rx) = mpsc::channel::<()>();
    // A request whose body never ends within the test: a byte every 100 ms;
    // how long after the shutdown a write first failed.
    let client = tokio::task::spawn_blocking(move || -> Result<Option<Duration>> {
        let mut s = TcpStream::connect(admin)?;
        let head = put_flag_head().replace(
            &format!("content-length: {}", FLAG.len()),
            "content-length: 100000",
        );
        s.write_all(head.as_bytes())?;
        s.write_all(b"{")?;
        shutdown_tx.send(())?;
        let since = Instant::now();
        while since.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(100));
            if s.write_all(b" ").is_err() {
                return Ok(Some(since.elapsed()));
            }
        }
        Ok(None)
    });
    shutdown_rx.recv()?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    gw.handle.shutdown();
    gw.running.take().context("running")?.wait().await;
    let took = start.elapsed();
    assert!(
        took >= GRACE - Duration::from_millis(50),
        "the gateway's wait took {took:?}: it did not wait for the request in progress"
    );
    assert!(took < GRACE + Duration::from_secs(3), "the wait took {took:?}");
    let cut = client.await??;
    match cut {
        Some(after) => assert!(after < GRACE + Duration::from_secs(4), "cut after {after:?}"),
        None => bail!("the connection was still open 15 s after the shutdown"),
    }
    Ok(())
}
