//! One client's TLS session memory (rustls' `ClientSessionStore`): the
//! key-exchange group its gateways chose, which saves a HelloRetryRequest on
//! the next handshake, and TLS 1.3 tickets if a server sends any during the
//! handshake (the gateway sends none: it resumes sessions with its own resume
//! tokens; and a client's connection drops its TLS state once the handshake
//! is complete, so tickets sent after it are not read: `tls.rs`).
//!
//! Why not rustls' in-memory store: it reserves room for 8 tickets per server
//! name (about 1 KiB) the moment it remembers a group, in every client: the
//! load simulator pays that thousands of times (memory per client, issue 21).
//! This one remembers one server name (a client talks to one region's
//! gateways, which share one certificate name; rustls' store sized for 2
//! names kept one as well) and allocates only for tickets it receives.

use std::collections::VecDeque;
use std::sync::Mutex;

use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::NamedGroup;
use rustls_pki_types::ServerName;

/// Most TLS 1.3 tickets kept (the newest); each is used at most once.
const MAX_TICKETS: usize = 2;

#[derive(Default)]
pub(crate) struct ClientSessions(Mutex<Option<ServerSessions>>);

/// What is remembered for the one server name.
struct ServerSessions {
    name: ServerName<'static>,
    kx_hint: Option<NamedGroup>,
    tickets: VecDeque<Tls13ClientSessionValue>,
}

impl ClientSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ServerSessions>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Edits the entry for `name`, replacing one for another name.
    fn edit(&self, name: ServerName<'static>, f: impl FnOnce(&mut ServerSessions)) {
        let mut entry = self.lock();
        let s = match entry.take() {
            Some(s) if s.name == name => entry.insert(s),
            _ => entry.insert(ServerSessions {
                name,
                kx_hint: None,
                tickets: VecDeque::new(),
            }),
        };
        f(s);
    }

    /// Reads from the entry for `name`, if that is the one remembered.
    fn read<T>(&self, name: &ServerName<'_>, f: impl FnOnce(&mut ServerSessions) -> Option<T>) -> Option<T> {
        self.lock().as_mut().filter(|s| s.name == *name).and_then(f)
    }
}

impl ClientSessionStore for ClientSessions {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.edit(server_name, |s| s.kx_hint = Some(group));
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.read(server_name, |s| s.kx_hint)
    }

    // The SDK speaks TLS 1.3 only.
    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(&self, server_name: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.edit(server_name, |s| {
            if s.tickets.len() >= MAX_TICKETS {
                s.tickets.pop_front();
            }
            s.tickets.push_back(value);
        });
    }

    fn take_tls13_ticket(&self, server_name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.read(server_name, |s| s.tickets.pop_back())
    }
}

/// Key material: never printed.
impl std::fmt::Debug for ClientSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSessions").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ServerName<'static> {
        ServerName::try_from(s.to_owned()).expect("a DNS name")
    }

    #[test]
    fn remembers_the_group_of_the_last_server_name_only() {
        let store = ClientSessions::default();
        assert_eq!(store.kx_hint(&name("gw.example")), None);
        store.set_kx_hint(name("gw.example"), NamedGroup::X25519);
        assert_eq!(store.kx_hint(&name("gw.example")), Some(NamedGroup::X25519));
        assert_eq!(store.kx_hint(&name("other.example")), None);
        store.set_kx_hint(name("gw.example"), NamedGroup::secp256r1);
        assert_eq!(store.kx_hint(&name("gw.example")), Some(NamedGroup::secp256r1));
        // Another name replaces the entry.
        store.set_kx_hint(name("other.example"), NamedGroup::X25519);
        assert_eq!(store.kx_hint(&name("other.example")), Some(NamedGroup::X25519));
        assert_eq!(store.kx_hint(&name("gw.example")), None);
        assert!(store.take_tls13_ticket(&name("other.example")).is_none());
        assert!(store.tls12_session(&name("other.example")).is_none());
    }
}
