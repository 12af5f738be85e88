//! Token costs on one core: what a login, a resume and a resume refresh pay for
//! session tokens (Ed25519) and resume tokens (HMAC-SHA256), through the public
//! identity API the gateway uses.
//!
//! ```text
//! cargo bench -p outpost-backend --bench tokens
//! ```
//!
//! Each figure is the median over 7 runs of 2,000 operations (µs per operation).

use std::time::{Duration, Instant};

use outpost_backend::identity::{Identity, Keyring};
use outpost_backend::store::embedded::{EmbeddedConfig, EmbeddedStore};

const RUNS: usize = 7;
const OPS: usize = 2_000;
const PLAYER: &str = "00112233445566778899aabbccddeeff";

fn median_us(mut f: impl FnMut()) -> f64 {
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..OPS {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / OPS as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[RUNS / 2]
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Runtime::new()?;
    let ring: Keyring = rt.block_on(async {
        let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).await?;
        anyhow::Ok(Identity::open(store).await?.keyring().await?)
    })?;
    let ttl = Duration::from_secs(3600);
    let now = 1_000;
    let session = ring.signer.issue(PLAYER, "eu-west", &[ttl], now)?.remove(0).token;
    let resume = ring.resume.issue(PLAYER, "eu-west", 7, ttl, now)?.token;

    let rows = [
        (
            "session token: sign (Ed25519)",
            median_us(|| {
                ring.signer.issue(PLAYER, "eu-west", &[ttl], now).expect("sign");
            }),
        ),
        (
            "session token: verify (Ed25519 verify_strict)",
            median_us(|| {
                ring.verifier.verify(&session, now + 1).expect("verify");
            }),
        ),
        (
            "resume token: mint (HMAC-SHA256)",
            median_us(|| {
                ring.resume.issue(PLAYER, "eu-west", 7, ttl, now).expect("mint");
            }),
        ),
        (
            "resume token: verify (HMAC-SHA256)",
            median_us(|| {
                ring.resume.verify(&resume, now + 1).expect("verify");
            }),
        ),
    ];
    println!("| operation (JSON claims and base64 included) | µs, median of {RUNS} × {OPS} |");
    println!("|---|---:|");
    for (name, us) in rows {
        println!("| {name} | {us:.2} |");
    }
    Ok(())
}
