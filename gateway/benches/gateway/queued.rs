//! RSS per queued connection (issue 15): the gateway child with the region
//! login queue on and a budget of 100 slots; 100 warm-up sessions fill it, then
//! N more clients log in announcing queue support and wait in the queue
//! (answering every `Queued` with a `Ping`, as a client must to stay under the
//! queued idle timeout). The delta of the child's RSS over those N
//! connections, divided by N, is the gateway's memory per queued connection.

use super::rss::{hold_session, RssRun};
use super::*;

/// The child's queue budget (slots): the warm-up sessions take them all.
pub(super) const QUEUE_BUDGET: u32 = 100;

/// Logs in announcing queue support and holds the place until `stop` closes.
async fn hold_queued(
    client: Arc<Client>,
    addr: SocketAddr,
    credentials: Credentials,
    stop: Arc<Semaphore>,
) -> Result<tokio::task::JoinHandle<()>> {
    let conn = client.connect(addr).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = ControlMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_version: "outpost-bench".into(),
        credentials: Some(credentials),
        accepts_queue: true,
        ..Default::default()
    });
    send.write_all(&hello.encode()).await?;
    match ControlMsg::decode(&read_frame(&mut recv).await?)? {
        ControlMsg::Queued(_) => {}
        other => bail!("expected Queued, got {other:?}"),
    }
    Ok(tokio::spawn(async move {
        let stopped = stop.acquire();
        tokio::pin!(stopped);
        let mut nonce = 0;
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                frame = read_frame(&mut recv) => match frame.map(|f| ControlMsg::decode(&f)) {
                    Ok(Ok(ControlMsg::Queued(_))) => {
                        nonce += 1;
                        if send.write_all(&ControlMsg::Ping { nonce }.encode()).await.is_err() {
                            eprintln!("  queued connection lost");
                            break;
                        }
                    }
                    Ok(Ok(_)) => {}
                    _ => {
                        eprintln!("  queued connection lost");
                        break;
                    }
                }
            }
        }
        conn.close(0u32.into(), b"bench queued done");
    }))
}

pub(super) async fn queued_run(
    client: &Arc<Client>,
    data: &Path,
    certs: &Path,
    queued: usize,
    concurrency: usize,
) -> Result<RssRun> {
    let warmup = QUEUE_BUDGET as usize;
    let total = warmup + queued;
    // Accounts first, in a gateway without the queue (see `rss_run`).
    let prep = Server::spawn(Kind::Gateway, data, certs, false).await?;
    let (c, addr) = (client.clone(), prep.addr);
    let results = bounded(total, concurrency, move |i| {
        let c = c.clone();
        async move {
            let conn = c.connect(addr).await?;
            login(&conn, device("queued", i)).await?;
            conn.close(0u32.into(), b"account created");
            Ok(())
        }
    })
    .await;
    let errors = count_errors(&results, "queued account creation");
    prep.stop().await;
    if errors > 0 {
        bail!("{errors} accounts could not be created");
    }
    let server = Server::spawn_with(Kind::Gateway, data, certs, &[QUEUE_ENV]).await?;
    let stop = Arc::new(Semaphore::new(0));
    let (c, s, addr) = (client.clone(), stop.clone(), server.addr);
    let warm = bounded(warmup, concurrency, move |i| {
        // Lost warm-up sessions are not counted here: the queued figure's
        // baseline is taken after the warm-up, whatever it holds.
        let lost = Arc::new(AtomicUsize::new(0));
        hold_session(
            c.clone(),
            addr,
            Kind::Gateway,
            device("queued", i),
            s.clone(),
            lost,
        )
    })
    .await;
    let mut errors = count_errors(&warm, "queued warm-up");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline_kib = server.rss_kib_settled().await?;
    let t0 = Instant::now();
    let (c, s) = (client.clone(), stop.clone());
    let held = bounded(queued, concurrency, move |i| {
        hold_queued(c.clone(), addr, device("queued", warmup + i), s.clone())
    })
    .await;
    let held_errors = count_errors(&held, "queued connections");
    errors += held_errors;
    let opened_in = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_kib = server.rss_kib_settled().await?;
    eprintln!(
        "  queued: {queued} connections in {:.1} s, RSS {baseline_kib} → {after_kib} KiB",
        opened_in.as_secs_f64()
    );
    stop.close();
    for h in warm.into_iter().chain(held).flatten() {
        let _ = h.await;
    }
    server.stop().await;
    Ok(RssRun {
        baseline_kib,
        after_kib,
        sessions: queued - held_errors,
        errors,
    })
}
