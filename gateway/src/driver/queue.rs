//! The gateway's side of the region login queue: the background loop that
//! runs admission ticks and the expiry sweep and reads the whole queue once
//! per update interval (one store read per gateway per interval, whatever the
//! number of queued connections), and the per-connection wait that sends
//! `Queued` updates and answers `Ping`s (PROTOCOL.md 3.7).

use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_backend::queue::{
    EnterMode, Entry, EtaEstimator, Place, PlaceStatus, Queue, QueueError, QueueTokenError, QueueView,
};
use outpost_backend::store::AnyStore;
use outpost_backend::time::now_ms;
use outpost_schema::{ControlMsg, ErrorCode, Queued, HANDSHAKE_MAX_FRAME_SIZE};
use quinn::{RecvStream, SendStream};
use tokio::sync::{broadcast, watch};
use tracing::warn;

use super::queue_addr::{AddrKey, AddressHold, AddressPlaces};
use crate::config::QueueConfig;
use crate::frame_io::read_frame;
use crate::session::{QueueDecision, QueueUpdate};

/// A queued connection that sends nothing for this long is closed
/// (`IdleTimeout`); its place is detached, not lost.
const QUEUED_IDLE: Duration = Duration::from_secs(30);

/// The latest read of the queue, shared by every queued connection.
#[derive(Debug, Clone)]
pub(crate) struct QueueSnapshot {
    pub view: QueueView,
    eta: EtaEstimator,
    /// When the read of `view` started: the view shows every change
    /// committed before then.
    read_at: Instant,
}

impl QueueSnapshot {
    /// The `Queued` for a place at `position`.
    fn queued(&self, position: u32, token: &str) -> Queued {
        let b = &self.view.budget;
        let paused = b.paused;
        let eta = if paused {
            None
        } else {
            self.eta.eta_ms(position, b.max_admissions_per_sec)
        };
        Queued {
            position,
            eta_ms: eta.map_or(0, |e| u32::try_from(e).unwrap_or(u32::MAX)),
            queue_token: token.to_owned(),
            queue_length: u32::try_from(self.view.len()).unwrap_or(u32::MAX),
            paused,
        }
    }
}

/// The region queue as one gateway uses it.
pub(crate) struct RegionQueue {
    pub queue: Queue<AnyStore>,
    pub config: QueueConfig,
    /// This gateway incarnation as the queue's holder
    /// ([`outpost_backend::liveness::holder_id`]): the region's orphan sweep
    /// releases what it holds once the incarnation is declared dead.
    holder: String,
    pub snapshot: watch::Receiver<Arc<QueueSnapshot>>,
    tx: watch::Sender<Arc<QueueSnapshot>>,
    /// Places held per client address (`queue.max_places_per_address`).
    addresses: Arc<AddressPlaces>,
    /// One fresh read of the queue at a time (see `snapshot_showing`).
    fresh_read: tokio::sync::Mutex<()>,
}

impl RegionQueue {
    /// Writes the configured budget if none is stored yet and reads the queue
    /// once. `holder`: see the field.
    pub async fn start(
        queue: Queue<AnyStore>,
        config: QueueConfig,
        holder: String,
    ) -> Result<Self, QueueError> {
        crate::queue_metrics::describe();
        queue.ensure_budget(config.initial_budget(), now_ms()).await?;
        let mut eta = EtaEstimator::new(Duration::from_secs(config.eta_window_secs));
        let read_at = Instant::now();
        let view = queue.view().await?;
        eta.sample(now_ms(), view.admissions_total);
        let (tx, snapshot) = watch::channel(Arc::new(QueueSnapshot { view, eta, read_at }));
        let addresses = AddressPlaces::new(
            config.max_places_per_address,
            Duration::from_secs(config.place_grace_secs),
        );
        Ok(RegionQueue {
            queue,
            config,
            holder,
            snapshot,
            tx,
            addresses,
            fresh_read: tokio::sync::Mutex::new(()),
        })
    }

    /// Admission ticks every `admit_tick_ms`; sweep and a fresh view every
    /// `update_interval_ms`; until shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: broadcast::Receiver<()>) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.config.admit_tick_ms));
        let update = Duration::from_millis(self.config.update_interval_ms);
        let mut next_view = Instant::now() + update;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.recv() => return,
            }
            match self.queue.admit_tick(now_ms()).await {
                Ok(admitted) => crate::queue_metrics::tick_admitted(admitted.len()),
                Err(e) => warn!(error = %e, "queue admission tick failed"),
            }
            if Instant::now() >= next_view {
                next_view = Instant::now() + update;
                self.refresh().await;
            }
        }
    }

    async fn refresh(&self) {
        if let Err(e) = self.queue.sweep(now_ms()).await {
            warn!(error = %e, "queue expiry sweep failed");
        }
        let read_at = Instant::now();
        match self.queue.view().await {
            Ok(view) => {
                let mut eta = self.snapshot.borrow().eta.clone();
                eta.sample(now_ms(), view.admissions_total);
                crate::queue_metrics::view(&view, eta.rate_per_sec());
                self.publish(Arc::new(QueueSnapshot { view, eta, read_at }));
            }
            Err(e) => warn!(error = %e, "queue view failed"),
        }
    }

    /// Makes `snap` the current snapshot unless a later read already is (a
    /// login's fresh read may finish before the loop's older one): positions
    /// taken from the current snapshot must never go back in time.
    fn publish(&self, snap: Arc<QueueSnapshot>) {
        self.tx.send_if_modified(|current| {
            let newer = snap.read_at >= current.read_at;
            if newer {
                *current = snap;
            }
            newer
        });
    }

    /// [`LoginStep::EnterQueue`](crate::session::LoginStep::EnterQueue): the
    /// decision, and the slot or the place the driver then holds. A login
    /// from an address at `max_places_per_address` cannot queue (it is
    /// admitted if there is room, else `Busy`).
    pub async fn enter(
        &self,
        keys: outpost_backend::queue::QueueKeys,
        player: &str,
        (mut mode, mut token): (EnterMode, Option<&str>),
        remote: std::net::IpAddr,
    ) -> (QueueDecision, Held) {
        let addr = AddrKey::of(remote);
        if mode == EnterMode::Queue && !self.addresses.allows(addr, player, Instant::now()) {
            metrics::counter!("outpost_queue_address_refusals_total").increment(1);
            mode = EnterMode::NoQueue;
            token = None;
        }
        let q = self.queue.with_keys(keys);
        match q.enter_with(player, &self.holder, token, mode, now_ms()).await {
            Ok(Entry::Admitted { slot, .. }) => (QueueDecision::Admitted, Held::Slot(slot)),
            Ok(Entry::Queued(place)) => {
                let (snap, position) = self.first_position(place.stamp, Instant::now()).await;
                let first = snap.queued(position, &place.token);
                crate::queue_metrics::enqueued();
                let promised_ms = (!first.paused).then_some(u64::from(first.eta_ms));
                let now = Instant::now();
                let waiting = Waiting {
                    address: self.addresses.hold(addr, player, now),
                    place,
                    last_heard: now,
                    since: now,
                    promised_ms,
                };
                (QueueDecision::Queued(first), Held::Place(Box::new(waiting)))
            }
            Ok(Entry::Busy) => (QueueDecision::Busy, Held::Nothing),
            Err(QueueError::Token(t)) => (
                QueueDecision::TokenRefused(token_code(&t), t.to_string()),
                Held::Nothing,
            ),
            Err(e) => (QueueDecision::Failed(e.to_string()), Held::Nothing),
        }
    }

    /// The first position of the place at `stamp`, which entered (or came
    /// back with its token) at `entered`, and the snapshot it comes from: one
    /// read after `entered` (the current one if it is, else a fresh read, one
    /// at a time: logins entering meanwhile wait for that read and usually
    /// find it recent enough, so a burst of arrivals costs a few reads, not
    /// one each). PROTOCOL.md 3.7 forbids a position that goes up, and an
    /// older view could show one: it may predate the place (which it then
    /// does not show: the place is at least last of it, and the next update
    /// would put it further back), or predate the view another gateway last
    /// reported to this client, which came back here with its token. A view
    /// read after `entered` that does not show the place shows that it has
    /// left the queue since (admitted between the enter and the read): it is
    /// next, 0, and the next update admits it. (Reporting that view's length
    /// instead made the launch-queue test flaky: a client at position 207
    /// that moved gateways while being admitted was told 580.)
    async fn first_position(
        &self,
        stamp: outpost_backend::queue::Stamp,
        entered: Instant,
    ) -> (Arc<QueueSnapshot>, u32) {
        let read_after = |s: &Arc<QueueSnapshot>| (s.read_at >= entered).then(|| s.clone());
        let at = |s: Arc<QueueSnapshot>| {
            let position = s.view.position(stamp).unwrap_or(0);
            (s, position)
        };
        if let Some(snap) = read_after(&self.snapshot.borrow()) {
            return at(snap);
        }
        let _one = self.fresh_read.lock().await;
        let current = self.snapshot.borrow().clone();
        if let Some(snap) = read_after(&current) {
            return at(snap);
        }
        let read_at = Instant::now();
        match self.queue.view().await {
            Ok(view) => {
                let eta = current.eta.clone();
                let fresh = Arc::new(QueueSnapshot { view, eta, read_at });
                self.publish(fresh.clone());
                at(fresh)
            }
            Err(e) => {
                warn!(error = %e, "queue view failed");
                // An older view is all there is: a place it does not show
                // is at least last of it.
                let position = current.view.position(stamp).unwrap_or(current.view.len() as u32);
                (current, position)
            }
        }
    }

    /// Waits out one update interval of a queued connection: answers `Ping`s,
    /// then reports the place's state. `None`: the connection went away or
    /// idled out (the place is detached, kept for the grace).
    pub async fn wait(
        &self,
        place: &Place,
        last_heard: &mut Instant,
        send: &mut SendStream,
        recv: &mut RecvStream,
    ) -> Option<QueueUpdate> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.config.update_interval_ms);
        loop {
            let idle_at = tokio::time::Instant::from_std(*last_heard + QUEUED_IDLE);
            // Dropping a half-read frame at the interval could lose a Ping split
            // across packets; Pings are tiny, and a client cut off by that
            // reconnects with its token and keeps its place.
            tokio::select! {
                frame = read_frame(recv, HANDSHAKE_MAX_FRAME_SIZE) => match frame.ok().flatten().map(|f| ControlMsg::decode(&f)) {
                    Some(Ok(ControlMsg::Ping { nonce })) => {
                        *last_heard = Instant::now();
                        send.write_all(&ControlMsg::Pong { nonce }.encode()).await.ok()?;
                    }
                    _ => return self.detach(place).await,
                },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = tokio::time::sleep_until(idle_at) => return self.detach(place).await,
            }
        }
        let snap = self.snapshot.borrow().clone();
        if let Some(position) = snap.view.position(place.stamp) {
            return Some(QueueUpdate::Waiting(snap.queued(position, &place.token)));
        }
        Some(match self.queue.poll(place, &self.holder, now_ms()).await {
            Ok(PlaceStatus::Admitted { .. }) => QueueUpdate::Admitted,
            Ok(PlaceStatus::Waiting) => {
                QueueUpdate::Waiting(snap.queued(snap.view.len() as u32, &place.token))
            }
            Ok(PlaceStatus::Gone) => QueueUpdate::Gone,
            Err(e) => QueueUpdate::Failed(e.to_string()),
        })
    }

    /// The holder lost a waiting place's connection.
    pub async fn detach(&self, place: &Place) -> Option<QueueUpdate> {
        crate::queue_metrics::detached();
        if let Err(e) = self.queue.detach(&place.player, place.place, now_ms()).await {
            warn!(error = %e, "queue detach failed; the place expires only through the liveness sweep");
        }
        None
    }

    /// Releases a session's slot (`clean`: a logout frees it; otherwise it is
    /// reserved for the re-entry grace).
    pub async fn end_session(&self, player: &str, slot: u64, clean: bool) {
        if let Err(e) = self.queue.end_session(player, slot, clean, now_ms()).await {
            warn!(error = %e, "queue: releasing the session's slot failed; it expires with the holder");
        }
    }
}

/// What a login holds in the queue.
#[derive(Debug)]
pub(crate) enum Held {
    Nothing,
    /// A slot (admitted).
    Slot(u64),
    /// A waiting place.
    Place(Box<Waiting>),
}

/// A waiting place as its connection's login holds it.
#[derive(Debug)]
pub(crate) struct Waiting {
    pub place: Place,
    /// When the client was last heard from (idle timeout).
    pub last_heard: Instant,
    /// When this connection got the place (a reconnect starts anew).
    pub since: Instant,
    /// The ETA of the first `Queued` (none while paused).
    pub promised_ms: Option<u64>,
    /// The place's count against its address's bound.
    pub address: AddressHold,
}

impl Waiting {
    /// Admitted: records the wait and the ETA error on this connection
    /// (`outpost_queue_wait_ms`, `outpost_queue_eta_error_ms`).
    pub fn record_admitted(&mut self) {
        self.address.admitted();
        let waited = self.since.elapsed().as_millis() as u64;
        crate::queue_metrics::admitted_from_queue(waited, self.promised_ms);
    }
}

/// The wire code of a refused queue token.
fn token_code(e: &QueueTokenError) -> ErrorCode {
    match e {
        QueueTokenError::Malformed(_) | QueueTokenError::Forged | QueueTokenError::WrongAccount => {
            ErrorCode::QueueTokenInvalid
        }
        QueueTokenError::Expired { .. } => ErrorCode::QueueTokenExpired,
        QueueTokenError::PlaceGone => ErrorCode::QueuePlaceGone,
    }
}

#[cfg(test)]
mod tests {
    use outpost_backend::keyspace::RegionName;
    use outpost_backend::queue::{Budget, QueueKeys};
    use outpost_backend::store::StoreConfig;

    use super::*;

    /// A region queue on an embedded store with a budget of 0 (everyone
    /// queues), as one gateway uses it.
    async fn region_queue(dir: &std::path::Path) -> RegionQueue {
        let store = AnyStore::open(&StoreConfig::embedded(dir.join("store")))
            .await
            .unwrap();
        let config = QueueConfig {
            enabled: true,
            max_sessions: 0,
            ..QueueConfig::default()
        };
        let keys = QueueKeys::new("test", [("test", &[7u8; 32])]).unwrap();
        let queue = Queue::new(store, RegionName::new("test").unwrap(), config.settings(), keys).unwrap();
        RegionQueue::start(queue, config, "gw-a".into()).await.unwrap()
    }

    /// The launch-queue test's flake: a client that came back with its token
    /// while the queue moved was told a position higher than before.
    #[tokio::test]
    async fn a_first_position_comes_from_a_view_read_after_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let rq = region_queue(dir.path()).await;
        let mut stamps = Vec::new();
        for player in ["p0", "p1", "p2", "p3"] {
            match rq.queue.enter(player, "gw-a", None, now_ms()).await.unwrap() {
                Entry::Queued(place) => stamps.push(place.stamp),
                other => panic!("{player}: {other:?}"),
            }
        }
        rq.refresh().await;
        assert_eq!(rq.snapshot.borrow().view.position(stamps[3]), Some(3));

        // p1 and p3 come back (with their tokens) as two places are admitted.
        let entered = Instant::now();
        let budget = Budget {
            max_sessions: 2,
            max_admissions_per_sec: 100,
            paused: false,
            updated_ms: 0,
        };
        rq.queue.set_budget(budget, now_ms()).await.unwrap();
        assert_eq!(rq.queue.admit_tick(now_ms()).await.unwrap().len(), 2);

        // The gateway's snapshot predates both: it would say 3 to a client
        // another gateway may already have told 1.
        let (snap, position) = rq.first_position(stamps[3], entered).await;
        assert_eq!(position, 1, "from a view read after the entry");
        assert!(snap.read_at >= entered);
        // Admitted between its entry and the read: next, not the queue's length.
        let (snap, position) = rq.first_position(stamps[1], entered).await;
        assert_eq!((position, snap.view.len()), (0, 2));
        // That fresh read is now the gateway's snapshot (one read served both).
        assert!(rq.snapshot.borrow().read_at >= entered);
    }
}
