//! The [`Client`] handle: connect, session info, ping, channels, events, close.

use std::sync::Arc;
use std::time::Duration;

use outpost_schema::ChannelKind;
use tokio::sync::{oneshot, watch};

use crate::channel::Channel;
use crate::config::{ClientConfig, Trust};
use crate::error::ClientError;
use crate::events::{Event, EventHub, Events};
use crate::live::LiveClient;
use crate::login::establish;
use crate::mailbox;
use crate::session::{Actor, Command, ConnState, Shared, WelcomeInfo};
use crate::telemetry::{Recorder, Sink, TelemetryReporter};
use crate::telemetry_flush::FlushSchedule;
use crate::tls::quinn_client_config;

/// Commands queued from handles to the session actor.
const COMMAND_QUEUE: usize = 64;
/// How long `close()` waits for pending telemetry to be sent.
const CLOSE_FLUSH_LIMIT: Duration = Duration::from_secs(1);

/// A connected Outpost session. Cheap to clone; all clones drive the same
/// session. The session is logged out when [`Client::close`] is called or when
/// the last `Client` and [`Channel`] handle is dropped.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<ClientInner>,
}

#[derive(Debug)]
struct ClientInner {
    shared: Arc<Shared>,
    cmds: mailbox::Sender<Command>,
    echo: tokio::sync::Mutex<Option<Channel>>,
    live: tokio::sync::Mutex<Option<LiveClient>>,
    telemetry: Arc<Sink>,
}

impl Client {
    /// Connects and logs in. With several gateways, handshakes with all of
    /// them concurrently and logs in at the one with the lowest round-trip
    /// time that accepts. The first attempt is not retried: a refusal comes
    /// back as [`ClientError::Rejected`] (honour its `retry_after`; a gateway
    /// that refused the connection itself because it is overloaded is
    /// `ServerBusy` with 1–3 s), a network failure as [`ClientError::Connect`].
    /// Must be called inside a tokio runtime.
    ///
    /// If the region is at capacity and runs a login queue (PROTOCOL.md 3.7),
    /// this waits in the queue until admitted (see [`crate::QueuePolicy`]:
    /// on by default, at most 6 h): once the login holds a place, a lost
    /// connection is re-established with the queue token, keeping the place.
    /// To show position and ETA while waiting, use
    /// [`Client::connect_with_events`]; here they can be read afterwards from
    /// the first [`Client::events`] subscription (up to `event_capacity`).
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        Self::finish(Self::prepare(config)?).await
    }

    /// [`Client::connect`], with the client's first event subscription taken
    /// before the login starts: it receives [`crate::Event::Queued`] (position,
    /// ETA) while the future waits in the region's login queue, then
    /// [`crate::Event::Admitted`], `Connected` and every later event (or
    /// `Closed` with the error if the connect fails). Drive both, e.g. in a
    /// `select!` or by spawning the future. [`Client::events`] on the
    /// resulting client then subscribes from its call on.
    pub fn connect_with_events(
        config: ClientConfig,
    ) -> Result<
        (
            Events,
            impl std::future::Future<Output = Result<Client, ClientError>> + Send + 'static,
        ),
        ClientError,
    > {
        let shared = Self::prepare(config)?;
        let events = shared.events.subscribe();
        Ok((events, Self::finish(shared)))
    }

    /// Validates the configuration and builds the session's shared state.
    fn prepare(mut config: ClientConfig) -> Result<Arc<Shared>, ClientError> {
        config.validate()?;
        let quinn_cfg = quinn_client_config(&config.trust, config.mtu_discovery)?;
        // The CA list lives on in `quinn_cfg` (parsed once per process and
        // CA list); the session never reads it again, and each client's copy
        // of the PEM would be kept for its whole life (issue 21).
        config.trust = Trust::DevCa { pem: Vec::new() };
        let (state, _) = watch::channel(ConnState::Connecting);
        Ok(Arc::new(Shared {
            events: EventHub::new(config.event_capacity),
            quinn_cfg,
            state,
            info: Default::default(),
            telemetry: Recorder::new(config.telemetry.clone()),
            config,
        }))
    }

    /// The first login (through the queue if any), then the session actor.
    async fn finish(shared: Arc<Shared>) -> Result<Client, ClientError> {
        let est = match establish(&shared, shared.config.credentials.clone(), None).await {
            Ok(est) => est,
            Err(e) => {
                shared.state.send_replace(ConnState::Closed(e.clone()));
                shared.events.emit(Event::Closed { reason: e.clone() });
                return Err(e);
            }
        };
        let (cmds, cmd_rx) = mailbox::channel(COMMAND_QUEUE);
        let telemetry = Sink::new(shared.clone(), cmds.clone());
        let flush = FlushSchedule::new(&shared.telemetry, &telemetry);
        Actor::spawn(shared.clone(), cmd_rx, est, flush);
        Ok(Client {
            inner: Arc::new(ClientInner {
                shared,
                cmds,
                echo: tokio::sync::Mutex::new(None),
                live: tokio::sync::Mutex::new(None),
                telemetry,
            }),
        })
    }

    /// The logged-in player's id.
    pub fn player_id(&self) -> String {
        self.welcome().player_id
    }

    /// What the last `Welcome` said (kept while reconnecting).
    pub fn welcome(&self) -> WelcomeInfo {
        self.inner
            .shared
            .info
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .expect("a Client exists only after a Welcome")
    }

    /// Whether a logged-in connection is up right now.
    pub fn is_connected(&self) -> bool {
        matches!(&*self.inner.shared.state.borrow(), ConnState::Connected(_))
    }

    /// Waits up to `timeout` for a logged-in connection (e.g. after a reconnect).
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), ClientError> {
        self.inner.shared.wait_live(timeout).await.map(|_| ())
    }

    /// Round-trip time of one `Ping` / `Pong` on the control stream.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let timeout = self.inner.shared.config.request_timeout;
        let fut = async {
            self.inner.shared.wait_live(timeout).await?;
            let (reply, rx) = oneshot::channel();
            self.inner
                .cmds
                .send(Command::Ping(reply))
                .await
                .map_err(|_| ClientError::Closed)?;
            rx.await.unwrap_or(Err(ClientError::Closed))
        };
        tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or(Err(ClientError::Timeout))
    }

    /// Opens a channel to a service. The returned handle survives reconnects
    /// (the SDK re-opens the stream on each new connection).
    pub async fn open_channel(&self, kind: ChannelKind) -> Result<Channel, ClientError> {
        Channel::open(self.inner.shared.clone(), self.inner.cmds.clone(), kind).await
    }

    /// Echo request on a shared diagnostic channel (opened on first use).
    /// Returns the echoed payload; `push_count` [`crate::Event::Push`] events follow.
    pub async fn echo(&self, payload: impl Into<Vec<u8>>, push_count: u16) -> Result<Vec<u8>, ClientError> {
        let channel = {
            let mut slot = self.inner.echo.lock().await;
            match slot.as_ref() {
                Some(c) if !c.is_closed() => c.clone(),
                _ => {
                    let c = self.open_channel(ChannelKind::Echo).await?;
                    *slot = Some(c.clone());
                    c
                }
            }
        };
        channel.echo(payload, push_count).await
    }

    /// Opens a `State` channel: the player's versioned documents, with
    /// `StateChanged` pushes while it is open.
    pub async fn state(&self) -> Result<crate::StateClient, ClientError> {
        Ok(crate::StateClient::new(
            self.open_channel(ChannelKind::State).await?,
        ))
    }

    /// Opens an `Inventory` channel: the player's ledger, with idempotent writes
    /// and `InventoryChanged` pushes while it is open.
    pub async fn inventory(&self) -> Result<crate::InventoryClient, ClientError> {
        Ok(crate::InventoryClient::new(
            self.open_channel(ChannelKind::Inventory).await?,
        ))
    }

    /// Opens a `Matchmaking` channel: queue, cancel, status; `MatchFound` pushes.
    pub async fn matchmaking(&self) -> Result<crate::MatchmakingClient, ClientError> {
        Ok(crate::MatchmakingClient::new(
            self.open_channel(ChannelKind::Matchmaking).await?,
            self.clone(),
        ))
    }

    /// Live ops: the session's feature flags and content manifests, cached and
    /// kept current by pushes ([`LiveClient`]); [`Event::Live`](crate::Event::Live)
    /// events announce changes from now on. The first call opens the `Content`
    /// channel and reads both; later calls return the same client.
    pub async fn live(&self) -> Result<LiveClient, ClientError> {
        let mut slot = self.inner.live.lock().await;
        if let Some(l) = slot.as_ref() {
            return Ok(l.clone());
        }
        let channel = self.open_channel(ChannelKind::Content).await?;
        let live = LiveClient::start(self.inner.shared.clone(), channel).await?;
        *slot = Some(live.clone());
        Ok(live)
    }

    /// The SDK's telemetry: report the game's own errors and latency samples,
    /// flush, read counters. The SDK records its requests' failures and
    /// latencies by itself (see [`TelemetryReporter`]).
    pub fn telemetry(&self) -> TelemetryReporter {
        TelemetryReporter::new(self.inner.shared.clone(), &self.inner.telemetry)
    }

    /// Subscribes to session events and pushes. The first call receives every
    /// event since `connect`; later calls receive events from then on.
    pub fn events(&self) -> Events {
        self.inner.shared.events.subscribe()
    }

    /// Logs out: sends pending telemetry (best effort, for at most
    /// 1 s), closes the connection cleanly (QUIC code 0) and ends the
    /// session; no reconnect follows. Requests still in flight fail with
    /// [`ClientError::Closed`]. Idempotent.
    pub async fn close(&self) {
        if self.is_connected() {
            // Boxed: a flush (which may open the telemetry channel) is most
            // of this future; a caller that keeps a `close()` inline in a
            // long-lived task (the load simulator's players do) would
            // otherwise reserve room for it all along.
            let flush = Box::pin(self.inner.telemetry.flush());
            let _ = tokio::time::timeout(CLOSE_FLUSH_LIMIT, flush).await;
        }
        let (reply, rx) = oneshot::channel();
        if self.inner.cmds.send(Command::Close(reply)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Test hook: drops the current QUIC connection abruptly, as a network
    /// loss would (nothing more is sent to the gateway, not even a
    /// CONNECTION_CLOSE). With `auto_reconnect` the SDK reconnects and resumes.
    #[doc(hidden)]
    pub fn debug_kill_connection(&self) {
        let _ = self.inner.cmds.try_send(Command::Kill);
    }
}
