//! Ping RPCs (the report's item 2): closed loops of one request frame → one reply
//! frame on the control stream (gateway) or an echoing bidi stream (bare quinn).

use super::*;

pub(crate) struct PingRun {
    pub(crate) per_sec: f64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) errors: usize,
}

/// `sessions` closed loops of one request frame → one reply frame, for `secs`
/// (after a 1 s warm-up that is not recorded).
pub(crate) async fn ping_run(
    client: &Arc<Client>,
    addr: SocketAddr,
    kind: Kind,
    sessions: usize,
    secs: f64,
    tag: &str,
) -> Result<PingRun> {
    // Set up every session first; only then start the clock.
    let tag = tag.to_owned();
    let c = client.clone();
    let streams = bounded(sessions, 64, move |i| {
        let (c, tag) = (c.clone(), tag.clone());
        async move {
            let conn = c.connect(addr).await?;
            let (send, recv) = match kind {
                Kind::Gateway => {
                    let (s, r, _) = login(&conn, device(&tag, i)).await?;
                    (s, r)
                }
                Kind::Bare => conn.open_bi().await?,
            };
            Ok((conn, send, recv))
        }
    })
    .await;
    let mut ready = Vec::new();
    for s in streams {
        ready.push(s?);
    }
    let warm_until = Instant::now() + Duration::from_secs(1);
    let stop_at = warm_until + Duration::from_secs_f64(secs);
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (i, (conn, mut send, mut recv)) in ready.into_iter().enumerate() {
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            let mut nonce = (i as u64) << 32;
            while Instant::now() < stop_at {
                nonce += 1;
                let frame = ControlMsg::Ping { nonce }.encode();
                let t0 = Instant::now();
                let ok = async {
                    send.write_all(&frame).await?;
                    let reply = read_frame(&mut recv).await?;
                    match kind {
                        Kind::Bare if reply == frame => Ok(()),
                        Kind::Gateway if ControlMsg::decode(&reply)? == (ControlMsg::Pong { nonce }) => {
                            Ok(())
                        }
                        _ => bail!("unexpected reply"),
                    }
                }
                .await;
                if let Err(e) = ok {
                    if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("  ping {kind:?}: {e:#}");
                    }
                    break;
                }
                if t0 >= warm_until {
                    hist.record(t0.elapsed().as_micros().max(1) as u64)
                        .expect("in range");
                }
            }
            conn.close(0u32.into(), b"bench ping done");
            hist
        }));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        total.add(t.await?)?;
    }
    Ok(PingRun {
        per_sec: total.len() as f64 / secs,
        p50_us: total.value_at_quantile(0.50),
        p99_us: total.value_at_quantile(0.99),
        errors: errors.load(Ordering::Relaxed) as usize,
    })
}

/// The ping rows of the gateway-vs-bare table (`ping[0]` bare, `ping[1]` gateway).
pub(crate) fn print_rows(ping: &[Vec<PingRun>; 2], ping_sessions: usize) {
    let col = |k: usize, f: fn(&PingRun) -> f64| -> (f64, Vec<f64>) {
        let v: Vec<f64> = ping[k].iter().map(f).collect();
        (median(v.clone()), v)
    };
    type Pick = fn(&PingRun) -> f64;
    let rows: [(&str, Pick); 3] = [
        ("Ping RPCs/s", |r| r.per_sec),
        ("Ping p50 latency (µs)", |r| r.p50_us as f64),
        ("Ping p99 latency (µs)", |r| r.p99_us as f64),
    ];
    for (name, f) in rows {
        let ((g, gv), (b, bv)) = (col(1, f), col(0, f));
        println!(
            "| {name}, {ping_sessions} sessions | {g:.0} | {b:.0} | {:.0}% | — | {}; {} |",
            100.0 * g / b,
            fmt_runs(&gv),
            fmt_runs(&bv)
        );
    }
    let errs: usize = ping.iter().flatten().map(|r| r.errors).sum();
    if errs > 0 {
        println!("\nping errors: {errs}");
    }
}
