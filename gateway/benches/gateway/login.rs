//! Logins per second: handshake → Hello → Welcome → close, for fresh device
//! credentials, device re-logins and session tokens, beside bare quinn's handshake
//! rate; with the server child's CPU time per login and the datagrams exchanged.

use super::*;

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
            let conn = client.connect(addr).await?;
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
