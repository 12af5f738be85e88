//! What a gateway does when a player logs in at a region that is not their home:
//! the configurable [`ForeignLoginPolicy`] and the pure [`decide_login`] function.
//!
//! The gateway names the policy in its config (`foreign_login = "serve_via_home"`,
//! `"redirect"` or `"transfer"`) and calls [`decide_login`] after login; the
//! backend only decides, the gateway acts.

use serde::{Deserialize, Serialize};

/// Policy for a login at a gateway whose region is not the player's home.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForeignLoginPolicy {
    /// Serve the session here, reading and writing the home region's keyspace
    /// (more latency to the store, no data movement). The default: it never
    /// refuses a player and never moves data behind their back. Falls back to
    /// [`ForeignLoginPolicy::Redirect`] when this gateway has no handle on the
    /// home region's store.
    #[default]
    ServeViaHome,
    /// Tell the client to reconnect to a gateway of its home region.
    Redirect,
    /// Move the player's data here (cross-region transfer), then serve locally.
    Transfer,
}

/// The facts [`decide_login`] needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginContext<'a> {
    /// The region of the gateway the player connected to.
    pub gateway_region: &'a str,
    /// The player's home region (from identity; a token's `home` claim may be stale).
    pub home_region: &'a str,
    /// Whether this gateway has a store handle for the home region.
    pub home_reachable: bool,
    /// Whether the player has an unfinished transfer
    /// ([`Transfer::active_for_player`](super::Transfer::active_for_player)).
    pub transfer_in_progress: bool,
}

/// What the gateway should do with the login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginAction {
    /// The player is home: serve with this region's services.
    ServeLocally,
    /// Serve here using the home region's services.
    ServeViaHome {
        /// The home region.
        home: String,
    },
    /// Tell the client to reconnect to its home region.
    Redirect {
        /// The home region.
        home: String,
    },
    /// Start (or resume) a transfer of the player to this region, then serve
    /// locally.
    TransferHere {
        /// Where the data comes from.
        from: String,
    },
    /// A transfer is moving the player: ask the client to retry shortly (the
    /// gateway may instead resume the transfer itself).
    RetryLater,
}

/// Decides what to do with a login; pure (no I/O).
pub fn decide_login(policy: ForeignLoginPolicy, ctx: LoginContext<'_>) -> LoginAction {
    if ctx.transfer_in_progress {
        return LoginAction::RetryLater;
    }
    if ctx.gateway_region == ctx.home_region {
        return LoginAction::ServeLocally;
    }
    let home = ctx.home_region.to_owned();
    match policy {
        ForeignLoginPolicy::ServeViaHome if ctx.home_reachable => LoginAction::ServeViaHome { home },
        ForeignLoginPolicy::ServeViaHome | ForeignLoginPolicy::Redirect => LoginAction::Redirect { home },
        ForeignLoginPolicy::Transfer => LoginAction::TransferHere { from: home },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(gw: &'a str, home: &'a str, reachable: bool, busy: bool) -> LoginContext<'a> {
        LoginContext {
            gateway_region: gw,
            home_region: home,
            home_reachable: reachable,
            transfer_in_progress: busy,
        }
    }

    #[test]
    fn decisions() {
        use ForeignLoginPolicy::*;
        for p in [ServeViaHome, Redirect, Transfer] {
            assert_eq!(
                decide_login(p, ctx("eu", "eu", false, false)),
                LoginAction::ServeLocally
            );
            assert_eq!(
                decide_login(p, ctx("eu", "us", true, true)),
                LoginAction::RetryLater
            );
        }
        let home = || "us".to_string();
        assert_eq!(
            decide_login(ServeViaHome, ctx("eu", "us", true, false)),
            LoginAction::ServeViaHome { home: home() }
        );
        assert_eq!(
            decide_login(ServeViaHome, ctx("eu", "us", false, false)),
            LoginAction::Redirect { home: home() }
        );
        assert_eq!(
            decide_login(Redirect, ctx("eu", "us", true, false)),
            LoginAction::Redirect { home: home() }
        );
        assert_eq!(
            decide_login(Transfer, ctx("eu", "us", true, false)),
            LoginAction::TransferHere { from: home() }
        );
    }

    #[test]
    fn config_names() {
        #[derive(Deserialize)]
        struct Cfg {
            foreign_login: ForeignLoginPolicy,
        }
        let parse = |s: &str| serde_json::from_str::<Cfg>(s).map(|c| c.foreign_login);
        assert_eq!(
            parse(r#"{"foreign_login":"serve_via_home"}"#).unwrap(),
            ForeignLoginPolicy::ServeViaHome
        );
        assert_eq!(
            parse(r#"{"foreign_login":"redirect"}"#).unwrap(),
            ForeignLoginPolicy::Redirect
        );
        assert_eq!(
            parse(r#"{"foreign_login":"transfer"}"#).unwrap(),
            ForeignLoginPolicy::Transfer
        );
        assert!(parse(r#"{"foreign_login":"teleport"}"#).is_err());
        assert_eq!(ForeignLoginPolicy::default(), ForeignLoginPolicy::ServeViaHome);
    }
}
