//! Content's plain types, their bounds and validation, and the stored encoding.

use serde::{Deserialize, Serialize};

use super::errors::ContentError;
use super::version::ClientVersion;
use crate::names::{is_valid_name, truncate};

/// Longest content id, in bytes (a short name, [`crate::names::MAX_NAME_BYTES`]).
pub const MAX_CONTENT_ID_BYTES: usize = crate::names::MAX_NAME_BYTES;
/// Most assets in one manifest.
pub const MAX_ASSETS: usize = 256;
/// Longest asset URL, in bytes.
pub const MAX_URL_BYTES: usize = 1024;
/// Largest encoded manifest record, in bytes (under the store's 100,000-byte value
/// limit). With long URLs this binds before [`MAX_ASSETS`].
pub const MAX_MANIFEST_BYTES: usize = 90_000;
/// Most distinct content ids ([`Content::list`](super::Content::list) returns
/// all of them in one read).
pub const MAX_CONTENT_IDS: usize = 1000;

/// One downloadable asset of a content version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    /// Where the client downloads it (`https://` or `http://`, typically a CDN).
    pub url: String,
    /// SHA-256 of its bytes, 64 lowercase hex characters; the client verifies it.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// An immutable, versioned content manifest: what a client must download to use
/// version `version` of content `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentManifest {
    /// Content id: 1..=64 bytes of `[a-z0-9_.-]` (e.g. `maps`, `season-3.store`).
    pub id: String,
    /// Version, ≥ 1; each publish of an id must use a higher version than the last.
    pub version: u64,
    /// Oldest client build that can use this content.
    pub min_client_version: ClientVersion,
    /// The assets, at most [`MAX_ASSETS`], with distinct URLs.
    pub assets: Vec<Asset>,
}

/// A published manifest and when and by whom it was published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedManifest {
    /// The manifest.
    pub manifest: ContentManifest,
    /// When it was published (unix milliseconds).
    pub published_ms: u64,
    /// Who published it.
    pub published_by: String,
}

fn invalid(msg: impl Into<String>) -> ContentError {
    ContentError::InvalidManifest(msg.into())
}

impl ContentManifest {
    /// Checks every rule of a manifest (id form, version ≥ 1, asset count, URL
    /// form and uniqueness, hash form).
    pub fn validate(&self) -> Result<(), ContentError> {
        if !is_valid_name(&self.id) {
            return Err(invalid(format!(
                "content id {:?}: use 1..=64 bytes of a-z, 0-9, '_', '-', '.'",
                truncate(&self.id, 64)
            )));
        }
        if self.version == 0 {
            return Err(invalid("version must be at least 1"));
        }
        if self.assets.len() > MAX_ASSETS {
            return Err(invalid(format!(
                "{} assets, limit {MAX_ASSETS}",
                self.assets.len()
            )));
        }
        let mut urls = std::collections::HashSet::new();
        for (i, a) in self.assets.iter().enumerate() {
            let scheme_ok = a.url.starts_with("https://") || a.url.starts_with("http://");
            let chars_ok = a.url.bytes().all(|b| b.is_ascii_graphic());
            if !scheme_ok || !chars_ok || a.url.len() > MAX_URL_BYTES {
                return Err(invalid(format!(
                    "asset {i}: URL {:?} must be an http(s) URL of at most {MAX_URL_BYTES} printable ASCII bytes",
                    truncate(&a.url, 80)
                )));
            }
            if !urls.insert(a.url.as_str()) {
                return Err(invalid(format!(
                    "asset {i}: duplicate URL {:?}",
                    truncate(&a.url, 80)
                )));
            }
            if a.sha256.len() != 64 || !a.sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(invalid(format!(
                    "asset {i}: sha256 must be 64 lowercase hex characters"
                )));
            }
        }
        Ok(())
    }

    /// Fails with [`ContentError::ClientTooOld`] if `client` is older than
    /// [`min_client_version`](Self::min_client_version).
    pub fn check_client(&self, client: ClientVersion) -> Result<(), ContentError> {
        check_client(self, client)
    }
}

/// Fails with [`ContentError::ClientTooOld`] (carrying the minimum) if `client`
/// is older than the manifest's minimum client version.
pub fn check_client(manifest: &ContentManifest, client: ClientVersion) -> Result<(), ContentError> {
    if client < manifest.min_client_version {
        Err(ContentError::ClientTooOld {
            min: manifest.min_client_version,
            client,
        })
    } else {
        Ok(())
    }
}

/// The latest-version pointer's JSON.
#[derive(Serialize, Deserialize)]
pub(crate) struct LatestRecord {
    pub version: u64,
}

/// Encodes a content record ([`crate::codec::encode_v1`]).
pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    crate::codec::encode_v1(v)
}

/// Decodes a content record written by [`encode`].
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(raw: &[u8]) -> Result<T, ContentError> {
    crate::codec::decode_v1(raw).map_err(|e| ContentError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn manifest(id: &str, version: u64) -> ContentManifest {
        ContentManifest {
            id: id.into(),
            version,
            min_client_version: ClientVersion::new(1, 2, 0),
            assets: vec![Asset {
                url: format!("https://cdn.example.com/{id}/{version}/a.pak"),
                sha256: "ab".repeat(32),
                size: 42,
            }],
        }
    }

    #[test]
    fn validation_catches_each_rule() {
        assert!(manifest("maps", 1).validate().is_ok());
        type Mutation = Box<dyn Fn(&mut ContentManifest)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("id", Box::new(|m| m.id = "Maps".into())),
            ("empty id", Box::new(|m| m.id.clear())),
            ("version", Box::new(|m| m.version = 0)),
            ("scheme", Box::new(|m| m.assets[0].url = "ftp://x/a".into())),
            ("space", Box::new(|m| m.assets[0].url = "https://x/a b".into())),
            (
                "long url",
                Box::new(|m| m.assets[0].url = format!("https://{}", "a".repeat(MAX_URL_BYTES))),
            ),
            ("hash len", Box::new(|m| m.assets[0].sha256 = "ab".into())),
            ("hash case", Box::new(|m| m.assets[0].sha256 = "AB".repeat(32))),
            ("dup", Box::new(|m| m.assets.push(m.assets[0].clone()))),
            (
                "count",
                Box::new(|m| {
                    m.assets = (0..=MAX_ASSETS)
                        .map(|i| Asset {
                            url: format!("https://c/{i}"),
                            sha256: "0".repeat(64),
                            size: 1,
                        })
                        .collect()
                }),
            ),
        ];
        for (name, mutate) in cases {
            let mut m = manifest("maps", 1);
            mutate(&mut m);
            assert!(
                matches!(m.validate(), Err(ContentError::InvalidManifest(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn client_version_check() {
        let m = manifest("maps", 1); // min 1.2.0
        for ok in ["1.2.0", "1.2.1", "1.10.0", "2.0.0"] {
            assert!(check_client(&m, ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for old in ["1.1.9", "0.9.0", "1.0.0"] {
            match check_client(&m, old.parse().unwrap()) {
                Err(ContentError::ClientTooOld { min, client }) => {
                    assert_eq!(min, ClientVersion::new(1, 2, 0));
                    assert_eq!(client.to_string(), old);
                }
                other => panic!("{old}: {other:?}"),
            }
        }
    }
}
