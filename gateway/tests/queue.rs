//! The region login queue over real QUIC (PROTOCOL.md 3.7): three in-process
//! gateways sharing one store, a small region budget, raw clients. Every
//! client is admitted exactly once, in FIFO order; positions never go up; a
//! client that drops mid-queue and comes back through another gateway with its
//! token keeps its place; a client without queue support gets `ServerBusy`.

mod common;

use std::time::Duration;

use anyhow::{bail, Result};
use common::*;
use outpost_schema::{ControlMsg, Credentials, ErrorCode, Hello, PROTOCOL_VERSION};
use tokio::sync::{mpsc, oneshot};

const BUDGET: u32 = 3;
const QUEUED: usize = 8;

#[derive(Debug)]
enum Event {
    Queued { position: u32, token: String },
    Welcome,
    Closed,
}

/// One raw client: Hello (queue support on), then reports every Queued and
/// the Welcome; pings on every update; logs out when `logout` fires, or
/// abandons the connection when `abandon` fires.
async fn client(
    gw: &TestGateway,
    idx: usize,
    credentials: Credentials,
    token: Option<String>,
    events: mpsc::UnboundedSender<(usize, Event)>,
) -> Result<(oneshot::Sender<bool>, tokio::task::JoinHandle<()>)> {
    let conn = raw_connect(gw).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = ControlMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_version: "queue-test".into(),
        credentials: Some(credentials),
        accepts_queue: true,
        queue_token: token,
        ..Default::default()
    });
    send.write_all(&hello.encode()).await?;
    let (end_tx, mut end_rx) = oneshot::channel::<bool>();
    let task = tokio::spawn(async move {
        let mut nonce = 0;
        loop {
            tokio::select! {
                frame = read_raw_frame(&mut recv, 1 << 16) => {
                    let Ok(frame) = frame else {
                        let _ = events.send((idx, Event::Closed));
                        return;
                    };
                    match ControlMsg::decode(&frame) {
                        Ok(ControlMsg::Queued(q)) => {
                            nonce += 1;
                            let _ = send.write_all(&ControlMsg::Ping { nonce }.encode()).await;
                            let _ = events.send((idx, Event::Queued { position: q.position, token: q.queue_token }));
                        }
                        Ok(ControlMsg::Welcome(_)) => { let _ = events.send((idx, Event::Welcome)); }
                        Ok(ControlMsg::Pong { .. }) => {}
                        _ => { let _ = events.send((idx, Event::Closed)); return; }
                    }
                }
                end = &mut end_rx => {
                    // true: logout (code 0, frees the slot); false: abandon (code 1).
                    let code = if end.unwrap_or(true) { 0u32 } else { 1 };
                    conn.close(code.into(), b"bye");
                    return;
                }
            }
        }
    });
    Ok((end_tx, task))
}

async fn next(rx: &mut mpsc::UnboundedReceiver<(usize, Event)>) -> Result<(usize, Event)> {
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(e)) => Ok(e),
        _ => bail!("no event within 10 s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_one_fifo_queue() -> Result<()> {
    let world = World::new().await?;
    let mut gws = Vec::new();
    for _ in 0..3 {
        gws.push(
            world
                .gateway(|c| {
                    c.queue.enabled = true;
                    c.queue.max_sessions = BUDGET;
                    c.queue.max_admissions_per_sec = 100;
                    c.queue.update_interval_ms = 500;
                    c.queue.admit_tick_ms = 50;
                })
                .await?,
        );
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let creds: Vec<Credentials> = (0..BUDGET as usize + QUEUED).map(|_| wire_device()).collect();
    let mut enders = Vec::new();
    // The first BUDGET clients get in at once.
    for (i, c) in creds.iter().enumerate().take(BUDGET as usize) {
        enders.push(Some(client(&gws[i % 3], i, c.clone(), None, tx.clone()).await?.0));
        let (who, e) = next(&mut rx).await?;
        assert!(matches!(e, Event::Welcome) && who == i, "{who} {e:?}");
    }
    // The rest queue, one after the other, round-robin over the gateways.
    let mut tokens = vec![String::new(); creds.len()];
    let mut last_position = vec![u32::MAX; creds.len()];
    for (i, c) in creds.iter().enumerate().skip(BUDGET as usize) {
        enders.push(Some(client(&gws[i % 3], i, c.clone(), None, tx.clone()).await?.0));
        let (who, e) = next(&mut rx).await?;
        let Event::Queued { position, token } = e else {
            bail!("{who}: {e:?}")
        };
        assert_eq!(who, i);
        tokens[i] = token;
        last_position[i] = position;
    }
    // A client without queue support is turned away as before.
    let conn = raw_connect(&gws[0]).await?;
    let (_s, _r, answer) = raw_hello(&conn, Some(wire_device()), None, false).await?;
    match answer {
        ControlMsg::Reject(r) => assert_eq!(r.reason, ErrorCode::ServerBusy),
        other => bail!("expected ServerBusy, got {other:?}"),
    }

    // Client BUDGET+2 drops mid-queue and comes back through another gateway.
    let dropper = BUDGET as usize + 2;
    enders[dropper].take().unwrap().send(false).ok();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let token = Some(tokens[dropper].clone());
    enders[dropper] = Some(
        client(
            &gws[(dropper + 1) % 3],
            dropper,
            creds[dropper].clone(),
            token,
            tx.clone(),
        )
        .await?
        .0,
    );

    // Free one slot at a time (a logout): exactly the head of the queue gets in.
    let mut admitted = Vec::new();
    let mut welcomed = vec![0; creds.len()];
    for (i, w) in welcomed.iter_mut().enumerate().take(BUDGET as usize) {
        *w = 1;
        admitted.push(i);
    }
    let mut leaving = 0;
    while admitted.len() < creds.len() {
        enders[admitted[leaving]].take().unwrap().send(true).ok();
        leaving += 1;
        loop {
            let (who, e) = next(&mut rx).await?;
            match e {
                Event::Queued { position, token } => {
                    assert!(position <= last_position[who], "client {who}: position went up");
                    last_position[who] = position;
                    tokens[who] = token;
                }
                Event::Welcome => {
                    welcomed[who] += 1;
                    admitted.push(who);
                    break;
                }
                Event::Closed => bail!("client {who} was closed"),
            }
        }
    }
    let fifo: Vec<usize> = (0..creds.len()).collect();
    assert_eq!(
        admitted, fifo,
        "admitted in FIFO order, the dropper kept its place"
    );
    assert!(
        welcomed.iter().all(|&n| n == 1),
        "each admitted exactly once: {welcomed:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_sets_the_budget_live_and_pause_holds_everyone() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|c| c.queue.enabled = true).await?;
    let other = world
        .gateway(|c| {
            c.queue.enabled = true;
            c.queue.update_interval_ms = 500;
        })
        .await?;
    let put = http_json(
        gw.admin,
        "PUT",
        "/queue",
        r#"{"max_sessions": 10, "max_admissions_per_sec": 5, "paused": true}"#,
    )?;
    assert!(put.starts_with("HTTP/1.1 200"), "{put}");
    // The other gateway sees the stored budget at its next read.
    let mut status = String::new();
    for _ in 0..40 {
        status = http(other.admin, "GET", "/queue")?;
        if http_body(&status).contains(r#""paused":true"#) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(http_body(&status).contains(r#""max_sessions":10"#), "{status}");
    // Paused: a queue-aware login waits, told so.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _c = client(&other, 0, wire_device(), None, tx).await?;
    match next(&mut rx).await? {
        (_, Event::Queued { position: 0, .. }) => {}
        other => bail!("expected a place at the head, got {other:?}"),
    }
    let bad = http_json(gw.admin, "PUT", "/queue", r#"{"max_sessions": "many"}"#)?;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    Ok(())
}

/// A raw queue-aware login: the connection, its control stream and the
/// gateway's first answer.
async fn hello_queue(
    gw: &TestGateway,
    credentials: Credentials,
    token: Option<String>,
) -> Result<(
    quinn::Connection,
    quinn::SendStream,
    quinn::RecvStream,
    ControlMsg,
)> {
    let conn = raw_connect(gw).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = ControlMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_version: "queue-test".into(),
        credentials: Some(credentials),
        accepts_queue: true,
        queue_token: token,
        ..Default::default()
    });
    send.write_all(&hello.encode()).await?;
    let answer = ControlMsg::decode(&read_raw_frame(&mut recv, 1 << 16).await?)?;
    Ok((conn, send, recv, answer))
}

fn reject_code(answer: &ControlMsg) -> Option<ErrorCode> {
    match answer {
        ControlMsg::Reject(r) => Some(r.reason),
        _ => None,
    }
}

fn queued_token(answer: ControlMsg) -> Result<String> {
    match answer {
        ControlMsg::Queued(q) => Ok(q.queue_token),
        other => bail!("expected Queued, got {other:?}"),
    }
}

/// PROTOCOL.md 3.7 items 9 and 10 over the wire: forged, foreign and replayed
/// queue tokens get their codes; one address holds at most
/// `max_places_per_address` places (the next login from it is `ServerBusy`),
/// but an account it already holds a place for comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tokens_and_addresses_are_refused_with_their_codes() -> Result<()> {
    let world = World::new().await?;
    let gw = world
        .gateway(|c| {
            c.queue.enabled = true;
            c.queue.max_sessions = 1;
            c.queue.update_interval_ms = 500;
            c.queue.admit_tick_ms = 50;
            c.queue.max_places_per_address = 3;
        })
        .await?;
    let holder_conn = raw_connect(&gw).await?;
    let _holder = raw_login(&holder_conn, wire_device()).await?;
    let (a, b, c) = (wire_device(), wire_device(), wire_device());
    let (a_conn, _a_send, mut a_recv, first) = hello_queue(&gw, a.clone(), None).await?;
    let token_a = queued_token(first)?;
    let (_b_conn, _bs, _br, first) = hello_queue(&gw, b.clone(), None).await?;
    let token_b = queued_token(first)?;
    let (c_conn, _cs, _cr, first) = hello_queue(&gw, c.clone(), None).await?;
    let token_c = queued_token(first)?;

    // Forged (a tag that does not verify), garbage, and another account's token.
    let mut forged = token_a.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for (token, what) in [
        (forged, "forged"),
        ("q1.garbage".to_owned(), "garbage"),
        (token_b.clone(), "b's"),
    ] {
        let (_conn, _s, _r, answer) = hello_queue(&gw, a.clone(), Some(token)).await?;
        assert_eq!(
            reject_code(&answer),
            Some(ErrorCode::QueueTokenInvalid),
            "{what} token: {answer:?}"
        );
    }

    // The address holds 3 places (a, b, c): a fourth account is turned away
    // as if it could not queue...
    let (_conn, _s, _r, answer) = hello_queue(&gw, wire_device(), None).await?;
    assert_eq!(reject_code(&answer), Some(ErrorCode::ServerBusy), "{answer:?}");
    // ...while c, dropped, comes back with its token to the same place.
    abandon(&c_conn);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_c2, _cs2, _cr2, answer) = hello_queue(&gw, c.clone(), Some(token_c)).await?;
    assert!(matches!(answer, ControlMsg::Queued(_)), "{answer:?}");

    // Replayed: a is admitted, plays, logs out; its old token names a place
    // that is gone.
    holder_conn.close(0u32.into(), b"logout");
    let welcomed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ControlMsg::decode(&read_raw_frame(&mut a_recv, 1 << 16).await?)? {
                ControlMsg::Welcome(_) => return anyhow::Ok(()),
                ControlMsg::Queued(_) => {}
                other => bail!("a: {other:?}"),
            }
        }
    })
    .await;
    assert!(matches!(welcomed, Ok(Ok(()))), "a admitted: {welcomed:?}");
    a_conn.close(0u32.into(), b"logout");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_conn, _s, _r, answer) = hello_queue(&gw, a.clone(), Some(token_a)).await?;
    assert_eq!(
        reject_code(&answer),
        Some(ErrorCode::QueuePlaceGone),
        "{answer:?}"
    );
    Ok(())
}

/// An expired queue token is `QueueTokenExpired` (a gateway minting 2 s tokens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_queue_token_is_refused_with_its_code() -> Result<()> {
    let world = World::new().await?;
    let gw = world
        .gateway(|c| {
            c.queue.enabled = true;
            c.queue.max_sessions = 0;
            c.queue.update_interval_ms = 500;
            c.queue.place_grace_secs = 2;
            c.queue.token_ttl_secs = 2;
        })
        .await?;
    let a = wire_device();
    let (conn, _s, _r, first) = hello_queue(&gw, a.clone(), None).await?;
    let token = queued_token(first)?;
    abandon(&conn);
    // Expiry counts whole seconds: 2 s of lifetime are over within 3.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let (_conn, _s, _r, answer) = hello_queue(&gw, a, Some(token)).await?;
    assert_eq!(
        reject_code(&answer),
        Some(ErrorCode::QueueTokenExpired),
        "{answer:?}"
    );
    Ok(())
}
