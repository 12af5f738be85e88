//! `outpost-sim compare` through the binary: zero for a rerun of the same
//! (deterministic, model mode) scenario, non-zero for a run made worse on
//! purpose (matching rounds eight times further apart: longer match waits).

use std::path::{Path, PathBuf};
use std::process::Command;

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_outpost-sim"))
}

/// Runs `scenario` in model mode at scale 10 into `out`; returns its result.json.
fn model_run(scenario: &Path, out: &Path) -> PathBuf {
    let status = sim()
        .args(["model", "--quiet", "--scale", "10", "--out"])
        .arg(out)
        .arg(scenario)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    // 0 or 2 (an SLO missed) are runs; 1 is a failure.
    assert!(matches!(status.code(), Some(0 | 2)), "{status}");
    out.join("result.json")
}

#[test]
fn compare_gates_on_regressions_only() {
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.toml");
    let dir = tempfile::tempdir().unwrap();
    let base = model_run(&smoke, &dir.path().join("base"));
    let rerun = model_run(&smoke, &dir.path().join("rerun"));

    let same = sim().arg("compare").arg(&base).arg(&rerun).output().unwrap();
    let text = String::from_utf8_lossy(&same.stdout);
    assert_eq!(same.status.code(), Some(0), "{text}");
    assert!(text.contains("no regression"), "{text}");
    assert!(text.contains("match_wait p95"), "{text}");
    let page = std::fs::read_to_string(dir.path().join("rerun/compare.html")).unwrap();
    assert!(page.contains("no regression") && page.contains("match_wait p95"));

    // Worse on purpose: rounds every 2 s instead of every 250 ms.
    let text = std::fs::read_to_string(&smoke).unwrap();
    assert!(text.contains("round_interval_ms = 250"));
    let worse_toml = dir.path().join("worse.toml");
    std::fs::write(
        &worse_toml,
        text.replace("round_interval_ms = 250", "round_interval_ms = 2000"),
    )
    .unwrap();
    let worse = model_run(&worse_toml, &dir.path().join("worse"));
    let html = dir.path().join("diff.html");
    let out = sim()
        .arg("compare")
        .arg(&base)
        .arg(&worse)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("REGRESSION"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("match_wait p50") && l.contains("REGRESSION")),
        "{text}"
    );
    assert!(std::fs::read_to_string(&html).unwrap().contains("regression(s)"));
    // Loose enough thresholds accept it; a bad threshold is refused.
    let loose = sim()
        .arg("compare")
        .arg(&base)
        .arg(&worse)
        .args(["--wait-pct", "100000", "--ignore-slo-verdicts"])
        .output()
        .unwrap();
    assert_eq!(
        loose.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&loose.stdout)
    );
    let thresholds = dir.path().join("t.toml");
    std::fs::write(&thresholds, "wait_pct = -1\n").unwrap();
    let bad = sim()
        .arg("compare")
        .arg(&base)
        .arg(&worse)
        .arg("--thresholds")
        .arg(&thresholds)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
}
