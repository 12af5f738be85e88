//! The admin API's authentication and input checks, and the `outpost-admin`
//! CLI, against real gateways on loopback with the real embedded store.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;

use anyhow::{Context, Result};
use common::*;
use serde_json::Value;

async fn call(
    addr: SocketAddr,
    method: &'static str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> Result<String> {
    let (path, body, token) = (path.to_owned(), body.to_owned(), token.map(str::to_owned));
    tokio::task::spawn_blocking(move || http_with_token(addr, method, &path, &body, token.as_deref())).await?
}

fn flag_json(key: &str, color: &str) -> String {
    format!(
        r#"{{"key":"{key}","default":{{"type":"string","value":"plain"}},
            "rules":[{{"id":"android","when":{{"platforms":["android"]}},"value":{{"type":"string","value":"{color}"}}}}]}}"#
    )
}

/// The stored flag `key` (version and value) and its audit records, read with
/// the right token.
async fn flag_and_audit(admin: SocketAddr, key: &str) -> Result<(Value, usize)> {
    let (status, flag) =
        status_and_json(&call(admin, "GET", &format!("/flags/{key}"), "", Some(TEST_ADMIN_TOKEN)).await?);
    let flag = if status == 404 { Value::Null } else { flag };
    let (status, audit) = status_and_json(
        &call(
            admin,
            "GET",
            &format!("/audit?target=flag:{key}"),
            "",
            Some(TEST_ADMIN_TOKEN),
        )
        .await?,
    );
    assert_eq!(status, 200, "{audit}");
    Ok((flag, audit.as_array().context("audit list")?.len()))
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_refused_and_changes_nothing() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    assert_eq!(
        gw.running.as_ref().map(|r| r.admin_token()),
        Some(TEST_ADMIN_TOKEN)
    );
    let (status, _) = status_and_json(
        &call(
            gw.admin,
            "PUT",
            "/flags/theme?actor=alice",
            &flag_json("theme", "green"),
            Some(TEST_ADMIN_TOKEN),
        )
        .await?,
    );
    assert_eq!(status, 200);
    let before = flag_and_audit(gw.admin, "theme").await?;
    assert_eq!((before.0["version"].as_u64(), before.1), (Some(1), 1));

    let wrong = "x".repeat(TEST_ADMIN_TOKEN.len());
    let near = format!("{}X", &TEST_ADMIN_TOKEN[..TEST_ADMIN_TOKEN.len() - 1]);
    for token in [None, Some(wrong.as_str()), Some(near.as_str()), Some("")] {
        for (method, path, body) in [
            ("PUT", "/flags/theme?actor=mallory", flag_json("theme", "red")),
            ("PUT", "/flags/other?actor=mallory", flag_json("other", "red")),
            ("POST", "/drain", String::new()),
            ("GET", "/status", String::new()),
            ("GET", "/audit", String::new()),
        ] {
            let r = call(gw.admin, method, path, &body, token).await?;
            let (status, body) = status_and_json(&r);
            assert_eq!(status, 401, "{method} {path} with {token:?}: {r}");
            assert_eq!(body["error"], "unauthorized", "{r}");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
            assert!(!r.contains(TEST_ADMIN_TOKEN), "the answer never echoes the token");
        }
    }
    // Another scheme with the right token is refused too.
    let basic = call(
        gw.admin,
        "POST",
        "/drain",
        "",
        Some(&format!("x{TEST_ADMIN_TOKEN}")),
    )
    .await?;
    assert_eq!(status_and_json(&basic).0, 401, "{basic}");

    // Nothing changed: same flag, same audit log, no new flag, not draining.
    assert_eq!(flag_and_audit(gw.admin, "theme").await?, before);
    assert_eq!(flag_and_audit(gw.admin, "other").await?, (Value::Null, 0));
    assert!(!gw.handle.is_draining());
    let (status, s) = status_and_json(&call(gw.admin, "GET", "/status", "", Some(TEST_ADMIN_TOKEN)).await?);
    assert_eq!((status, &s["draining"]), (200, &Value::Bool(false)));

    // Probes and the scrape need no token; the refusals were counted.
    let health = call(gw.admin, "GET", "/healthz", "", None).await?;
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok"),
        "{health}"
    );
    let ready = call(gw.admin, "GET", "/readyz", "", None).await?;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let metrics = call(gw.admin, "GET", "/metrics", "", None).await?;
    // The series exist from the start at zero; the refusals made them count.
    let count = |reason: &str| {
        let series = format!("outpost_admin_unauthorized_total{{reason=\"{reason}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str())?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(count("missing") >= 1 && count("wrong") >= 1, "{metrics}");

    // The right token works.
    let drained = call(gw.admin, "POST", "/drain", "", Some(TEST_ADMIN_TOKEN)).await?;
    assert!(drained.starts_with("HTTP/1.1 202"), "{drained}");
    assert!(gw.handle.is_draining());
    Ok(())
}

#[tokio::test]
async fn malformed_flags_are_refused_naming_the_field_and_nothing_is_written() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let good = flag_json("theme", "green");
    assert_eq!(
        status_and_json(
            &call(
                gw.admin,
                "PUT",
                "/flags/theme?actor=alice",
                &good,
                Some(TEST_ADMIN_TOKEN)
            )
            .await?
        )
        .0,
        200
    );
    let before = flag_and_audit(gw.admin, "theme").await?;
    let rule = |rule: &str| {
        format!(r#"{{"key":"theme","default":{{"type":"string","value":"plain"}},"rules":[{rule}]}}"#)
    };
    // (what, body, error code, field)
    let cases = [
        (
            "percentage over 100 %",
            rule(r#"{"id":"r","value":{"type":"string","value":"x"},"percentage_bp":20000}"#),
            "invalid_flag",
            "rules[0].percentage_bp",
        ),
        (
            "inverted client-version range",
            rule(
                r#"{"id":"r","when":{"client_version":{"min":"2.0.0","max":"1.0.0"}},"value":{"type":"string","value":"x"}}"#,
            ),
            "invalid_flag",
            "rules[0].when.client_version",
        ),
        (
            "unknown value type",
            rule(r#"{"id":"r","value":{"type":"colour","value":"x"}}"#),
            "invalid_json",
            "rules[0].value",
        ),
        (
            "value of the wrong type",
            rule(r#"{"id":"r","value":{"type":"number","value":3}}"#),
            "invalid_flag",
            "rules[0].value",
        ),
        (
            "empty rule id",
            rule(r#"{"id":"","value":{"type":"string","value":"x"}}"#),
            "invalid_flag",
            "rules[0].id",
        ),
        (
            "negative percentage",
            rule(r#"{"id":"r","value":{"type":"string","value":"x"},"percentage_bp":-1}"#),
            "invalid_json",
            "rules[0].percentage_bp",
        ),
        (
            "unknown condition",
            rule(r#"{"id":"r","when":{"region":["eu"]},"value":{"type":"string","value":"x"}}"#),
            "invalid_json",
            "rules[0].when",
        ),
        ("empty key", flag_json("", "red"), "invalid_flag", "key"),
    ];
    for (what, body, code, field) in &cases {
        let r = call(
            gw.admin,
            "PUT",
            "/flags/theme?actor=mallory&expected_version=1",
            body,
            Some(TEST_ADMIN_TOKEN),
        )
        .await?;
        let (status, err) = status_and_json(&r);
        assert_eq!(status, 400, "{what}: {r}");
        assert_eq!(err["error"], *code, "{what}: {r}");
        let got = err["field"].as_str().unwrap_or_default();
        assert!(
            got.starts_with(field),
            "{what}: field {got:?}, expected {field}: {r}"
        );
        assert!(
            err["message"].as_str().is_some_and(|m| m.contains(field)),
            "{what}: the message names the field: {r}"
        );
    }
    // Not JSON at all, and an empty body.
    for body in ["{\"key\": \"theme\",", ""] {
        let r = call(
            gw.admin,
            "PUT",
            "/flags/theme?actor=mallory",
            body,
            Some(TEST_ADMIN_TOKEN),
        )
        .await?;
        let (status, err) = status_and_json(&r);
        assert_eq!(
            (status, err["error"].as_str()),
            (400, Some("invalid_json")),
            "{r}"
        );
    }
    // A malformed query parameter.
    let r = call(
        gw.admin,
        "PUT",
        "/flags/theme?expected_version=first",
        &good,
        Some(TEST_ADMIN_TOKEN),
    )
    .await?;
    assert_eq!(status_and_json(&r).1["error"], "invalid_query", "{r}");
    // A malformed flag under a new key creates nothing either.
    let r = call(
        gw.admin,
        "PUT",
        "/flags/fresh?actor=mallory",
        r#"{"key":"fresh","default":{"type":"bool","value":false},"rules":[{"id":"r","value":{"type":"bool","value":true},"percentage_bp":10001}]}"#,
        Some(TEST_ADMIN_TOKEN),
    )
    .await?;
    assert_eq!(status_and_json(&r).0, 400, "{r}");

    // Nothing was written: the flag, its version and the audit log are as before.
    assert_eq!(flag_and_audit(gw.admin, "theme").await?, before);
    assert_eq!(flag_and_audit(gw.admin, "fresh").await?, (Value::Null, 0));
    let (_, all) = status_and_json(&call(gw.admin, "GET", "/audit", "", Some(TEST_ADMIN_TOKEN)).await?);
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");

    // A rollout plan that breaks a rule is refused the same way.
    let plan =
        r#"{"flag":"theme","rule":"android","plan":{"stages":[{"percentage_bp":20000,"min_dwell_ms":0}]}}"#;
    let r = call(
        gw.admin,
        "POST",
        "/rollouts?actor=mallory",
        plan,
        Some(TEST_ADMIN_TOKEN),
    )
    .await?;
    let (status, err) = status_and_json(&r);
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_plan")),
        "{r}"
    );
    let (_, running) =
        status_and_json(&call(gw.admin, "GET", "/rollouts", "", Some(TEST_ADMIN_TOKEN)).await?);
    assert_eq!(running, serde_json::json!([]));
    Ok(())
}

#[tokio::test]
async fn a_gateway_without_a_configured_token_generates_a_private_one_and_reuses_it() -> Result<()> {
    let world = World::new().await?;
    assert!(
        world
            .gateway(|c| c.admin_token = Some("hunter2".into()))
            .await
            .is_err(),
        "a short token is refused at startup"
    );
    let gw = world.gateway(|c| c.admin_token = None).await?;
    let token = gw.running.as_ref().context("running")?.admin_token().to_owned();
    let path = world.dir.path().join("data/admin.token");
    assert_eq!(std::fs::read_to_string(&path)?.trim(), token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
    }
    let ok = call(gw.admin, "GET", "/status", "", Some(&token)).await?;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let refused = call(gw.admin, "GET", "/status", "", Some(TEST_ADMIN_TOKEN)).await?;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    drop(gw);
    // The next start of the same data directory reuses it.
    let again = world.gateway(|c| c.admin_token = None).await?;
    assert_eq!(again.running.as_ref().context("running")?.admin_token(), token);
    Ok(())
}

/// Runs `outpost-admin` against `admin` with `args`, off the runtime's threads.
async fn cli<S: AsRef<std::ffi::OsStr>>(admin: SocketAddr, cwd: &Path, args: &[S]) -> Result<Output> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_outpost-admin"));
    cmd.current_dir(cwd)
        .env_remove("OUTPOST_ADMIN_TOKEN")
        .env_remove("OUTPOST_ADMIN_TOKEN_FILE")
        .env_remove("OUTPOST_ADMIN")
        .args(["--admin", &admin.to_string()])
        .args(args);
    Ok(tokio::task::spawn_blocking(move || cmd.output()).await??)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn the_cli_operates_a_gateway() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    std::fs::write(d.join("flag.json"), flag_json("theme", "green"))?;
    std::fs::write(
        d.join("bad-flag.json"),
        r#"{"key":"theme","default":{"type":"bool","value":false},
            "rules":[{"id":"r","value":{"type":"bool","value":true},"percentage_bp":12000}]}"#,
    )?;
    std::fs::write(
        d.join("manifest.json"),
        format!(
            r#"{{"id":"maps","version":1,"min_client_version":"1.0.0",
                "assets":[{{"url":"https://cdn.example/maps-1.pak","sha256":"{}","size":1024}}]}}"#,
            "ab".repeat(32)
        ),
    )?;
    std::fs::write(
        d.join("plan.json"),
        r#"{"flag":"theme","rule":"android","plan":{"stages":[
            {"percentage_bp":100,"min_dwell_ms":600000},{"percentage_bp":10000,"min_dwell_ms":0}]}}"#,
    )?;
    let ok = |o: &Output| {
        assert!(o.status.success(), "stdout: {}\nstderr: {}", stdout(o), stderr(o));
    };
    // The token and actor on the command line, then `extra`.
    let args = |extra: &[&str]| -> Vec<String> {
        ["--token", TEST_ADMIN_TOKEN, "--actor", "cli-test"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };

    let o = cli(
        gw.admin,
        d,
        &args(&["flags", "set", "theme", "flag.json", "--expected-version", "0"]),
    )
    .await?;
    ok(&o);
    let set: Value = serde_json::from_str(&stdout(&o))?;
    assert_eq!(
        (set["version"].as_u64(), set["updated_by"].as_str()),
        (Some(1), Some("cli-test"))
    );

    let o = cli(gw.admin, d, &args(&["content", "publish", "manifest.json"])).await?;
    ok(&o);
    let o = cli(gw.admin, d, &args(&["content", "list"])).await?;
    ok(&o);
    assert!(stdout(&o).contains("\"maps\""), "{}", stdout(&o));

    // Rollouts: start, list, promote, kill.
    let o = cli(gw.admin, d, &args(&["rollouts", "start", "plan.json"])).await?;
    ok(&o);
    let started: Value = serde_json::from_str(&stdout(&o))?;
    let id = started["id"].as_str().context("rollout id")?.to_owned();
    let o = cli(gw.admin, d, &args(&["rollouts", "list"])).await?;
    ok(&o);
    assert!(stdout(&o).contains(&id), "{}", stdout(&o));
    ok(&cli(gw.admin, d, &args(&["rollouts", "promote", &id])).await?);
    ok(&cli(gw.admin, d, &args(&["rollouts", "kill", &id])).await?);

    // The audit log names the CLI's actor for each change.
    let o = cli(gw.admin, d, &args(&["audit", "--target", "flag:theme"])).await?;
    ok(&o);
    let log: Value = serde_json::from_str(&stdout(&o))?;
    let records = log.as_array().context("audit list")?;
    assert!(
        !records.is_empty() && records.iter().all(|r| r["actor"] == "cli-test"),
        "{log}"
    );
    let o = cli(gw.admin, d, &args(&["audit"])).await?;
    ok(&o);
    let all = stdout(&o);
    assert!(
        all.contains("content:maps") && all.contains(&format!("rollout:{id}")),
        "{all}"
    );

    // A malformed flag: exit 1, the server's message naming the field, nothing changed.
    let o = cli(gw.admin, d, &args(&["flags", "set", "theme", "bad-flag.json"])).await?;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("HTTP 400") && stderr(&o).contains("rules[0].percentage_bp"),
        "{}",
        stderr(&o)
    );
    let o = cli(gw.admin, d, &args(&["flags", "get", "theme"])).await?;
    ok(&o);
    let now: Value = serde_json::from_str(&stdout(&o))?;
    assert_eq!(now["flag"]["default"]["type"], "string", "{now}");

    // A wrong token: exit 1 with the server's refusal; nothing happens.
    let o = cli(gw.admin, d, &["--token", &"w".repeat(40), "drain"]).await?;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("HTTP 401") && stderr(&o).contains("unauthorized"),
        "{}",
        stderr(&o)
    );
    assert!(!gw.handle.is_draining());

    // The token from a file (the default ./data/admin.token, relative to the
    // working directory) works.
    std::fs::create_dir_all(d.join("data"))?;
    std::fs::write(d.join("data/admin.token"), format!("{TEST_ADMIN_TOKEN}\n"))?;
    let o = cli(gw.admin, d, &["status"]).await?;
    ok(&o);
    assert!(stdout(&o).contains("\"draining\": false"), "{}", stdout(&o));
    let o = cli(gw.admin, d, &["drain"]).await?;
    ok(&o);
    assert!(gw.handle.is_draining());
    Ok(())
}

/// The OpenAPI document against what a real gateway serves: every documented
/// operation is routed (an operation needing the token answers 401 without it,
/// an open one answers 200), and on a documented path every undocumented method
/// is 405 (not routed), so a handler added to a path without its description
/// fails here. Nothing documented runs: the probes change nothing and the rest
/// are refused without the token. (`admin::openapi`'s unit tests compare the document with the
/// route table in `admin/mod.rs`'s module doc, and check that routes reach the
/// router only through the documented table.)
#[tokio::test]
async fn the_openapi_document_describes_exactly_the_served_routes() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let r = call(gw.admin, "GET", "/openapi.json", "", None).await?;
    let (status, doc) = status_and_json(&r);
    assert_eq!(status, 200, "the document needs no token: {r}");
    assert_eq!(
        doc,
        serde_json::from_str::<Value>(outpost_gateway::admin::openapi::document_json())?,
        "the gateway serves the document the code generates"
    );
    let paths = doc["paths"].as_object().context("paths")?;
    assert!(paths.len() >= 20, "{paths:?}");
    let mut operations = 0;
    for (template, item) in paths {
        let path = template
            .replace("{player}", "p1")
            .replace("{id}", "0123456789abcdef0123456789abcdef")
            .replace("{key}", "theme");
        assert!(
            !path.contains('{'),
            "a path parameter this test does not fill: {template}"
        );
        let item = item.as_object().context("path item")?;
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            let Some(op) = item.get(&method.to_lowercase()) else {
                // With the token: the token check answers 401 before the
                // router's 405 on a guarded path.
                let r = call(gw.admin, method, &path, "", Some(TEST_ADMIN_TOKEN)).await?;
                let status = status_and_json(&r).0;
                assert_eq!(
                    status, 405,
                    "{method} {template} is served but not documented: {r}"
                );
                continue;
            };
            let r = call(gw.admin, method, &path, "", None).await?;
            let (status, body) = status_and_json(&r);
            operations += 1;
            if op.get("security").is_some() {
                assert_eq!(
                    (status, &body["error"]),
                    (401, &Value::from("unauthorized")),
                    "{method} {template} is documented as needing the token: {r}"
                );
            } else {
                assert_eq!(status, 200, "{method} {template} is documented as open: {r}");
            }
        }
    }
    assert!(operations >= 24, "{operations} operations");
    // The documented 413 of a body over 2 MiB.
    let big = format!(r#"{{"key":"theme","description":"{}"}}"#, "x".repeat(3 << 20));
    let r = call(gw.admin, "PUT", "/flags/theme", &big, Some(TEST_ADMIN_TOKEN)).await?;
    let (status, body) = status_and_json(&r);
    assert_eq!(
        (status, &body["error"]),
        (413, &Value::from("invalid_body")),
        "{r}"
    );
    // And the check can tell: an unknown path is the router's 404.
    let (status, _) = status_and_json(&call(gw.admin, "GET", "/no-such-route", "", None).await?);
    assert_eq!(status, 404);
    Ok(())
}

/// A client still uploading a body the admin API has already answered (413
/// over the body limit, 401 from the token check before the body is read)
/// finishes its upload and reads the answer: the gateway lingers on close
/// instead of resetting the connection, which a client writing its whole body
/// before reading (ureq, so `outpost-admin` and this file's `call`) saw as
/// `Broken pipe` whenever the answer overtook its upload.
#[tokio::test]
async fn a_client_still_uploading_an_answered_body_reads_the_answer() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    for (token, status) in [(Some(TEST_ADMIN_TOKEN), 413), (None, 401)] {
        let addr = gw.admin;
        let answer = tokio::task::spawn_blocking(move || upload_overtaken_by_answer(addr, token))
            .await?
            .with_context(|| format!("the upload answered {status}"))?;
        assert!(answer.starts_with(&format!("HTTP/1.1 {status} ")), "{answer}");
        // The answer says the connection ends (admin_close.rs checks the rest).
        assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    }
    Ok(())
}

/// `PUT /flags/theme` declaring a 3 MiB body: sends the first 2 MiB + 64 KiB
/// (past the 2 MiB limit), reads the gateway's whole answer (up to its FIN),
/// then sends the rest of the body in pieces, and returns the answer. That is
/// the order of events when the answer overtakes a blocking client's upload;
/// reading first and pausing between pieces makes it deterministic: a gateway
/// that closed without lingering resets the connection at the first piece, and
/// the next write fails.
fn upload_overtaken_by_answer(addr: SocketAddr, token: Option<&str>) -> Result<String> {
    use std::io::{Read, Write};
    const TOTAL: usize = 3 << 20;
    const FIRST: usize = (2 << 20) + (64 << 10);
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    write!(
        s,
        "PUT /flags/theme HTTP/1.1\r\nhost: {addr}\r\n{auth}content-type: application/json\r\ncontent-length: {TOTAL}\r\n\r\n"
    )?;
    s.write_all(&vec![b'x'; FIRST]).context("the first part")?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).context("the answer")?;
    for (i, piece) in vec![b'x'; TOTAL - FIRST].chunks(64 << 10).enumerate() {
        std::thread::sleep(std::time::Duration::from_millis(10));
        s.write_all(piece)
            .with_context(|| format!("piece {i} of the rest"))?;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    // The gateway closes once it has read the client's FIN: no reset either.
    std::thread::sleep(std::time::Duration::from_millis(50));
    if let Some(e) = s.take_error()? {
        anyhow::bail!("after the upload: {e}");
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}
