//! PATCH(outpost): `TransportConfig::min_probe_timeout` puts a floor under the probe timeout
//! (PTO), on either side, and leaves it as upstream computes it when unset.

use super::*;

const FLOOR: Duration = Duration::from_millis(200);
/// The peer's `max_ack_delay` (quinn's default transport parameter), which the PTO adds.
const ACK_DELAY: Duration = Duration::from_millis(25);

fn transport(min_probe_timeout: Option<Duration>) -> Arc<TransportConfig> {
    let mut transport = TransportConfig::default();
    if let Some(floor) = min_probe_timeout {
        transport.min_probe_timeout(floor);
    }
    Arc::new(transport)
}

/// Connects a pair (the floor on the client or on the server), loses one ping from the side
/// under test, and returns how long that side waited before it sent a probe.
fn first_probe_after_a_lost_ping(client_floor: Option<Duration>, server_floor: Option<Duration>, from_client: bool) -> Duration {
    let _guard = subscribe();
    let mut pair = Pair::new(
        Default::default(),
        ServerConfig {
            transport: transport(server_floor),
            ..server_config()
        },
    );
    let mut client = client_config();
    client.transport_config(transport(client_floor));
    let (client_ch, server_ch) = pair.connect_with(client);
    pair.drive();

    let sent = |pair: &mut Pair| {
        if from_client {
            pair.client_conn_mut(client_ch).stats().path.sent_packets
        } else {
            pair.server_conn_mut(server_ch).stats().path.sent_packets
        }
    };
    // The ping leaves and is lost on the way.
    if from_client {
        pair.client_conn_mut(client_ch).ping();
        pair.drive_client();
        assert!(!pair.server.inbound.is_empty(), "the ping was sent");
        pair.server.inbound.clear();
    } else {
        pair.server_conn_mut(server_ch).ping();
        pair.drive_server();
        assert!(!pair.client.inbound.is_empty(), "the ping was sent");
        pair.client.inbound.clear();
    }
    let lost_at = pair.time;
    let before = sent(&mut pair);
    while sent(&mut pair) == before {
        assert!(pair.step(), "no probe was ever sent");
    }
    pair.time - lost_at
}

#[test]
fn without_a_floor_the_probe_timeout_is_upstreams() {
    // A path of zero latency: smoothed RTT ≈ 0, so the PTO is 1 ms of granularity plus the
    // peer's 25 ms ack delay.
    for from_client in [true, false] {
        let waited = first_probe_after_a_lost_ping(None, None, from_client);
        assert!(waited < Duration::from_millis(50), "{from_client}: {waited:?}");
    }
}

#[test]
fn a_floor_delays_the_first_probe_on_the_side_that_sets_it() {
    for from_client in [true, false] {
        let (client_floor, server_floor) = if from_client { (Some(FLOOR), None) } else { (None, Some(FLOOR)) };
        let waited = first_probe_after_a_lost_ping(client_floor, server_floor, from_client);
        assert!(
            waited >= FLOOR + ACK_DELAY && waited < FLOOR + ACK_DELAY + Duration::from_millis(5),
            "{from_client}: {waited:?}"
        );
        // The other side's floor does not slow this side's probes.
        let (client_floor, server_floor) = (server_floor, client_floor);
        let waited = first_probe_after_a_lost_ping(client_floor, server_floor, from_client);
        assert!(waited < Duration::from_millis(50), "other side's floor, {from_client}: {waited:?}");
    }
}

#[test]
fn a_floor_below_the_paths_pto_changes_nothing() {
    // 100 ms each way: the PTO is ≈ 200 ms of smoothed RTT plus variance and ack delay, above a
    // 50 ms floor, so the floor leaves it as it was.
    let _guard = subscribe();
    let waited = |floor: Option<Duration>| {
        let mut pair = Pair::default();
        pair.latency = Duration::from_millis(100);
        let mut client = client_config();
        client.transport_config(transport(floor));
        let (client_ch, _) = pair.connect_with(client);
        pair.drive();
        pair.client_conn_mut(client_ch).ping();
        pair.drive_client();
        pair.server.inbound.clear();
        let lost_at = pair.time;
        let before = pair.client_conn_mut(client_ch).stats().path.sent_packets;
        while pair.client_conn_mut(client_ch).stats().path.sent_packets == before {
            assert!(pair.step(), "no probe was ever sent");
        }
        pair.time - lost_at
    };
    let upstream = waited(None);
    assert!(upstream > Duration::from_millis(200), "{upstream:?}");
    assert_eq!(waited(Some(Duration::from_millis(50))), upstream);
}
