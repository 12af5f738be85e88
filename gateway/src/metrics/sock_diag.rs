//! One UDP socket's receive queue and drop counter, asked of the kernel over
//! netlink (`NETLINK_SOCK_DIAG`, the interface `ss` uses), for
//! [`super::udp`].
//!
//! Why not `/proc/net/udp{,6}`: the kernel builds that text from every UDP
//! socket of the network namespace, and its cost grows faster than the
//! number of sockets. On the 2-core development machine one read took 0.04 ms
//! with no other socket, 2.2 ms with 1,000, 50 ms with 8,000 and 217 ms with
//! 19,000 (docs/PERFORMANCE.md, "The receive-path monitor read every UDP
//! socket of the box"). The gateway reads its socket's figures four times a
//! second ([`crate::overload::SAMPLE_EVERY`]) on a runtime worker, so a box
//! it shares with many UDP sockets (dedicated game servers, a load generator,
//! a host-network pod) made it pay that, and stopped a worker for as long.
//! A sock_diag query names the socket by its local address and port, and the
//! kernel finds it with the same hash lookup that delivers its datagrams: a
//! few microseconds, whatever else is on the box, so it is asked on the
//! calling task; where it fails, `super::udp` reads `/proc` on tokio's
//! blocking pool instead.
//!
//! The request is the kernel's `inet_diag_req_v2` asking for
//! `INET_DIAG_SKMEMINFO`; the answer is an `inet_diag_msg` (whose inode
//! proves it is our socket) followed by the `sk_meminfo` array, whose
//! `SK_MEMINFO_DROPS` is the counter `/proc/net/udp` shows as `drops`
//! (`include/uapi/linux/inet_diag.h`, `sock_diag.h`, `net/ipv4/udp_diag.c`).
//! Layouts are fixed by the kernel ABI: integers in the host's byte order,
//! ports and addresses in network order.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::sockopt::{self, Timeout};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};

use super::udp::SocketFigures;

/// `SOCK_DIAG_BY_FAMILY`: the message type of a request and of its answer.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLMSG_ERROR`: the kernel's answer when it found no socket, or refused.
const NLMSG_ERROR: u16 = 2;
/// `NLM_F_REQUEST`, without `NLM_F_DUMP`: one socket, looked up exactly.
const NLM_F_REQUEST: u16 = 1;
/// `sizeof(struct nlmsghdr)`.
const NLMSG_HDR: usize = 16;
/// `sizeof(struct inet_diag_req_v2)`.
const REQ_LEN: usize = 56;
/// `sizeof(struct inet_diag_msg)`.
const MSG_LEN: usize = 72;
/// `INET_DIAG_SKMEMINFO`: the attribute carrying `sk_meminfo`.
const INET_DIAG_SKMEMINFO: u16 = 7;
/// Index of the receive-queue bytes (`SK_MEMINFO_RMEM_ALLOC`) in `sk_meminfo`.
const SK_MEMINFO_RMEM_ALLOC: usize = 0;
/// Index of the drop counter (`SK_MEMINFO_DROPS`) in `sk_meminfo`.
const SK_MEMINFO_DROPS: usize = 8;
/// How long to wait for the kernel's answer. It answers within the `sendto`
/// call; the bound only keeps a broken kernel from stopping the caller.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(100);

/// Why a query gave no figures (the caller falls back to `/proc/net/udp`).
#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    #[error("the kernel answered errno {0}")]
    Kernel(i32),
    #[error("malformed answer: {0}")]
    Malformed(&'static str),
    #[error("the kernel found socket inode {found}, not {wanted} (another socket on the same port?)")]
    OtherSocket { wanted: u64, found: u64 },
}

/// The figures of the UDP socket bound to `local` whose inode is `inode`.
pub fn query(local: SocketAddr, inode: u64) -> Result<SocketFigures, DiagError> {
    let fd = rustix::net::socket(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        Some(netlink::SOCK_DIAG),
    )
    .map_err(io::Error::from)?;
    sockopt::set_socket_timeout(&fd, Timeout::Recv, Some(ANSWER_TIMEOUT)).map_err(io::Error::from)?;
    rustix::net::sendto(
        &fd,
        &request(local),
        SendFlags::empty(),
        &SocketAddrNetlink::new(0, 0),
    )
    .map_err(io::Error::from)?;
    let mut buf = [0u8; 1024];
    let (n, _) = rustix::net::recv(&fd, &mut buf[..], RecvFlags::empty()).map_err(io::Error::from)?;
    parse_answer(&buf[..n.min(buf.len())], inode)
}

/// The request for the socket bound to `local`: a `nlmsghdr`, then an
/// `inet_diag_req_v2` for UDP in `local`'s family asking for `sk_meminfo`.
fn request(local: SocketAddr) -> Vec<u8> {
    let mut m = Vec::with_capacity(NLMSG_HDR + REQ_LEN);
    m.extend_from_slice(&((NLMSG_HDR + REQ_LEN) as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    let family = match local {
        SocketAddr::V4(_) => libc_family::AF_INET,
        SocketAddr::V6(_) => libc_family::AF_INET6,
    };
    m.extend_from_slice(&[family, libc_family::IPPROTO_UDP]);
    m.push(1 << (INET_DIAG_SKMEMINFO - 1)); // idiag_ext
    m.push(0); // pad
    m.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state

    // inet_diag_sockid. The kernel's UDP lookup swaps source and destination
    // ("for historical reasons", udp_diag.c): the socket that would receive a
    // datagram sent to `dst:dport` from any `src:sport`. So our own address
    // and port go in the destination fields.
    m.extend_from_slice(&0u16.to_be_bytes()); // sport
    m.extend_from_slice(&local.port().to_be_bytes()); // dport
    m.extend_from_slice(&[0u8; 16]); // src
    m.extend_from_slice(&address_bytes(local.ip())); // dst
    m.extend_from_slice(&0u32.to_ne_bytes()); // interface: any
    m.extend_from_slice(&u32::MAX.to_ne_bytes()); // cookie: INET_DIAG_NOCOOKIE
    m.extend_from_slice(&u32::MAX.to_ne_bytes());
    debug_assert_eq!(m.len(), NLMSG_HDR + REQ_LEN);
    m
}

/// An address as the 16 bytes of `idiag_src`/`idiag_dst` (IPv4 in the first four).
fn address_bytes(ip: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

/// Reads the kernel's answer: the figures, if it is the socket with `inode`.
fn parse_answer(buf: &[u8], inode: u64) -> Result<SocketFigures, DiagError> {
    let u16_at = |at: usize| -> Result<u16, DiagError> {
        let b = buf.get(at..at + 2).ok_or(DiagError::Malformed("short"))?;
        Ok(u16::from_ne_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| -> Result<u32, DiagError> {
        let b = buf.get(at..at + 4).ok_or(DiagError::Malformed("short"))?;
        Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let len = (u32_at(0)? as usize).min(buf.len());
    match u16_at(4)? {
        // `struct nlmsgerr`: the negative errno first.
        NLMSG_ERROR => return Err(DiagError::Kernel((u32_at(NLMSG_HDR)? as i32).wrapping_neg())),
        SOCK_DIAG_BY_FAMILY => {}
        _ => return Err(DiagError::Malformed("unexpected message type")),
    }
    let msg = NLMSG_HDR;
    if len < msg + MSG_LEN {
        return Err(DiagError::Malformed("short inet_diag_msg"));
    }
    // idiag_inode is 32 bits wide; socket inodes fit in it.
    let found = u64::from(u32_at(msg + 68)?);
    if found != inode & u64::from(u32::MAX) {
        return Err(DiagError::OtherSocket { wanted: inode, found });
    }
    // The attributes (`struct rtattr`: length, type, payload; 4-byte aligned).
    let mut at = msg + MSG_LEN;
    while at + 4 <= len {
        let (alen, atype) = (u16_at(at)? as usize, u16_at(at + 2)?);
        if alen < 4 || at + alen > len {
            return Err(DiagError::Malformed("attribute length"));
        }
        if atype == INET_DIAG_SKMEMINFO {
            let value = |i: usize| -> Result<u64, DiagError> {
                if 4 + 4 * (i + 1) > alen {
                    return Err(DiagError::Malformed("short sk_meminfo"));
                }
                Ok(u64::from(u32_at(at + 4 + 4 * i)?))
            };
            return Ok(SocketFigures {
                queue_bytes: value(SK_MEMINFO_RMEM_ALLOC)?,
                drops: value(SK_MEMINFO_DROPS)?,
            });
        }
        at += (alen + 3) & !3;
    }
    Err(DiagError::Malformed("no sk_meminfo attribute"))
}

/// The two address families and the protocol number the request names
/// (`AF_INET`, `AF_INET6`, `IPPROTO_UDP` on Linux).
mod libc_family {
    pub const AF_INET: u8 = 2;
    pub const AF_INET6: u8 = 10;
    pub const IPPROTO_UDP: u8 = 17;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::udp::{inode_of, parse, test_support};

    /// The kernel's figures for a socket nobody reads, over netlink and in
    /// `/proc/net/udp`, agree: the queue fills, the drops count.
    #[test]
    fn netlink_and_proc_agree_on_a_flooded_socket() {
        let sink = test_support::small_sink();
        let (local, inode) = (sink.local_addr().unwrap(), inode_of(&sink).unwrap());
        assert_eq!(query(local, inode).unwrap(), SocketFigures::default());

        test_support::flood(&sink);
        let diag = query(local, inode).unwrap();
        let proc = parse(&std::fs::read_to_string("/proc/net/udp").unwrap(), inode).unwrap();
        assert!(diag.drops > 0, "200 KB into a buffer of a few KB: {diag:?}");
        assert_eq!(diag.drops, proc.drops);
        assert!(diag.queue_bytes > 0 && proc.queue_bytes > 0, "{diag:?} {proc:?}");
    }

    /// An IPv6 socket bound to `[::]` (the gateway's dual-stack default) is
    /// found too.
    #[test]
    fn a_dual_stack_socket_is_found() {
        let Ok(sock) = std::net::UdpSocket::bind("[::]:0") else {
            eprintln!("no IPv6 on this machine");
            return;
        };
        let inode = inode_of(&sock).unwrap();
        assert_eq!(
            query(sock.local_addr().unwrap(), inode).unwrap(),
            SocketFigures::default()
        );
    }

    /// Asked for a port where another socket is bound, the inode check refuses
    /// its figures; asked for a port nobody binds, the kernel says so.
    #[test]
    fn another_socket_or_none_is_an_error() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b_inode = inode_of(&b).unwrap();
        assert!(matches!(
            query(a.local_addr().unwrap(), b_inode),
            Err(DiagError::OtherSocket { .. })
        ));
        let gone = a.local_addr().unwrap();
        drop(a);
        assert!(matches!(query(gone, b_inode), Err(DiagError::Kernel(2))));
    }

    #[test]
    fn truncated_or_foreign_answers_are_malformed() {
        assert!(matches!(parse_answer(&[], 1), Err(DiagError::Malformed(_))));
        let mut answer = vec![0u8; NLMSG_HDR + MSG_LEN];
        answer[..4].copy_from_slice(&((NLMSG_HDR + MSG_LEN) as u32).to_ne_bytes());
        answer[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        answer[NLMSG_HDR + 68..NLMSG_HDR + 72].copy_from_slice(&9u32.to_ne_bytes());
        assert!(matches!(
            parse_answer(&answer, 9),
            Err(DiagError::Malformed("no sk_meminfo attribute"))
        ));
        // An attribute claiming more bytes than the answer has.
        answer.extend_from_slice(&200u16.to_ne_bytes());
        answer.extend_from_slice(&INET_DIAG_SKMEMINFO.to_ne_bytes());
        let len = answer.len() as u32;
        answer[..4].copy_from_slice(&len.to_ne_bytes());
        assert!(matches!(
            parse_answer(&answer, 9),
            Err(DiagError::Malformed("attribute length"))
        ));
        answer[4..6].copy_from_slice(&99u16.to_ne_bytes());
        assert!(matches!(
            parse_answer(&answer, 9),
            Err(DiagError::Malformed("unexpected message type"))
        ));
    }
}
