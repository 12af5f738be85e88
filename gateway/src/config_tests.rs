//! Config parsing and validation tests (`config.rs`).
use super::*;

#[test]
fn defaults_are_valid() {
    GatewayConfig::default().validate().unwrap();
}

#[test]
fn fdb_stores_are_selected_by_config() {
    let c: GatewayConfig = toml::from_str(
        "[store]\nbackend = \"fdb\"\n[store.fdb]\ncluster_file = \"/etc/foundationdb/eu.cluster\"\n\
         [global_store]\nbackend = \"fdb\"\n[global_store.fdb]\ncluster_file = \"/etc/foundationdb/global.cluster\"\n",
    )
    .unwrap();
    assert!(c.uses_fdb());
    assert!(!GatewayConfig::default().uses_fdb());
    let err = c.validate();
    if cfg!(feature = "fdb") {
        err.unwrap();
    } else {
        // A build without the feature says so at startup, naming the feature.
        let msg = err.unwrap_err().to_string();
        assert!(msg.contains("`fdb` cargo feature"), "{msg}");
    }
}

#[test]
fn toml_overrides_only_what_it_names() {
    let c: GatewayConfig = toml::from_str(
        "region = \"eu-west\"\nforeign_login_policy = \"redirect\"\n[limits]\nmax_sessions = 10\n[drain]\nwindow_ms = 5\ndeadline_ms = 6\n",
    )
    .unwrap();
    assert_eq!(c.region, "eu-west");
    assert_eq!(c.foreign_login_policy, ForeignLoginPolicy::Redirect);
    assert_eq!(c.limits.max_sessions, 10);
    assert_eq!(c.limits.max_channels, LimitsConfig::default().max_channels);
    c.validate().unwrap();
}

#[test]
fn admin_tokens_are_checked_at_startup() {
    let c: GatewayConfig = toml::from_str(&format!("admin_token = \"{}\"", "k".repeat(32))).unwrap();
    c.validate().unwrap();
    assert!(
        !format!("{c:?}").contains(&"k".repeat(32)),
        "Debug hides the token"
    );
    let short: GatewayConfig = toml::from_str("admin_token = \"hunter2\"").unwrap();
    assert!(short.validate().is_err());
    let both = GatewayConfig {
        admin_token_file: Some("t".into()),
        ..c
    };
    assert!(both.validate().is_err());
}

#[test]
fn unknown_keys_and_contradictions_are_refused() {
    assert!(toml::from_str::<GatewayConfig>("regoin = \"x\"").is_err());
    let mut c = GatewayConfig::default();
    c.session.idle_timeout_ms = c.session.heartbeat_interval_ms;
    assert!(c.validate().is_err());
    let mut c = GatewayConfig::default();
    c.tls.cert_path = Some("x".into());
    assert!(c.validate().is_err());
    for ids in [0, 1, 9] {
        let mut c = GatewayConfig::default();
        c.transport.issued_connection_ids = ids;
        assert!(c.validate().is_err(), "{ids} connection ids");
    }
    let mut c = GatewayConfig::default();
    c.transport.min_probe_timeout_ms = 1_001;
    assert!(c.validate().is_err(), "a probe timeout floor above a second");
    c.transport.min_probe_timeout_ms = 0;
    c.validate().unwrap();
    let mut c = GatewayConfig::default();
    c.tls.reload_check_interval_ms = 5;
    assert!(c.validate().is_err(), "a 5 ms certificate poll is a typo");
    c.tls.reload_check_interval_ms = 0;
    c.validate().unwrap();
    let mut c = GatewayConfig::default();
    c.limits.request_rate_per_sec = f64::NAN;
    assert!(c.validate().is_err());
    let mut c = GatewayConfig::default();
    c.limits.max_refused_requests_per_window = 0;
    assert!(c.validate().is_err(), "a session could not be refused once");
    c.limits.max_refused_requests_per_window = 1;
    c.validate().unwrap();
    c.limits.max_failed_channels_per_window = 0;
    assert!(
        c.validate().is_err(),
        "a session could not have a channel refused once"
    );
    c.limits.max_failed_channels_per_window = 1;
    c.validate().unwrap();
    let c = GatewayConfig {
        region: "EU_West".into(),
        ..GatewayConfig::default()
    };
    assert!(c.validate().is_err(), "region names follow the keyspace rules");
    let mut c = GatewayConfig::default();
    c.admin_timeouts.head_ms = 0;
    assert!(
        c.validate().is_err(),
        "a zero head bound would close every connection"
    );
    let mut c = GatewayConfig::default();
    c.admin_timeouts.body_idle_ms = c.admin_timeouts.body_ms + 1;
    assert!(c.validate().is_err(), "a pause longer than the whole body");
    let mut c = GatewayConfig::default();
    c.admin_timeouts.shutdown_grace_ms = 0;
    assert!(
        c.validate().is_err(),
        "a zero shutdown grace would cut every request in progress at shutdown"
    );
    let c: GatewayConfig = toml::from_str("[admin_timeouts]\nhead_ms = 2500").unwrap();
    assert_eq!(c.admin_timeouts.head_ms, 2500);
    assert_eq!(
        c.admin_timeouts.body_ms, 300_000,
        "the others keep their defaults"
    );
    assert_eq!(c.admin_timeouts.shutdown_grace_ms, 10_000);
}

/// `deploy/gateway.toml` is the annotated example operators start from: what it
/// sets must be exactly the defaults, and it must name every key (keys whose
/// default is "none" appear commented out), so that a key added to
/// `GatewayConfig` without its line there fails here.
#[test]
fn deploy_example_is_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/gateway.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = GatewayConfig::from_file(&path).unwrap();
    parsed.validate().unwrap();
    // No PartialEq on the config (it holds backend types); the pretty Debug
    // form lists every field with its value.
    let defaults = format!("{:#?}", GatewayConfig::default());
    assert_eq!(
        format!("{parsed:#?}"),
        defaults,
        "deploy/gateway.toml differs from the defaults"
    );
    let mut missing = Vec::new();
    for line in defaults.lines() {
        let Some((name, _)) = line.trim_start().split_once(": ") else {
            continue;
        };
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        let named = text.lines().any(|l| {
            let l = l.trim_start_matches('#').trim();
            l.starts_with(&format!("{name} =")) || l == format!("[{name}]")
        });
        if !named {
            missing.push(name.to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "keys missing from deploy/gateway.toml: {missing:?}"
    );
}

/// The Kubernetes ConfigMap's `gateway.toml` (deploy/k8s/gateway.yaml) is a
/// valid configuration.
#[test]
fn kubernetes_configmap_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s/gateway.yaml");
    let yaml = std::fs::read_to_string(path).unwrap();
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "gateway.toml: |").skip(1);
    let mut toml_text = String::new();
    for line in lines.by_ref() {
        if !line.is_empty() && !line.starts_with("    ") {
            break;
        }
        toml_text.push_str(line.strip_prefix("    ").unwrap_or(line));
        toml_text.push('\n');
    }
    let c: GatewayConfig = toml::from_str(&toml_text).unwrap();
    assert_eq!(c.region, "eu-west");
    assert_eq!(c.log.format, LogFormat::Json);
    assert!(c.tls.cert_path.is_some());
    c.validate().unwrap();
}
