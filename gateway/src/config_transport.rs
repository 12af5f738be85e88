//! The `[transport]` section: the UDP socket and the QUIC transport parameters
//! of every session, with what each costs in memory per session and what it
//! buys. Figures: docs/PERFORMANCE.md, "Memory per idle session (issue 21)".

use serde::Deserialize;

/// UDP socket and QUIC transport sizing. Measured on our 2-core machines: with the
/// kernel's default 208 KiB receive buffer a burst of a few hundred handshakes
/// overflows the socket, and every dropped Initial waits a full retransmission
/// timeout (~1 s), so handshake throughput collapses from ~2,000/s to ~150/s.
///
/// Memory per session. An idle session's memory is mostly quinn's own
/// per-connection state, which no setting here removes. With quinn and
/// quinn-proto patched (third_party/README.md), measured on 2026-12-06
/// (session 21): at 100,000 idle sessions, 15.6 KiB of RSS per session,
/// just opened and after 180 s; at 10,000 (and 10,000 accounts), the
/// gateway 16.1 KiB per session, bare quinn with this section's defaults
/// 11.8 KiB per connection and with quinn's own 15.5 (docs/PERFORMANCE.md,
/// "Stream entries made when first used, and one spare connection ID").
/// Heap per connection in quinn-proto and rustls alone: 7.8 KB
/// (`gateway/benches/quic_conn_memory.rs`).
/// What the settings trade:
/// - **Streams** (`limits.max_channels`, not in this section): a client may
///   have `1 + limits.max_channels` bidirectional streams open at once
///   (default 17) and no unidirectional ones (quinn's default is 100 + 100).
///   quinn-proto set up its stream-map entries for all of them when a
///   connection started (1.34 KiB per idle session at 17); with the
///   quinn-proto patch a stream's entries are made when the client first
///   uses it, so an idle session pays for the streams it has open, not for
///   the limit. A client opening more waits for credit.
/// - **Flow-control windows** (`stream_receive_window`, `receive_window`,
///   `send_window`) reserve nothing: they bound what a client can make the
///   gateway buffer. An idle session costs the same at any window; the worst
///   case is the window: a client that sends a full connection window and a
///   peer that stops reading hold up to 512 KiB + 512 KiB each (at 100,000
///   sessions, far above the idle figure; `limits.outbound_queue_bytes` and
///   the channel limits bound what the gateway queues itself). Smaller windows
///   cap that worst case and slow bulk transfers on long paths (one window per
///   round trip).
/// - **Connection IDs** (`issued_connection_ids`, below).
/// - **Receive path per connection** (not a setting): quinn's
///   endpoint-to-connection events went through a tokio channel per
///   connection (≈ 7 KiB with quinn's events inline, ≈ 1.25 KiB boxed); the
///   quinn patch gives each connection a small queue of its own instead
///   (≈ 0.1 KiB while empty).
/// - **Transmit buffer** (not a setting): the quinn patch drops it when a
///   connection has nothing more to send; before, it kept the handshake
///   flight's size (2.45 KiB per idle session).
/// - **TLS after the handshake** (not a setting): each session drops rustls's
///   connection once the handshake is complete (≈ 3.5 KiB;
///   `endpoint::quic_crypto`), and derives the next key update's keys only
///   when one happens (≈ 1.1 KiB; the quinn-proto patch), and frees its
///   Initial and Handshake packet spaces once the handshake is confirmed
///   (≈ 1.5 KiB; the same patch).
/// - **Timers** are not per-session tasks: quinn keeps one timer per
///   connection, and a session's deadlines (idle timeout, resume-token
///   refresh) are one entry at a time in tokio's shared timer wheel.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    /// SO_RCVBUF of the UDP socket, in bytes. Default 8 MiB. The kernel caps it at
    /// `net.core.rmem_max`; the gateway logs and exports the size it actually got.
    pub udp_recv_buffer_bytes: usize,
    /// SO_SNDBUF of the UDP socket, in bytes. Default 4 MiB (capped by `wmem_max`).
    pub udp_send_buffer_bytes: usize,
    /// Bytes a client may have unacknowledged on one stream (QUIC stream flow
    /// control). Default 256 KiB. Allocated only as data arrives (see above).
    pub stream_receive_window: u32,
    /// Bytes a client may have unacknowledged across the connection. Default 512 KiB.
    pub receive_window: u32,
    /// Bytes the gateway buffers unacknowledged per connection. Default 512 KiB.
    /// Bounds what a client that stops reading can make the gateway hold.
    pub send_window: u64,
    /// QUIC idle timeout, in ms. Default 30,000.
    pub max_idle_timeout_ms: u64,
    /// Path MTU discovery (DPLPMTUD, RFC 8899): after each handshake the gateway
    /// probes whether datagrams above QUIC's 1,200-byte minimum get through, and
    /// again every 10 minutes. Default **off**: game traffic is small frames that
    /// fit 1,200-byte datagrams, and the probes cost every new connection extra
    /// datagrams each way exactly when logins arrive as a storm (see
    /// docs/PERFORMANCE.md, gateway logins). Turn on when channels carry large
    /// payloads (content, big state documents) on paths known to allow 1,500 bytes.
    pub mtu_discovery: bool,
    /// UDP generic segmentation offload (GSO): quinn hands the kernel up to 10
    /// datagrams of a connection in one `sendmsg`. Default on. Off costs one
    /// `sendmsg` per datagram whenever a connection sends a burst (handshake
    /// flights, large channel payloads); use it only where a NIC or middlebox
    /// mishandles GSO. It does not save memory for idle sessions: measured
    /// within noise (≤ 0.4 KiB per session) in docs/PERFORMANCE.md ("Memory per
    /// idle session").
    pub segmentation_offload: bool,
    /// Connection IDs the gateway keeps issued to each client at once, the
    /// handshake's included. Default **2**, the least QUIC allows (RFC 9000
    /// §18.2): one in use and one spare. Range 2–8; a client's own limit
    /// caps it too. An SDK client on its own endpoint (zero-length ids of its
    /// own, `outpost_client::quic_endpoint_config`) accepts 2 and so gets one
    /// spare whatever this says; quinn clients with ids of their own (an SDK
    /// client on a shared endpoint, the gateway bench's idle sessions) accept
    /// 5, and other QUIC clients may accept more (quinn issued up to 8): this
    /// setting is what bounds them.
    ///
    /// A client switches to its spare when its own address changes (Wi-Fi to
    /// cellular) and retires the old ID, and the gateway issues a new spare,
    /// so a session survives any number of moves. NAT rebinding needs no
    /// spare. What more spares buy: a client that moves again before the new
    /// spare arrives (within one round trip) keeps using its current ID on
    /// the new path, where an observer could link the two paths; the session
    /// token already identifies the player to the gateway. What each spare
    /// costs: an entry in quinn's endpoint index and one in the connection's
    /// own table, ≈ 0.15 KiB per session at 100,000 sessions (measured: 2
    /// IDs instead of 5 for clients that accept 5 took 16.0–16.1 KiB per
    /// idle session to 15.6; docs/PERFORMANCE.md), and a
    /// NEW_CONNECTION_ID frame and a stateless-reset token (one HMAC) at
    /// every login. quinn 0.11 issued up to 7 spares with no setting for it; the
    /// quinn-proto patch adds `TransportConfig::max_issued_cids`
    /// (third_party/README.md). Zero-length connection IDs would drop them
    /// all, and with them migration and NAT rebinding, so they are not
    /// offered.
    pub issued_connection_ids: u32,
    /// The least time, in ms, the gateway waits for an acknowledgement before
    /// it probes a client (QUIC's probe timeout, PTO, RFC 9002 §6.2), before
    /// the client's ack delay (25 ms) and the backoff are added. Default
    /// **200**, TCP's minimum retransmission timeout; 0 is RFC 9002's own
    /// (`smoothed_rtt + 4 × rttvar`, at least 1 ms). Range 0–1,000.
    ///
    /// Why: where clients are a few milliseconds away (a LAN, a load test on
    /// loopback, a server beside its players) the RFC's PTO is about 30 ms, so
    /// any pause of the gateway longer than that (a store flush, the kernel
    /// scheduling something else) makes every session with data in flight
    /// probe, on both sides, while the gateway is behind: in live-50k on the
    /// 2-core machine, sends went from ≈ 27,000 to 135,000–192,000 datagrams
    /// a second and the sockets overflowed for tens of seconds after a
    /// journal rotation of the store or a one-second pause. With the floor,
    /// a one-second pause at 50,000 players cost 2–4 s of request p99 over a
    /// second instead of 20–22 s (4 runs of 4 met every SLO against 0 of 4,
    /// interleaved: docs/PERFORMANCE.md, "Session 25" and "Session 26"). The
    /// SDK's clients use the same floor (`outpost_client::MIN_PROBE_TIMEOUT`).
    ///
    /// What it costs: the floor applies wherever `smoothed_rtt + 4 × rttvar`
    /// is below it, which is most players (a steady 150 ms path is ≈ 170 ms).
    /// There, a packet genuinely lost at the end of a burst (nothing sent
    /// after it to reveal the loss) is sent again after ≈ 225 ms instead of
    /// the path's own PTO (≈ 95 ms at a 50 ms round trip); a loss followed by
    /// later packets is still detected at once, by reordering. Lower it (100
    /// halves that cost) for traffic where a lost last packet must be
    /// recovered fast and the gateway has CPU to spare; only the 200 ms
    /// default was measured under load. The setting is the vendored
    /// quinn-proto's `TransportConfig::min_probe_timeout` (third_party/README.md).
    pub min_probe_timeout_ms: u64,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            udp_recv_buffer_bytes: 8 * 1024 * 1024,
            udp_send_buffer_bytes: 4 * 1024 * 1024,
            stream_receive_window: 256 * 1024,
            receive_window: 512 * 1024,
            send_window: 512 * 1024,
            max_idle_timeout_ms: 30_000,
            mtu_discovery: false,
            segmentation_offload: true,
            issued_connection_ids: 2,
            min_probe_timeout_ms: 200,
        }
    }
}
