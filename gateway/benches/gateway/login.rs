//! Logins per second: handshake → Hello → Welcome → close, for fresh device
//! credentials, device re-logins and session tokens, beside bare quinn's handshake
//! rate; with the server child's CPU time per login and the datagrams exchanged.
//!
//! Paired and interleaved ([`login_pairs`]): one gateway child and one bare-quinn
//! child live for the whole login run, and every gateway phase (one login kind)
//! is paired with a bare-handshake phase run right beside it. Within a round the
//! sequence is bare, fresh, bare, re-login, bare, token; the next round starts
//! with the gateway (fresh, bare, re-login, bare, token, bare), so neither side
//! always goes first. Each pair gives a rate ratio and a CPU ratio (gateway CPU
//! per login / bare CPU per handshake of the same pair); the report is the median
//! of those per-pair ratios, so load that drifts over the run cancels out.
//! Before the first round, untimed phases of bare handshakes against each child
//! (two each, alternating) warm the load generator's endpoint pool and both
//! children.

use super::*;

/// The gateway's login kinds, in the order a round runs them (re-login needs the
/// fresh devices, token logins the fresh logins' session tokens).
pub(super) const GATEWAY_KINDS: [LoginKind; 3] =
    [LoginKind::FreshDevice, LoginKind::DeviceRelogin, LoginKind::Token];

/// One gateway phase and the bare phase run beside it.
#[derive(Clone, Copy, Debug)]
pub(super) struct LoginPair {
    /// Gateway logins/s and server CPU µs per login.
    pub(super) gateway: (f64, f64),
    /// Bare handshakes/s and server CPU µs per handshake.
    pub(super) bare: (f64, f64),
}

impl LoginPair {
    pub(super) fn rate_ratio(&self) -> f64 {
        self.gateway.0 / self.bare.0
    }
    pub(super) fn cpu_ratio(&self) -> f64 {
        self.gateway.1 / self.bare.1
    }
}

/// Every pair of a paired login run, per gateway kind (`GATEWAY_KINDS` order).
pub(super) struct LoginPairs {
    pub(super) pairs: [Vec<LoginPair>; 3],
    pub(super) errors: usize,
    /// How the load generator's client endpoints were set up.
    pub(super) client: &'static str,
}

/// Runs `rounds` rounds of paired, interleaved login phases against one gateway
/// child and one bare child (see the module docs).
pub(super) async fn login_pairs(
    client: &Arc<Client>,
    dir: &Path,
    certs: &Path,
    rounds: usize,
    logins: usize,
    concurrency: usize,
) -> Result<LoginPairs> {
    let bare = Server::spawn(Kind::Bare, &dir.join("bare-login"), certs, false).await?;
    let gateway = Server::spawn(Kind::Gateway, &dir.join("gateway-login"), certs, false).await?;
    eprintln!(
        "login children: gateway pid {}, bare pid {}",
        gateway.pid, bare.pid
    );
    let none = Arc::new(Vec::new());
    let mut out = LoginPairs {
        pairs: [Vec::new(), Vec::new(), Vec::new()],
        errors: 0,
        client: client.login_endpoints(),
    };
    // Warm-up, not counted: a run's first phase pays for building the load
    // generator's pool of client endpoints (logins bind new ones until the
    // first closed connections have drained) and for each child's first touch
    // of its memory. Without it, round 0's first phase (bare quinn's) ran at a
    // fifth of the later rate and CPU-heavier, and that pair favoured the
    // gateway (rate 353–363%, CPU 1.05–1.09× in session 28's runs). One phase
    // per child was not quite enough (round 0's bare phase still ran at 77% of
    // the later ones), so each child gets two, alternating.
    for (name, server) in [("bare", &bare), ("gateway", &gateway)].repeat(2) {
        let w = login_run(
            client,
            server,
            LoginKind::Handshake,
            logins,
            concurrency,
            "warm",
            &none,
        )
        .await;
        eprintln!(
            "warm-up (not counted) {name}: {:.0} handshakes/s, {:.0} µs CPU per handshake",
            w.per_sec, w.server_cpu_us
        );
        out.errors += w.errors;
    }
    for round in 0..rounds {
        let tag = format!("r{round}");
        let mut tokens = none.clone();
        for (k, kind) in GATEWAY_KINDS.into_iter().enumerate() {
            // Futures are lazy: each phase (and its CPU reading) starts when awaited.
            let bare_phase = login_run(
                client,
                &bare,
                LoginKind::Handshake,
                logins,
                concurrency,
                &tag,
                &none,
            );
            let gateway_phase = login_run(client, &gateway, kind, logins, concurrency, &tag, &tokens);
            let (b, g) = if round % 2 == 0 {
                let b = bare_phase.await;
                (b, gateway_phase.await)
            } else {
                let g = gateway_phase.await;
                (bare_phase.await, g)
            };
            if kind == LoginKind::FreshDevice {
                tokens = Arc::new(g.tokens.clone());
            }
            let pair = LoginPair {
                gateway: (g.per_sec, g.server_cpu_us),
                bare: (b.per_sec, b.server_cpu_us),
            };
            eprintln!(
                "round {round} {kind:?}: gateway {:.0}/s, {:.0} µs CPU per login; bare {:.0}/s, {:.0} µs per handshake; ratio {:.0}% rate, {:.2}× CPU",
                g.per_sec,
                g.server_cpu_us,
                b.per_sec,
                b.server_cpu_us,
                100.0 * pair.rate_ratio(),
                pair.cpu_ratio()
            );
            out.errors += g.errors + b.errors;
            out.pairs[k].push(pair);
        }
    }
    gateway.stop().await;
    bare.stop().await;
    Ok(out)
}

/// Prints the paired login table: medians over pairs, per kind.
pub(super) fn print_login_pairs(p: &LoginPairs, concurrency: usize) {
    println!();
    println!(
        "## logins, gateway vs bare quinn 0.11 + third_party patch: paired, interleaved phases ({} pairs per kind, {concurrency} in flight)",
        p.pairs[0].len()
    );
    println!();
    println!(
        "| login kind | gateway logins/s | bare handshakes/s | **gateway / bare (median of pairs)** | ≥ 90%? | server CPU µs per login | per bare handshake | **CPU ratio (median of pairs)** | per-pair rate ratios % | per-pair CPU ratios |"
    );
    println!("|---|---:|---:|---:|---|---:|---:|---:|---|---|");
    let names = [
        "fresh device (creates account)",
        "device re-login",
        "session token",
    ];
    for (name, v) in names.iter().zip(&p.pairs) {
        let col = |f: fn(&LoginPair) -> f64| median(v.iter().map(f).collect());
        let rate = col(|x| x.rate_ratio());
        let cpu = col(|x| x.cpu_ratio());
        println!(
            "| {name} | {:.0} | {:.0} | **{:.0}%** | {} | {:.0} | {:.0} | **{:.2}×** | {} | {} |",
            col(|x| x.gateway.0),
            col(|x| x.bare.0),
            100.0 * rate,
            if rate >= 0.9 { "yes" } else { "no" },
            col(|x| x.gateway.1),
            col(|x| x.bare.1),
            cpu,
            v.iter()
                .map(|x| format!("{:.0}", 100.0 * x.rate_ratio()))
                .collect::<Vec<_>>()
                .join(", "),
            v.iter()
                .map(|x| format!("{:.2}", x.cpu_ratio()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!();
    println!("client (both servers alike): {}", p.client);
    let bare_suites = if std::env::var_os(crate::children::BARE_GATEWAY_SUITES_ENV).is_some() {
        "the gateway's order (AES-128-GCM-SHA256 chosen by the server)"
    } else {
        "the client's choice (AES-256-GCM-SHA384); the gateway picks AES-128-GCM-SHA256"
    };
    println!("bare quinn's TLS cipher suite: {bare_suites}");
    println!("targets (issue 21): every kind ≥ 90% of bare quinn's rate; fresh-device CPU ≤ 1.15× a bare handshake");
    if p.errors > 0 {
        println!("\nlogin errors: {}", p.errors);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LoginKind {
    /// Bare quinn: the handshake alone.
    Handshake,
    /// Device credentials used for the first time: creates the account.
    FreshDevice,
    /// Device credentials of an existing account: store reads only.
    DeviceRelogin,
    /// The session token from an earlier Welcome: verified locally.
    Token,
}

pub(super) struct LoginRun {
    pub(super) per_sec: f64,
    /// Server CPU time per successful login (µs): less sensitive to other load
    /// on the machine than the rate, since it counts only the server's own work.
    pub(super) server_cpu_us: f64,
    pub(super) errors: usize,
    pub(super) tokens: Vec<String>,
}

pub(super) async fn login_run(
    client: &Arc<Client>,
    server: &Server,
    kind: LoginKind,
    n: usize,
    concurrency: usize,
    tag: &str,
    tokens: &Arc<Vec<String>>,
) -> LoginRun {
    let (client, tag, tokens) = (client.clone(), tag.to_owned(), tokens.clone());
    let addr = server.addr;
    let cpu_before = server.cpu_us().unwrap_or(0);
    let start = Instant::now();
    let results = bounded(n, concurrency, move |i| {
        let (client, tag, tokens) = (client.clone(), tag.clone(), tokens.clone());
        async move {
            let (conn, _lease) = client.connect_own(addr).await?;
            let token = match kind {
                LoginKind::Handshake => String::new(),
                LoginKind::FreshDevice | LoginKind::DeviceRelogin => {
                    login(&conn, device(&tag, i)).await?.2.session_token
                }
                LoginKind::Token => {
                    let t = tokens.get(i).context("no token")?.clone();
                    login(&conn, Credentials::Token(t)).await?.2.session_token
                }
            };
            // Datagrams each way up to (not including) the close: what a login costs
            // on the wire beside a bare handshake.
            let stats = conn.stats();
            conn.close(0u32.into(), b"bench login done");
            Ok((
                token,
                stats.udp_tx.datagrams,
                stats.udp_rx.datagrams,
                stats.frame_tx,
                stats.frame_rx,
            ))
        }
    })
    .await;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = server.cpu_us().unwrap_or(0).saturating_sub(cpu_before);
    let errors = count_errors(&results, &format!("{kind:?}"));
    let ok = results.len() - errors;
    let (tx, rx) = results
        .iter()
        .flatten()
        .fold((0, 0), |(t, r), x| (t + x.1, r + x.2));
    eprintln!(
        "  {kind:?}: datagrams per connection before close: client→server {:.2}, server→client {:.2}",
        tx as f64 / ok.max(1) as f64,
        rx as f64 / ok.max(1) as f64
    );
    let ok_results: Vec<_> = results.iter().flatten().collect();
    eprintln!(
        "  {kind:?}: frames per connection, client→server {}",
        frames_per_conn(ok_results.iter().map(|x| &x.3))
    );
    eprintln!(
        "  {kind:?}: frames per connection, server→client {}",
        frames_per_conn(ok_results.iter().map(|x| &x.4))
    );
    LoginRun {
        per_sec: ok as f64 / elapsed,
        server_cpu_us: cpu as f64 / ok.max(1) as f64,
        errors,
        tokens: results
            .into_iter()
            .map(|r| r.map(|x| x.0).unwrap_or_default())
            .collect(),
    }
}

/// The frame types a login exchanges, averaged per connection (zero counts left out).
fn frames_per_conn<'a>(stats: impl Iterator<Item = &'a quinn::FrameStats>) -> String {
    let mut n = 0usize;
    let mut sums = [0u64; 10];
    for f in stats {
        n += 1;
        let v = [
            f.acks,
            f.crypto,
            f.handshake_done as u64,
            f.new_connection_id,
            f.retire_connection_id,
            f.stream,
            f.max_streams_bidi,
            f.max_stream_data + f.max_data,
            f.ping,
            f.new_token,
        ];
        for (s, x) in sums.iter_mut().zip(v) {
            *s += x;
        }
    }
    let names = [
        "ack",
        "crypto",
        "handshake_done",
        "new_cid",
        "retire_cid",
        "stream",
        "max_streams_bidi",
        "max_data",
        "ping",
        "new_token",
    ];
    names
        .iter()
        .zip(sums)
        .filter(|(_, s)| *s > 0)
        .map(|(name, s)| format!("{name} {:.2}", s as f64 / n.max(1) as f64))
        .collect::<Vec<_>>()
        .join(", ")
}
