//! Establishing a session: concurrent QUIC handshakes to every configured
//! gateway, ranking by measured round-trip time, then the login (`login.rs`)
//! at the best gateway that accepts: `Welcome`, or a wait in the region's
//! queue there, or `Reject` (the next gateway is tried).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use outpost_schema::{ErrorCode, Hello, Welcome};
use quinn::{Endpoint, RecvStream, SendStream};

use crate::config::ClientConfig;
use crate::error::{is_fatal_reject, ClientError};
use crate::events::EventHub;
use crate::login::{login, wait_admitted, Answer};
use crate::queue::QueueWait;
use crate::socket::KillSwitchSocket;
use crate::tls::{alpn_ok, endpoint_config_for};

/// The endpoint a connection runs on: the client's own (closed with the
/// connection) or one shared with other clients (never closed by the SDK).
#[derive(Clone, Debug)]
pub(crate) struct DialEndpoint {
    endpoint: Endpoint,
    shared: bool,
}

impl DialEndpoint {
    /// Closes an own endpoint; a shared one stays open for its other clients.
    pub fn close(&self, code: quinn::VarInt, reason: &[u8]) {
        if !self.shared {
            self.endpoint.close(code, reason);
        }
    }

    /// Waits until an own endpoint has sent its last packets (a shared one
    /// keeps running, so there is nothing to wait for).
    pub async fn wait_idle(&self) {
        if !self.shared {
            self.endpoint.wait_idle().await;
        }
    }
}

/// Silences the client's own UDP socket (test hook); no-op on a shared endpoint.
#[derive(Clone, Debug)]
pub(crate) struct KillSwitch(Option<Arc<KillSwitchSocket>>);

impl KillSwitch {
    /// From now on nothing leaves the client's own socket.
    pub fn kill(&self) {
        if let Some(s) = &self.0 {
            s.kill();
        }
    }
}

/// A logged-in connection, ready to be driven by the session.
pub(crate) struct Established {
    pub endpoint: DialEndpoint,
    pub socket: KillSwitch,
    pub conn: quinn::Connection,
    pub gateway: SocketAddr,
    pub welcome: Welcome,
    /// Negotiated maximum frame size (bytes of FlatBuffer).
    pub max_frame: u32,
    pub ctrl_send: SendStream,
    pub ctrl_recv: RecvStream,
}

/// Orders candidate gateways by measured RTT, fastest first; ties keep the
/// configured order. Input: `(index in the gateway list, rtt)`.
pub fn rank_by_rtt(measured: &[(usize, Duration)]) -> Vec<usize> {
    let mut v = measured.to_vec();
    v.sort_by_key(|&(i, rtt)| (rtt, i));
    v.into_iter().map(|(i, _)| i).collect()
}

/// Chooses the error to report when no gateway accepted: a fatal rejection
/// (credentials, version) first, then the retryable rejection with the
/// shortest `retry_after`, then the last connect error.
pub(crate) fn pick_error(errors: Vec<ClientError>) -> ClientError {
    let fatal = errors
        .iter()
        .find(|e| matches!(e, ClientError::Rejected { code, .. } if is_fatal_reject(*code)));
    if let Some(e) = fatal {
        return e.clone();
    }
    let rejected = errors
        .iter()
        .filter(|e| matches!(e, ClientError::Rejected { .. }))
        .min_by_key(|e| e.retry_after().unwrap_or_default());
    if let Some(e) = rejected {
        return e.clone();
    }
    errors
        .into_iter()
        .last()
        .unwrap_or_else(|| ClientError::Connect("no gateway configured".into()))
}

/// What a dial needs: the client's configuration and its QUIC settings.
pub(crate) struct Dial<'a> {
    pub config: &'a ClientConfig,
    pub quinn_cfg: &'a quinn::ClientConfig,
}

/// Handshakes with every gateway concurrently, then logs in at the fastest one
/// that accepts (the gateway `wait` names as the last one used comes last).
/// Losers are closed. The request timeout bounds each handshake and each
/// login's first answer; a queued login then waits for admission
/// ([`wait_admitted`]). With a shared endpoint in the config, connects on it
/// instead of binding a socket.
pub(crate) async fn dial_and_login(
    dial: &Dial<'_>,
    hello: &Hello,
    wait: &mut QueueWait,
    events: &EventHub,
) -> Result<Established, ClientError> {
    let config = dial.config;
    let gateways = &config.gateways;
    let (proposed_max_frame, timeout) = (config.max_frame_size, config.request_timeout);
    let first = *gateways
        .first()
        .ok_or_else(|| ClientError::Config("no gateway addresses given".into()))?;
    let (endpoint, socket) = open_endpoint(config, first)?;
    let (mut conns, order, mut errors) = handshake_all(&endpoint.endpoint, dial, wait).await;

    let chosen = login_in_order(&mut conns, order, hello, proposed_max_frame, timeout, &mut errors).await;
    let Some((i, conn, (answer, ctrl_send, ctrl_recv))) = chosen else {
        endpoint.close(ErrorCode::Unspecified.0.into(), b"");
        return Err(pick_error(errors));
    };
    let gateway = gateways[i];
    let (welcome, max_frame, ctrl_send, ctrl_recv) = match answer {
        Answer::Welcome(w, max_frame) => (w, max_frame, ctrl_send, ctrl_recv),
        Answer::Queued(q) => {
            events.emit(wait.on_queued(&q, gateway, tokio::time::Instant::now()));
            let streams = (ctrl_send, ctrl_recv);
            match wait_admitted(
                &conn,
                gateway,
                streams,
                wait,
                events,
                &config.queue,
                proposed_max_frame,
            )
            .await
            {
                Ok(admitted) => admitted,
                Err(e) => {
                    conn.close(ErrorCode::Unspecified.0.into(), b"");
                    endpoint.close(ErrorCode::Unspecified.0.into(), b"");
                    return Err(e);
                }
            }
        }
    };
    Ok(Established {
        endpoint,
        socket,
        conn,
        gateway,
        welcome,
        max_frame,
        ctrl_send,
        ctrl_recv,
    })
}

/// Logs in on the handshaken connections in `order` until one answers
/// (Welcome or Queued); closes every other connection, and records each
/// refusal in `errors`.
async fn login_in_order(
    conns: &mut [Option<quinn::Connection>],
    order: Vec<usize>,
    hello: &Hello,
    proposed_max_frame: u32,
    timeout: std::time::Duration,
    errors: &mut Vec<ClientError>,
) -> Option<(
    usize,
    quinn::Connection,
    (Answer, quinn::SendStream, quinn::RecvStream),
)> {
    let mut chosen = None;
    for i in order {
        let Some(conn) = conns[i].take() else { continue };
        if chosen.is_some() {
            conn.close(ErrorCode::Unspecified.0.into(), b"another gateway was selected");
            continue;
        }
        match login(&conn, hello, proposed_max_frame, timeout).await {
            Ok(answer) => chosen = Some((i, conn, answer)),
            Err(e) => {
                match &e {
                    ClientError::Protocol { code, .. } => conn.close(code.0.into(), b"protocol error"),
                    _ => conn.close(ErrorCode::Unspecified.0.into(), b"login failed"),
                }
                errors.push(e);
            }
        }
    }
    chosen
}

/// A failed handshake: a gateway that refused the connection (its receive
/// path is overloaded) is busy, with a `retry_after` of at least a second
/// ([`crate::error::refused`]); anything else is a connect failure.
fn handshake_error(addr: SocketAddr, e: quinn::ConnectionError) -> ClientError {
    match e {
        quinn::ConnectionError::ConnectionClosed(close)
            if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
        {
            crate::error::refused(addr, rand::random::<f64>())
        }
        other => ClientError::Connect(format!("{addr}: {other}")),
    }
}

/// Handshakes with every gateway of the config concurrently on `endpoint`
/// ([`collect_handshakes`]): the connections by gateway index, the indexes of
/// the established ones fastest first (the gateway `wait` avoids last), and
/// the failures.
async fn handshake_all(
    endpoint: &Endpoint,
    dial: &Dial<'_>,
    wait: &QueueWait,
) -> (Vec<Option<quinn::Connection>>, Vec<usize>, Vec<ClientError>) {
    let config = dial.config;
    let (gateways, server_name, client_cfg) = (&config.gateways, &config.server_name, dial.quinn_cfg);
    let timeout = config.request_timeout;
    let attempts = gateways.iter().enumerate().map(|(i, &addr)| {
        let endpoint = endpoint.clone();
        async move {
            let connecting = endpoint
                .connect_with(client_cfg.clone(), addr, server_name)
                .map_err(|e| ClientError::Connect(format!("{addr}: {e}")))?;
            let conn = tokio::time::timeout(timeout, connecting)
                .await
                .map_err(|_| ClientError::Connect(format!("{addr}: handshake timed out")))?
                .map_err(|e| handshake_error(addr, e))?;
            if !alpn_ok(&conn) {
                conn.close(ErrorCode::Unspecified.0.into(), b"ALPN outpost/1 not selected");
                return Err(ClientError::Connect(format!(
                    "{addr}: server did not select ALPN outpost/1"
                )));
            }
            Ok((i, conn))
        }
    });
    let avoid = wait.avoid();
    let preferred = |(i, _): &(usize, quinn::Connection)| Some(gateways[*i]) != avoid;
    let results = collect_handshakes(attempts, timeout, preferred).await;

    let mut errors = Vec::new();
    let mut conns: Vec<Option<quinn::Connection>> = vec![None; gateways.len()];
    let mut measured = Vec::new();
    for r in results {
        match r {
            Ok((i, conn)) => {
                measured.push((i, conn.rtt()));
                conns[i] = Some(conn);
            }
            Err(e) => errors.push(e),
        }
    }
    let mut order = rank_by_rtt(&measured);
    if let Some(avoid) = avoid {
        // Stable: the others keep their RTT order.
        order.sort_by_key(|&i| gateways[i] == avoid);
    }
    (conns, order, errors)
}

/// The endpoint a dial connects on: the config's shared one, or a new one on
/// its own socket (with the kill switch that lets the SDK simulate a dead
/// network).
fn open_endpoint(
    config: &ClientConfig,
    first: std::net::SocketAddr,
) -> Result<(DialEndpoint, KillSwitch), ClientError> {
    if let Some(e) = config.endpoint.as_ref() {
        let shared = DialEndpoint {
            endpoint: e.clone(),
            shared: true,
        };
        return Ok((shared, KillSwitch(None)));
    }
    let socket = KillSwitchSocket::bind(first).map_err(|e| ClientError::Connect(format!("bind: {e}")))?;
    let runtime = quinn::default_runtime().ok_or_else(|| ClientError::Connect("no tokio runtime".into()))?;
    let endpoint = Endpoint::new_with_abstract_socket(
        endpoint_config_for(&config.gateways),
        None,
        socket.clone(),
        runtime,
    )
    .map_err(|e| ClientError::Connect(format!("endpoint: {e}")))?;
    let own = DialEndpoint {
        endpoint,
        shared: false,
    };
    Ok((own, KillSwitch(Some(socket))))
}

/// Runs the handshakes concurrently. Once the first one succeeds (after `t`),
/// the others get until `2t + 50 ms` to finish: a gateway slower than that
/// would not win on RTT anyway, and an unreachable gateway in the list must
/// not delay every login by a whole timeout. Unfinished handshakes are dropped
/// (which abandons them).
///
/// A success for which `preferred` is false (the gateway a queued login just
/// lost, tried last) does not start that countdown: the others get the whole
/// timeout to be preferred over it.
async fn collect_handshakes<F, T>(
    attempts: impl Iterator<Item = F>,
    timeout: Duration,
    preferred: impl Fn(&T) -> bool,
) -> Vec<Result<T, ClientError>>
where
    F: std::future::Future<Output = Result<T, ClientError>>,
{
    use futures::StreamExt;
    let start = tokio::time::Instant::now();
    let mut pending: futures::stream::FuturesUnordered<F> = attempts.collect();
    let mut results = Vec::new();
    let mut deadline = start + timeout + Duration::from_millis(100);
    let mut counting = false;
    while let Ok(Some(r)) = tokio::time::timeout_at(deadline, pending.next()).await {
        if !counting && r.as_ref().is_ok_and(&preferred) {
            counting = true;
            let grace = start.elapsed() * 2 + Duration::from_millis(50);
            deadline = deadline.min(start + grace);
        }
        results.push(r);
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn ranks_fastest_first_with_stable_ties() {
        assert_eq!(rank_by_rtt(&[]), Vec::<usize>::new());
        assert_eq!(
            rank_by_rtt(&[(0, ms(30)), (1, ms(10)), (2, ms(20))]),
            vec![1, 2, 0]
        );
        assert_eq!(rank_by_rtt(&[(2, ms(5)), (0, ms(5)), (1, ms(1))]), vec![1, 0, 2]);
        // gateways that failed the handshake are simply absent
        assert_eq!(rank_by_rtt(&[(3, ms(7))]), vec![3]);
    }

    #[tokio::test]
    async fn an_unreachable_gateway_does_not_hold_up_the_login() {
        type Fut = std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, ClientError>> + Send>>;
        let attempts: Vec<Fut> = vec![
            Box::pin(async {
                tokio::time::sleep(ms(20)).await;
                Ok(1)
            }),
            Box::pin(futures::future::pending()),
            Box::pin(async {
                tokio::time::sleep(ms(30)).await;
                Ok(2)
            }),
            Box::pin(async { Err(ClientError::Connect("refused".into())) }),
        ];
        let start = std::time::Instant::now();
        let results = collect_handshakes(attempts.into_iter(), Duration::from_secs(10), |_| true).await;
        assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
        let oks: Vec<u32> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
        assert_eq!(oks, vec![1, 2], "the close second still gets measured");
        assert_eq!(results.len(), 3);
    }

    #[tokio::test]
    async fn the_gateway_tried_last_does_not_cut_the_others_short() {
        type Fut = std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, ClientError>> + Send>>;
        let attempts: Vec<Fut> = vec![
            Box::pin(async {
                tokio::time::sleep(ms(10)).await;
                Ok(1)
            }),
            Box::pin(async {
                tokio::time::sleep(ms(300)).await;
                Ok(2)
            }),
        ];
        // 1 is the gateway just lost: 2, far slower, is still waited for.
        let results = collect_handshakes(attempts.into_iter(), Duration::from_secs(10), |v| *v != 1).await;
        let oks: Vec<u32> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
        assert_eq!(oks, vec![1, 2]);
    }

    fn rejected(code: ErrorCode, retry: Option<u64>) -> ClientError {
        ClientError::Rejected {
            code,
            message: String::new(),
            retry_after: retry.map(ms),
        }
    }

    #[test]
    fn picks_the_most_useful_error() {
        let e = pick_error(vec![
            ClientError::Connect("a".into()),
            rejected(ErrorCode::ServerBusy, Some(900)),
            rejected(ErrorCode::Draining, Some(300)),
        ]);
        assert_eq!(e, rejected(ErrorCode::Draining, Some(300)));
        let e = pick_error(vec![
            rejected(ErrorCode::ServerBusy, Some(900)),
            rejected(ErrorCode::BadCredentials, None),
        ]);
        assert_eq!(e, rejected(ErrorCode::BadCredentials, None));
        let e = pick_error(vec![
            ClientError::Connect("a".into()),
            ClientError::Connect("b".into()),
        ]);
        assert_eq!(e, ClientError::Connect("b".into()));
        assert!(matches!(pick_error(vec![]), ClientError::Connect(_)));
    }
}
