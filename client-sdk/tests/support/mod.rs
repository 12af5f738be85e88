//! A scripted stand-in for the gateway, speaking `outpost/1` over real QUIC on
//! loopback, so the SDK's connect / reconnect / resume logic is tested without
//! transport mocks before (and independently of) the real gateway.
//!
//! Deliberately small: it implements the parts of PROTOCOL.md the SDK relies
//! on, plus knobs to misbehave (reject, GoAway, Kick, stop answering Pings,
//! hold a request, send a garbage frame).

#![allow(dead_code)]

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use outpost_client::{ClientConfig, Credentials, Trust};
use outpost_schema::{
    negotiate_max_frame_size, ChannelKind, ChannelMsg, ControlMsg, ErrorCode, ErrorFrame, FrameHeader,
    GoAway, Hello, Kick, PushBody, Reject, Response, ResponseBody, Welcome, HANDSHAKE_MAX_FRAME_SIZE,
    LENGTH_PREFIX_BYTES, PROTOCOL_VERSION,
};
use quinn::{RecvStream, SendStream};

/// Resume tokens any mock gateway of the "region" accepts.
pub type TokenSet = Arc<Mutex<HashSet<String>>>;

pub struct MockGateway {
    pub addr: SocketAddr,
    pub ca_pem: Vec<u8>,
    pub state: Arc<MockState>,
    endpoint: quinn::Endpoint,
}

#[derive(Default)]
pub struct MockState {
    /// Rejections answered to the next logins, in order.
    pub reject_next: Mutex<VecDeque<(ErrorCode, u32)>>,
    /// Reject every login with this (drain).
    pub reject_all: Mutex<Option<(ErrorCode, u32)>>,
    /// Every Hello received.
    pub hellos: Mutex<Vec<Hello>>,
    pub tokens: TokenSet,
    /// Control streams of live sessions (to send GoAway / Kick).
    pub controls: Mutex<Vec<Arc<tokio::sync::Mutex<SendStream>>>>,
    pub heartbeat_ms: AtomicU64,
    pub silent_pongs: AtomicBool,
    /// New connections to refuse with QUIC CONNECTION_REFUSED before any TLS,
    /// as a gateway whose receive path is behind does.
    pub refuse_next: AtomicU64,
    /// Connections refused so far.
    pub refused: AtomicU64,
    /// Welcome with an empty session token.
    pub no_session_token: AtomicBool,
    /// A `poke` echo request arrived (on any connection and channel):
    /// releases the answer to an `await-poke` one, so that a test sees when
    /// the gateway received a request.
    pub poked: tokio::sync::Notify,
    counter: AtomicU64,
}

impl MockGateway {
    pub async fn start(tokens: TokenSet) -> Result<Self> {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
        let ca_pem = ck.cert.pem().into_bytes();
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)?;
        tls.alpn_protocols = vec![outpost_schema::ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
        let server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse()?)?;
        let addr = endpoint.local_addr()?;
        let state = Arc::new(MockState {
            tokens,
            heartbeat_ms: AtomicU64::new(10_000),
            ..Default::default()
        });
        let ep = endpoint.clone();
        let st = state.clone();
        tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let refuse = st
                    .refuse_next
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if refuse {
                    st.refused.fetch_add(1, Ordering::SeqCst);
                    incoming.refuse();
                    continue;
                }
                let st = st.clone();
                tokio::spawn(async move {
                    if let Ok(conn) = incoming.await {
                        let _ = serve_conn(conn, st).await;
                    }
                });
            }
        });
        Ok(Self {
            addr,
            ca_pem,
            state,
            endpoint,
        })
    }

    pub fn config(&self, device: &str) -> ClientConfig {
        let mut c = ClientConfig::new(
            vec![self.addr],
            Trust::DevCa {
                pem: self.ca_pem.clone(),
            },
            Credentials::Device {
                device_id: device.to_owned(),
                secret: "0123456789abcdef".to_owned(),
            },
        );
        c.request_timeout = Duration::from_secs(5);
        c.reconnect.initial_delay = Duration::from_millis(50);
        c
    }

    pub async fn send_all(&self, msg: ControlMsg) {
        let controls: Vec<_> = self.state.controls.lock().unwrap().clone();
        for c in controls {
            let _ = c.lock().await.write_all(&msg.encode()).await;
        }
    }

    /// Sends `msgs` on every control stream one byte per write, pausing
    /// `pause` between bytes (a frame arrives in many pieces). The stream is
    /// held for a whole frame only, so Pongs still go out between frames.
    pub async fn send_all_split(&self, msgs: &[ControlMsg], pause: Duration) {
        let controls: Vec<_> = self.state.controls.lock().unwrap().clone();
        for msg in msgs {
            for c in &controls {
                let _ = write_split(&mut *c.lock().await, &msg.encode(), pause).await;
            }
        }
    }

    pub async fn goaway_all(&self, reconnect_after_ms: u32) {
        self.send_all(ControlMsg::GoAway(GoAway {
            reason: ErrorCode::Draining,
            reconnect_after_ms,
            message: "drain".into(),
        }))
        .await;
    }

    pub async fn kick_all(&self, reason: ErrorCode) {
        self.send_all(ControlMsg::Kick(Kick {
            reason,
            message: "bye".into(),
        }))
        .await;
    }

    pub fn hellos(&self) -> Vec<Hello> {
        self.state.hellos.lock().unwrap().clone()
    }

    pub fn shutdown(&self) {
        self.endpoint.close(ErrorCode::ShuttingDown.0.into(), b"");
    }
}

/// Writes `frame` one byte per write, pausing `pause` between bytes.
async fn write_split(send: &mut SendStream, frame: &[u8], pause: Duration) -> Result<()> {
    for b in frame {
        send.write_all(std::slice::from_ref(b)).await?;
        tokio::time::sleep(pause).await;
    }
    Ok(())
}

async fn read_frame(r: &mut RecvStream, max: u32) -> Result<Option<Vec<u8>>> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    match r.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(_) => return Ok(None),
    }
    let h = FrameHeader::parse(prefix, max)?;
    let mut buf = vec![0u8; LENGTH_PREFIX_BYTES + h.len as usize];
    buf[..4].copy_from_slice(&prefix);
    r.read_exact(&mut buf[4..]).await?;
    Ok(Some(buf))
}

async fn serve_conn(conn: quinn::Connection, st: Arc<MockState>) -> Result<()> {
    let (send, mut recv) = conn.accept_bi().await?;
    let Some(frame) = read_frame(&mut recv, HANDSHAKE_MAX_FRAME_SIZE).await? else {
        return Ok(());
    };
    let ControlMsg::Hello(hello) = ControlMsg::decode(&frame)? else {
        conn.close(ErrorCode::UnexpectedFrame.0.into(), b"");
        return Ok(());
    };
    st.hellos.lock().unwrap().push(hello.clone());
    let send = Arc::new(tokio::sync::Mutex::new(send));

    let reject = st
        .reject_next
        .lock()
        .unwrap()
        .pop_front()
        .or(*st.reject_all.lock().unwrap());
    if let Some((reason, retry_after_ms)) = reject {
        let msg = ControlMsg::Reject(Reject {
            reason,
            message: "mock says no".into(),
            retry_after_ms,
        });
        let mut s = send.lock().await;
        s.write_all(&msg.encode()).await?;
        let _ = s.finish();
        drop(s);
        tokio::time::sleep(Duration::from_millis(50)).await;
        conn.close(reason.0.into(), b"rejected");
        return Ok(());
    }

    let resumed = hello
        .resume_token
        .as_ref()
        .is_some_and(|t| st.tokens.lock().unwrap().contains(t));
    let n = st.counter.fetch_add(1, Ordering::SeqCst);
    let resume_token = format!("rt-{}-{n}", conn.stable_id());
    st.tokens.lock().unwrap().insert(resume_token.clone());
    let player_id = match &hello.credentials {
        Some(Credentials::Device { device_id, .. }) => format!("player-{device_id}"),
        Some(Credentials::Token(t)) => t.trim_start_matches("session-").to_owned(),
        None => "nobody".into(),
    };
    let max_frame = negotiate_max_frame_size(hello.max_frame_size, 0);
    let welcome = ControlMsg::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        player_id: player_id.clone(),
        resume_token,
        resumed,
        max_frame_size: max_frame,
        heartbeat_interval_ms: st.heartbeat_ms.load(Ordering::SeqCst) as u32,
        idle_timeout_ms: 30_000,
        max_in_flight_per_channel: 4,
        region: "mock-1".into(),
        session_token: if st.no_session_token.load(Ordering::SeqCst) {
            String::new()
        } else {
            format!("session-{player_id}")
        },
        home_region: "mock-1".into(),
    });
    send.lock().await.write_all(&welcome.encode()).await?;
    st.controls.lock().unwrap().push(send.clone());

    // control stream: Ping -> Pong
    let ctl_send = send.clone();
    let ctl_state = st.clone();
    tokio::spawn(async move {
        while let Ok(Some(f)) = read_frame(&mut recv, max_frame).await {
            if let Ok(ControlMsg::Ping { nonce }) = ControlMsg::decode(&f) {
                if !ctl_state.silent_pongs.load(Ordering::SeqCst) {
                    let _ = ctl_send
                        .lock()
                        .await
                        .write_all(&ControlMsg::Pong { nonce }.encode())
                        .await;
                }
            }
        }
    });

    // channels
    while let Ok((s, r)) = conn.accept_bi().await {
        tokio::spawn(serve_channel(s, r, max_frame, st.clone()));
    }
    Ok(())
}

async fn serve_channel(
    mut send: SendStream,
    mut recv: RecvStream,
    max: u32,
    st: Arc<MockState>,
) -> Result<()> {
    let Some(f) = read_frame(&mut recv, HANDSHAKE_MAX_FRAME_SIZE).await? else {
        return Ok(());
    };
    match ChannelMsg::decode(&f)? {
        ChannelMsg::Open(ChannelKind::Echo) => {}
        _ => {
            let e = ChannelMsg::Error(ErrorFrame {
                request_id: 0,
                code: ErrorCode::UnknownChannel,
                message: "not served here".into(),
                retry_after_ms: 0,
            });
            send.write_all(&e.encode()).await?;
            let _ = send.finish();
            return Ok(());
        }
    }
    while let Some(f) = read_frame(&mut recv, max).await? {
        let ChannelMsg::Request(req) = ChannelMsg::decode(&f)? else {
            continue;
        };
        let outpost_schema::RequestBody::Echo {
            payload, push_count, ..
        } = req.body
        else {
            continue;
        };
        match &payload[..] {
            b"hold" => continue, // never answered
            b"poke" => st.poked.notify_one(),
            // Answered (with its pushes) once a `poke` arrived on another channel.
            b"await-poke" => st.poked.notified().await,
            // The answer and its pushes one byte per write (1 ms apart).
            p if p.starts_with(b"split") => {
                let resp = ChannelMsg::Response(Response {
                    request_id: req.request_id,
                    body: ResponseBody::Echo {
                        payload: payload.clone(),
                    },
                });
                write_split(&mut send, &resp.encode(), Duration::from_millis(1)).await?;
                for sequence in 0..u32::from(push_count) {
                    let p = ChannelMsg::Push(PushBody::Echo {
                        payload: payload.clone(),
                        sequence,
                    });
                    write_split(&mut send, &p.encode(), Duration::from_millis(1)).await?;
                }
                continue;
            }
            b"garbage" => {
                let mut g = 24u32.to_le_bytes().to_vec();
                g.extend([0x5A; 24]);
                send.write_all(&g).await?;
                continue;
            }
            // A MatchNotFound push with a reason this SDK does not know and
            // no ticket id (0 is the field's default, so it is absent on the
            // wire), then the echo answer.
            b"mnf-unknown" => {
                let p = ChannelMsg::Push(PushBody::MatchNotFound {
                    ticket_id: 0,
                    reason: outpost_schema::NoMatchReason(200),
                });
                send.write_all(&p.encode()).await?;
            }
            // A MatchNotFound push cut short (its table lies past the end of
            // the frame): undecodable.
            b"mnf-truncated" => {
                let p = ChannelMsg::Push(PushBody::MatchNotFound {
                    ticket_id: 7,
                    reason: outpost_schema::NoMatchReason::Deadline,
                });
                let full = p.encode();
                let body = &full[4..full.len() - 12];
                let mut g = (body.len() as u32).to_le_bytes().to_vec();
                g.extend_from_slice(body);
                send.write_all(&g).await?;
                continue;
            }
            b"busy" => {
                let e = ChannelMsg::Error(ErrorFrame {
                    request_id: req.request_id,
                    code: ErrorCode::RateLimited,
                    message: "slow down".into(),
                    retry_after_ms: 250,
                });
                send.write_all(&e.encode()).await?;
                continue;
            }
            _ => {}
        }
        let resp = ChannelMsg::Response(Response {
            request_id: req.request_id,
            body: ResponseBody::Echo {
                payload: payload.clone(),
            },
        });
        send.write_all(&resp.encode()).await?;
        for sequence in 0..u32::from(push_count) {
            let p = ChannelMsg::Push(PushBody::Echo {
                payload: payload.clone(),
                sequence,
            });
            send.write_all(&p.encode()).await?;
        }
    }
    Ok(())
}
