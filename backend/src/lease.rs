//! The fencing-lease rule shared by every lease in the store: the matchmaker's
//! partition leases (`matchmaker::lease`) and the region's sweep lease
//! (`liveness`). Each keeps its own record and key; this is only the decision.

/// A lease as stored: who holds it, with which fencing token, until when.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    /// The holder.
    pub owner: &'a str,
    /// The fencing token of this holding.
    pub token: u64,
    /// Wall-clock ms.
    pub expires_ms: u64,
}

/// The fencing token `owner` holds the lease with after asking at `now_ms`,
/// or `None` while another holder's lease is still live. A renewal keeps the
/// token; taking over an expired (or absent) lease moves to the next one, so
/// writes fenced by the previous holder's token are refused.
pub fn token_for(held: Option<Held<'_>>, owner: &str, now_ms: u64) -> Option<u64> {
    match held {
        Some(l) if l.owner == owner => Some(l.token),
        Some(l) if l.expires_ms > now_ms => None,
        Some(l) => Some(l.token + 1),
        None => Some(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renew_keeps_the_token_takeover_fences_and_a_live_lease_is_refused() {
        let held = |owner, expires_ms| {
            Some(Held {
                owner,
                token: 7,
                expires_ms,
            })
        };
        assert_eq!(token_for(None, "a", 0), Some(1));
        assert_eq!(
            token_for(held("a", 100), "a", 500),
            Some(7),
            "own lease, even expired"
        );
        assert_eq!(token_for(held("b", 600), "a", 500), None, "another holder, live");
        assert_eq!(
            token_for(held("b", 500), "a", 500),
            Some(8),
            "expired: taken over"
        );
    }
}
