//! The gateway's table of live sessions: admission (capacity), one live session per
//! player, and how to reach a session to kick it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use outpost_schema::ErrorCode;
use tokio::sync::Notify;

/// A command delivered to a running session task.
#[derive(Debug, Clone)]
pub enum SessionCommand {
    /// End the session with a Kick.
    /// (`Box<str>`: it sits in every session's inbox, 8 bytes less than a
    /// `String` keeps the session's core in a smaller allocator size class.)
    Kick { reason: ErrorCode, message: Box<str> },
    /// The same session resumed on a new connection: close this one quietly.
    Superseded,
}

/// A session's command inbox: at most one pending command, since every
/// command ends the session (a later one while the first is pending is
/// dropped: the session is already closing). It lives inside the session's
/// core (the driver's `SessionCore`, through [`Reachable`]) and its `Notify`
/// is the one that wakes the session loop for anything: one allocation and one
/// waiter per session, where a tokio `mpsc` channel allocates its first block
/// of 32 slots (≈ 1.5 KiB) up front (docs/PERFORMANCE.md, memory per idle
/// session).
#[derive(Debug, Default)]
pub struct Inbox {
    pending: Mutex<Option<SessionCommand>>,
    ready: Notify,
}

impl Inbox {
    /// Leaves `cmd` for the session and wakes it; false if a command is
    /// already pending.
    pub fn send(&self, cmd: SessionCommand) -> bool {
        let mut pending = self.pending.lock().expect("inbox lock");
        if pending.is_some() {
            return false;
        }
        *pending = Some(cmd);
        drop(pending);
        self.ready.notify_one();
        true
    }

    /// The pending command, if any, without waiting.
    pub fn try_recv(&self) -> Option<SessionCommand> {
        self.pending.lock().expect("inbox lock").take()
    }

    /// Wakes the session for something else than a command.
    pub fn wake(&self) {
        self.ready.notify_one();
    }

    /// Resolves after a [`send`](Self::send) or [`wake`](Self::wake) that
    /// nobody took yet (one kept while nobody waits), so a session that looks
    /// at [`try_recv`](Self::try_recv) and everything else it is woken for
    /// before waiting on this misses nothing.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.ready.notified()
    }
}

/// What holds a session's [`Inbox`]: the registry keeps it to reach the
/// session.
pub trait Reachable: Send + Sync {
    fn inbox(&self) -> &Inbox;
}

impl Reachable for Inbox {
    fn inbox(&self) -> &Inbox {
        self
    }
}

/// A live session's entry: its id and what holds its command inbox.
#[derive(Clone)]
struct Entry {
    session_id: u64,
    commands: Arc<dyn Reachable>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("session_id", &self.session_id)
            .finish()
    }
}

/// Live sessions by player id, plus the admission counter.
#[derive(Debug)]
pub struct Registry {
    max_sessions: usize,
    /// Sessions admitted (logging in or live). Counted separately from the map so a
    /// login storm is refused before any authentication work is done.
    admitted: Arc<AtomicUsize>,
    by_player: Mutex<HashMap<Arc<str>, Entry>>,
}

/// A reserved place under the capacity limit; released on drop.
#[derive(Debug)]
pub struct Slot {
    admitted: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Registry {
    pub fn new(max_sessions: usize) -> Self {
        Registry {
            max_sessions,
            admitted: Arc::new(AtomicUsize::new(0)),
            by_player: Mutex::new(HashMap::new()),
        }
    }

    /// Reserves a place for a new session, or `None` at capacity.
    pub fn try_admit(&self) -> Option<Slot> {
        let mut n = self.admitted.load(Ordering::Acquire);
        loop {
            if n >= self.max_sessions {
                return None;
            }
            match self
                .admitted
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Some(Slot {
                        admitted: self.admitted.clone(),
                    })
                }
                Err(actual) => n = actual,
            }
        }
    }

    /// Sessions admitted right now (logging in or live).
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }

    /// Live (welcomed) sessions right now.
    pub fn live(&self) -> usize {
        self.by_player.lock().expect("registry lock").len()
    }

    /// Makes `session_id` the player's live session. A different live session of
    /// the same player is kicked with `ReplacedByNewLogin`; the same session on an
    /// older connection (a resume) is closed quietly.
    pub fn register(&self, player: &Arc<str>, session_id: u64, commands: Arc<dyn Reachable>) {
        let old = self
            .by_player
            .lock()
            .expect("registry lock")
            .insert(player.clone(), Entry { session_id, commands });
        if let Some(old) = old {
            let cmd = if old.session_id == session_id {
                SessionCommand::Superseded
            } else {
                SessionCommand::Kick {
                    reason: ErrorCode::ReplacedByNewLogin,
                    message: "you logged in from another connection".into(),
                }
            };
            // A pending command means the old session is already closing.
            old.commands.inbox().send(cmd);
        }
    }

    /// Removes the player's entry if it still belongs to this connection.
    /// `commands` is compared by address only.
    pub fn unregister(&self, player: &Arc<str>, commands: &dyn Reachable) {
        let mut map = self.by_player.lock().expect("registry lock");
        if map
            .get(player)
            .is_some_and(|e| std::ptr::addr_eq(Arc::as_ptr(&e.commands), commands))
        {
            map.remove(player);
        }
    }

    /// Wakes every live session: for a gateway-wide signal (drain, shutdown)
    /// that sessions read when they wake (`driver::relay_gateway_signals`).
    pub fn wake_all(&self) {
        for e in self.by_player.lock().expect("registry lock").values() {
            e.commands.inbox().wake();
        }
    }

    /// Whether the player has a live session on this gateway.
    pub fn is_live(&self, player: &str) -> bool {
        self.by_player.lock().expect("registry lock").contains_key(player)
    }

    /// Kicks a player's live session (operator action). True if one was found.
    pub fn kick(&self, player: &str, reason: ErrorCode, message: &str) -> bool {
        let entry = self.by_player.lock().expect("registry lock").get(player).cloned();
        entry.is_some_and(|e| {
            e.commands.inbox().send(SessionCommand::Kick {
                reason,
                message: message.into(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_stops_at_capacity_and_slots_release_on_drop() {
        let r = Registry::new(2);
        let a = r.try_admit().unwrap();
        let _b = r.try_admit().unwrap();
        assert!(r.try_admit().is_none());
        drop(a);
        assert!(r.try_admit().is_some());
    }

    #[test]
    fn second_login_kicks_the_first_and_resume_supersedes_quietly() {
        let r = Registry::new(10);
        let p: Arc<str> = "p1".into();
        let inbox = || -> Arc<dyn Reachable> { Arc::new(Inbox::default()) };
        let (tx1, tx2, tx3) = (inbox(), inbox(), inbox());
        r.register(&p, 1, tx1.clone());
        r.register(&p, 2, tx2.clone());
        assert!(matches!(
            tx1.inbox().try_recv().unwrap(),
            SessionCommand::Kick {
                reason: ErrorCode::ReplacedByNewLogin,
                ..
            }
        ));
        r.register(&p, 2, tx3.clone());
        assert!(matches!(
            tx2.inbox().try_recv().unwrap(),
            SessionCommand::Superseded
        ));
        // A stale unregister does not remove the newer entry.
        r.unregister(&p, &*tx1);
        assert_eq!(r.live(), 1);
        r.unregister(&p, &*tx3);
        assert_eq!(r.live(), 0);
    }

    #[tokio::test]
    async fn inbox_keeps_the_first_command_until_it_is_received() {
        let inbox = Arc::new(Inbox::default());
        assert!(inbox.try_recv().is_none());
        assert!(inbox.send(SessionCommand::Superseded));
        // The session is already ending: a second command is not queued.
        assert!(!inbox.send(SessionCommand::Kick {
            reason: ErrorCode::Unspecified,
            message: "late".into(),
        }));
        // The send left a wake-up for a session not waiting yet.
        inbox.notified().await;
        assert!(matches!(inbox.try_recv(), Some(SessionCommand::Superseded)));
        assert!(inbox.try_recv().is_none());
        // A session waiting before the command arrives is woken by it.
        let waiting = tokio::spawn({
            let inbox = inbox.clone();
            async move {
                inbox.notified().await;
                inbox.try_recv()
            }
        });
        tokio::task::yield_now().await;
        assert!(inbox.send(SessionCommand::Superseded));
        assert!(matches!(waiting.await.unwrap(), Some(SessionCommand::Superseded)));
    }
}
