//! [`ClientVersion`]: the `major.minor.patch` version a client build reports, used
//! by content (minimum client version) and flags (client version ranges).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A client build version, `major.minor.patch`, ordered numerically
/// (`1.10.0 > 1.9.3`). Serialized as its string form (`"1.10.0"`).
///
/// Parsing is strict: exactly three dot-separated decimal numbers, each `0` or
/// without leading zeros, each fitting in a `u32`. No pre-release or build
/// suffixes: a game build either is or is not at least a given version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

/// A string that is not a `major.minor.patch` client version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid client version {0:?}: expected major.minor.patch, e.g. 1.4.0")]
pub struct InvalidClientVersion(pub String);

impl ClientVersion {
    /// `major.minor.patch`.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        ClientVersion { major, minor, patch }
    }
}

impl FromStr for ClientVersion {
    type Err = InvalidClientVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidClientVersion(s.chars().take(32).collect());
        let mut parts = s.split('.');
        let mut next = || -> Result<u32, InvalidClientVersion> {
            let p = parts.next().ok_or_else(bad)?;
            let digits_ok = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
            if !digits_ok || (p.len() > 1 && p.starts_with('0')) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let v = ClientVersion::new(next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(v)
    }
}

impl TryFrom<String> for ClientVersion {
    type Error = InvalidClientVersion;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ClientVersion> for String {
    fn from(v: ClientVersion) -> String {
        v.to_string()
    }
}

impl fmt::Display for ClientVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_orders_and_round_trips() {
        let v: ClientVersion = "1.10.0".parse().unwrap();
        assert_eq!(v, ClientVersion::new(1, 10, 0));
        assert!(v > "1.9.99".parse().unwrap());
        assert!(v < "2.0.0".parse().unwrap());
        assert_eq!(v.to_string(), "1.10.0");
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, "\"1.10.0\"");
        assert_eq!(serde_json::from_str::<ClientVersion>(&json).unwrap(), v);
        assert_eq!(
            "0.0.0".parse::<ClientVersion>().unwrap(),
            ClientVersion::new(0, 0, 0)
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "1.02.3",
            "a.b.c",
            "1.2.-3",
            "1..3",
            "1.2.3-beta",
            "99999999999.0.0",
            " 1.2.3",
        ] {
            assert!(bad.parse::<ClientVersion>().is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<ClientVersion>("\"1.2\"").is_err());
    }
}
