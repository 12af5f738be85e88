//! A blocking facade for code without an async runtime (tools, simple game
//! loops). Each [`Client`] owns a small private tokio runtime; every method
//! blocks the calling thread until the async operation completes. Do not call
//! these from inside an async runtime.

use std::sync::Arc;
use std::time::Duration;

use outpost_schema::{ChannelKind, RequestBody, ResponseBody};

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::events::{Event, Events};
use crate::session::WelcomeInfo;

/// Blocking counterpart of [`crate::Client`].
#[derive(Clone, Debug)]
pub struct Client {
    rt: Arc<tokio::runtime::Runtime>,
    inner: crate::Client,
}

/// Blocking counterpart of [`crate::Channel`].
#[derive(Clone, Debug)]
pub struct Channel {
    rt: Arc<tokio::runtime::Runtime>,
    inner: crate::Channel,
}

/// Blocking counterpart of [`crate::Events`].
#[derive(Debug)]
pub struct EventReceiver {
    rt: Arc<tokio::runtime::Runtime>,
    inner: Events,
}

impl Client {
    /// Starts a private runtime (one worker thread) and connects; waits in
    /// the region's login queue if there is one (see [`crate::Client::connect`]).
    pub fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let rt = runtime()?;
        let inner = rt.block_on(crate::Client::connect(config))?;
        Ok(Client {
            rt: Arc::new(rt),
            inner,
        })
    }

    /// [`Client::connect`], calling `on_event` on this thread with every event
    /// until it returns: [`Event::Queued`] (position, ETA) while the login
    /// waits in the region's queue, [`Event::Admitted`] and `Connected` (or
    /// `Closed` with the error). Later events go to [`Client::events`]
    /// subscriptions.
    pub fn connect_with_events(
        config: ClientConfig,
        mut on_event: impl FnMut(Event),
    ) -> Result<Client, ClientError> {
        let rt = runtime()?;
        let (mut events, connect) = crate::Client::connect_with_events(config)?;
        let result = rt.block_on(async {
            tokio::pin!(connect);
            loop {
                tokio::select! {
                    biased;
                    Some(ev) = events.recv() => on_event(ev),
                    result = &mut connect => break result,
                }
            }
        });
        // What was emitted along with the end of the connect.
        while let Some(ev) = events.try_recv() {
            on_event(ev);
        }
        Ok(Client {
            rt: Arc::new(rt),
            inner: result?,
        })
    }

    /// See [`crate::Client::player_id`].
    pub fn player_id(&self) -> String {
        self.inner.player_id()
    }

    /// See [`crate::Client::welcome`].
    pub fn welcome(&self) -> WelcomeInfo {
        self.inner.welcome()
    }

    /// See [`crate::Client::is_connected`].
    pub fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    /// See [`crate::Client::ping`].
    pub fn ping(&self) -> Result<Duration, ClientError> {
        self.rt.block_on(self.inner.ping())
    }

    /// See [`crate::Client::open_channel`].
    pub fn open_channel(&self, kind: ChannelKind) -> Result<Channel, ClientError> {
        let inner = self.rt.block_on(self.inner.open_channel(kind))?;
        Ok(Channel {
            rt: self.rt.clone(),
            inner,
        })
    }

    /// See [`crate::Client::echo`].
    pub fn echo(&self, payload: impl Into<Vec<u8>>, push_count: u16) -> Result<Vec<u8>, ClientError> {
        self.rt.block_on(self.inner.echo(payload, push_count))
    }

    /// See [`crate::Client::events`].
    pub fn events(&self) -> EventReceiver {
        EventReceiver {
            rt: self.rt.clone(),
            inner: self.inner.events(),
        }
    }

    /// See [`crate::Client::live`]. The returned client's cached reads
    /// ([`crate::LiveClient::flags`], [`crate::LiveClient::bool_flag`], ...) are
    /// synchronous and need no runtime (its async calls, `fetch_manifest` and
    /// `refresh`, need one).
    pub fn live(&self) -> Result<crate::LiveClient, ClientError> {
        self.rt.block_on(self.inner.live())
    }

    /// See [`crate::Client::telemetry`]. Recording is synchronous; use
    /// [`Client::flush_telemetry`] to send now.
    pub fn telemetry(&self) -> crate::TelemetryReporter {
        self.inner.telemetry()
    }

    /// See [`crate::TelemetryReporter::flush`].
    pub fn flush_telemetry(&self) {
        self.rt.block_on(self.inner.telemetry().flush())
    }

    /// See [`crate::Client::close`].
    pub fn close(&self) {
        self.rt.block_on(self.inner.close())
    }

    /// The async client this facade wraps.
    pub fn as_async(&self) -> &crate::Client {
        &self.inner
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ClientError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("outpost-client")
        .enable_all()
        .build()
        .map_err(|e| ClientError::Config(format!("cannot start a runtime: {e}")))
}

impl Channel {
    /// See [`crate::Channel::request`].
    pub fn request(&self, body: RequestBody) -> Result<ResponseBody, ClientError> {
        self.rt.block_on(self.inner.request(body))
    }

    /// See [`crate::Channel::echo`].
    pub fn echo(&self, payload: impl Into<Vec<u8>>, push_count: u16) -> Result<Vec<u8>, ClientError> {
        self.rt.block_on(self.inner.echo(payload, push_count))
    }

    /// See [`crate::Channel::kind`].
    pub fn kind(&self) -> ChannelKind {
        self.inner.kind()
    }
}

impl EventReceiver {
    /// Blocks for the next event; `None` after [`Event::Closed`].
    pub fn recv(&mut self) -> Option<Event> {
        self.rt.block_on(self.inner.recv())
    }

    /// Waits at most `timeout` for the next event.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<Event> {
        self.rt.block_on(async {
            tokio::time::timeout(timeout, self.inner.recv())
                .await
                .ok()
                .flatten()
        })
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.inner.try_recv()
    }
}
