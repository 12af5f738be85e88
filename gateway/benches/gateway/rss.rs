//! RSS per idle session: the server child's resident memory before and after
//! opening many idle sessions that only heartbeat.

use super::*;

pub(super) struct RssRun {
    pub(super) baseline_kib: u64,
    pub(super) after_kib: u64,
    pub(super) sessions: usize,
    pub(super) errors: usize,
}

impl RssRun {
    pub(super) fn per_session_kib(&self) -> f64 {
        (self.after_kib as f64 - self.baseline_kib as f64) / self.sessions as f64
    }
}

/// Opens one idle session and keeps it alive until `stop` closes: a gateway
/// session pings at the heartbeat interval its Welcome asked for; a bare
/// connection relies on the client's QUIC keep-alive.
pub(super) async fn hold_session(
    client: Arc<Client>,
    addr: SocketAddr,
    kind: Kind,
    credentials: Credentials,
    stop: Arc<Semaphore>,
) -> Result<tokio::task::JoinHandle<()>> {
    let conn = client.connect(addr).await?;
    let control = match kind {
        Kind::Gateway => {
            let (send, recv, w) = login(&conn, credentials).await?;
            Some((send, recv, Duration::from_millis(w.heartbeat_interval_ms.into())))
        }
        Kind::Bare => None,
    };
    Ok(tokio::spawn(async move {
        let stopped = stop.acquire();
        tokio::pin!(stopped);
        match control {
            Some((mut send, mut recv, every)) => {
                let mut nonce = 0;
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        _ = tokio::time::sleep(every) => {
                            nonce += 1;
                            let f = ControlMsg::Ping { nonce }.encode();
                            if send.write_all(&f).await.is_err() || read_frame(&mut recv).await.is_err() {
                                eprintln!("  held session lost");
                                break;
                            }
                        }
                    }
                }
            }
            None => {
                tokio::select! {
                    _ = &mut stopped => {}
                    _ = conn.closed() => eprintln!("  held connection lost"),
                }
            }
        }
        conn.close(0u32.into(), b"bench rss done");
    }))
}

pub(super) async fn rss_run(
    client: &Arc<Client>,
    kind: Kind,
    data: &Path,
    certs: &Path,
    warmup: usize,
    sessions: usize,
    concurrency: usize,
) -> Result<RssRun> {
    let total = warmup + sessions;
    if kind == Kind::Gateway {
        // Create the accounts in a separate gateway process first, so the measured
        // process only reads them: store memory for 10,000 new accounts (memtable,
        // journal) is not session memory.
        let prep = Server::spawn(kind, data, certs, false).await?;
        let c = client.clone();
        let addr = prep.addr;
        let results = bounded(total, concurrency, move |i| {
            let c = c.clone();
            async move {
                let conn = c.connect(addr).await?;
                login(&conn, device("rss", i)).await?;
                conn.close(0u32.into(), b"account created");
                Ok(())
            }
        })
        .await;
        let errors = count_errors(&results, "rss account creation");
        prep.stop().await;
        if errors > 0 {
            bail!("{errors} accounts could not be created");
        }
    }
    let server = Server::spawn(kind, data, certs, false).await?;
    let stop = Arc::new(Semaphore::new(0));
    let open = |range: std::ops::Range<usize>| {
        let (c, stop) = (client.clone(), stop.clone());
        let (start, addr) = (range.start, server.addr);
        bounded(range.len(), concurrency, move |i| {
            let (c, stop) = (c.clone(), stop.clone());
            hold_session(c, addr, kind, device("rss", start + i), stop)
        })
    };
    let warm = open(0..warmup).await;
    let mut errors = count_errors(&warm, "rss warm-up");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline_kib = server.rss_kib_settled().await?;
    let t0 = Instant::now();
    let held = open(warmup..total).await;
    let held_errors = count_errors(&held, "rss sessions");
    errors += held_errors;
    let opened_in = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_kib = server.rss_kib_settled().await?;
    eprintln!(
        "  {kind:?}: opened {} sessions in {:.1} s, RSS {} → {} KiB",
        sessions,
        opened_in.as_secs_f64(),
        baseline_kib,
        after_kib
    );
    stop.close();
    for h in warm.into_iter().chain(held).flatten() {
        let _ = h.await;
    }
    server.stop().await;
    Ok(RssRun {
        baseline_kib,
        after_kib,
        sessions: sessions - held_errors,
        errors,
    })
}
