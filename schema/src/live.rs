//! Content, flag and telemetry values as owned Rust types, and their
//! FlatBuffers codec (used by `channel.rs`).

use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};

use crate::gen::outpost::wire as fb;
pub use crate::gen::outpost::wire::FlagKind;

/// One downloadable asset of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentAsset {
    pub url: String,
    pub sha256: String,
    pub size: u64,
}

/// A content manifest as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContentManifest {
    pub id: String,
    pub version: u64,
    pub min_client_version: String,
    pub assets: Vec<ContentAsset>,
    pub published_ms: u64,
    pub client_too_old: bool,
}

/// A flag's value for the session.
#[derive(Debug, Clone, PartialEq)]
pub enum FlagValue {
    Bool(bool),
    Number(f64),
    String(String),
    /// JSON text.
    Json(String),
}

/// A flag key and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Flag {
    pub key: String,
    pub value: FlagValue,
}

/// An error code and how often it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryErrorCount {
    pub code: String,
    pub count: u32,
}

fn s(v: Option<&str>) -> String {
    v.unwrap_or_default().to_owned()
}

type Offsets<'a, T> = WIPOffset<Vector<'a, ForwardsUOffset<T>>>;

pub(crate) fn write_manifest<'a>(
    b: &mut FlatBufferBuilder<'a>,
    m: &ContentManifest,
) -> WIPOffset<fb::ContentManifest<'a>> {
    let assets: Vec<_> = m
        .assets
        .iter()
        .map(|a| {
            let args = fb::ContentAssetArgs {
                url: Some(b.create_string(&a.url)),
                sha256: Some(b.create_string(&a.sha256)),
                size: a.size,
            };
            fb::ContentAsset::create(b, &args)
        })
        .collect();
    let args = fb::ContentManifestArgs {
        id: Some(b.create_string(&m.id)),
        version: m.version,
        min_client_version: Some(b.create_string(&m.min_client_version)),
        assets: Some(b.create_vector(&assets)),
        published_ms: m.published_ms,
        client_too_old: m.client_too_old,
    };
    fb::ContentManifest::create(b, &args)
}

pub(crate) fn read_manifest(m: fb::ContentManifest<'_>) -> ContentManifest {
    ContentManifest {
        id: s(m.id()),
        version: m.version(),
        min_client_version: s(m.min_client_version()),
        assets: m
            .assets()
            .map(|v| {
                v.iter()
                    .map(|a| ContentAsset {
                        url: s(a.url()),
                        sha256: s(a.sha256()),
                        size: a.size(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        published_ms: m.published_ms(),
        client_too_old: m.client_too_old(),
    }
}

pub(crate) fn write_manifests<'a>(
    b: &mut FlatBufferBuilder<'a>,
    v: &[ContentManifest],
) -> Offsets<'a, fb::ContentManifest<'a>> {
    let offs: Vec<_> = v.iter().map(|m| write_manifest(b, m)).collect();
    b.create_vector(&offs)
}

pub(crate) fn read_manifests(
    v: Option<Vector<'_, ForwardsUOffset<fb::ContentManifest<'_>>>>,
) -> Vec<ContentManifest> {
    v.map(|v| v.iter().map(read_manifest).collect())
        .unwrap_or_default()
}

pub(crate) fn write_flags<'a>(b: &mut FlatBufferBuilder<'a>, v: &[Flag]) -> Offsets<'a, fb::FlagValue<'a>> {
    let offs: Vec<_> = v
        .iter()
        .map(|f| {
            let key = Some(b.create_string(&f.key));
            let (kind, bool_value, number_value, text) = match &f.value {
                FlagValue::Bool(v) => (FlagKind::Bool, *v, 0.0, None),
                FlagValue::Number(n) => (FlagKind::Number, false, *n, None),
                FlagValue::String(t) => (FlagKind::String, false, 0.0, Some(b.create_string(t))),
                FlagValue::Json(t) => (FlagKind::Json, false, 0.0, Some(b.create_string(t))),
            };
            fb::FlagValue::create(
                b,
                &fb::FlagValueArgs {
                    key,
                    kind,
                    bool_value,
                    number_value,
                    text,
                },
            )
        })
        .collect();
    b.create_vector(&offs)
}

pub(crate) fn read_flags(v: Option<Vector<'_, ForwardsUOffset<fb::FlagValue<'_>>>>) -> Vec<Flag> {
    v.map(|v| {
        v.iter()
            .map(|f| Flag {
                key: s(f.key()),
                value: match f.kind() {
                    FlagKind::Bool => FlagValue::Bool(f.bool_value()),
                    FlagKind::Number => FlagValue::Number(f.number_value()),
                    FlagKind::Json => FlagValue::Json(s(f.text())),
                    _ => FlagValue::String(s(f.text())),
                },
            })
            .collect()
    })
    .unwrap_or_default()
}

pub(crate) fn write_error_counts<'a>(
    b: &mut FlatBufferBuilder<'a>,
    v: &[TelemetryErrorCount],
) -> Offsets<'a, fb::TelemetryErrorCount<'a>> {
    let offs: Vec<_> = v
        .iter()
        .map(|e| {
            let code = Some(b.create_string(&e.code));
            fb::TelemetryErrorCount::create(b, &fb::TelemetryErrorCountArgs { code, count: e.count })
        })
        .collect();
    b.create_vector(&offs)
}

pub(crate) fn read_error_counts(
    v: Option<Vector<'_, ForwardsUOffset<fb::TelemetryErrorCount<'_>>>>,
) -> Vec<TelemetryErrorCount> {
    v.map(|v| {
        v.iter()
            .map(|e| TelemetryErrorCount {
                code: s(e.code()),
                count: e.count(),
            })
            .collect()
    })
    .unwrap_or_default()
}
