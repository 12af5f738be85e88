//! The engine bindings end to end: a real gateway on loopback (embedded store
//! in a temp dir) and the C, C++ and C# examples under `tests/engines/`,
//! compiled with the machine's `cc`, `c++` and Mono's `mcs` against this
//! crate's `cdylib`, each run as its own process against the gateway (and a
//! second one at its session limit, for a refusal with a retry hint). Plus
//! the hostile-input program, under valgrind when it is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use outpost_gateway::GatewayConfig;

/// The directory with `liboutpost_client_ffi.so` (cargo builds the library's
/// every crate-type before the tests, next to their executables).
fn lib_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let deps = exe.parent().context("test executable dir")?;
    for dir in [deps, deps.parent().context("target profile dir")?] {
        if dir.join("liboutpost_client_ffi.so").exists() {
            return Ok(dir.to_path_buf());
        }
    }
    bail!("liboutpost_client_ffi.so not found next to {}", exe.display())
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd`, failing with its output unless it exits with 0.
fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{cmd:?} failed ({}):\n{stdout}\n{stderr}", out.status);
    }
    print!("{stdout}");
    Ok(stdout)
}

fn compile_c(src: &str, out: &Path, lib: &Path) -> Result<()> {
    run(Command::new("cc")
        .args([
            "-std=c11",
            "-g",
            "-O1",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-D_POSIX_C_SOURCE=200809L",
        ])
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(crate_dir().join("tests/engines").join(src))
        .arg("-o")
        .arg(out)
        .arg("-L")
        .arg(lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-loutpost_client_ffi"))?;
    Ok(())
}

/// The `retry_after_ms` of the busy gateway's `ServerBusy` refusals (no jitter).
const BUSY_RETRY_AFTER_MS: u32 = 1_500;

struct Gateway {
    running: outpost_gateway::RunningGateway,
    /// A second gateway with the same CA that admits one session: the next
    /// login is refused with `ServerBusy` and `BUSY_RETRY_AFTER_MS`.
    busy: outpost_gateway::RunningGateway,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// The example's arguments: gateway, CA file, device prefix, busy
    /// gateway, its retry hint.
    fn args(&self, cmd: &mut Command, prefix: &str) {
        cmd.arg(self.running.quic_addr.to_string())
            .arg(&self.ca_file)
            .arg(prefix)
            .arg(self.busy.quic_addr.to_string())
            .arg(BUSY_RETRY_AFTER_MS.to_string());
    }

    async fn shutdown(self) {
        for gw in [&self.running, &self.busy] {
            gw.handle().shutdown();
        }
        self.running.wait().await;
        self.busy.wait().await;
    }
}

async fn gateway() -> Result<Gateway> {
    let dir = tempfile::tempdir()?;
    let config = |data: &str| -> Result<GatewayConfig> {
        let mut gc = GatewayConfig {
            listen: "127.0.0.1:0".parse()?,
            admin_listen: "127.0.0.1:0".parse()?,
            data_dir: dir.path().join(data),
            ..GatewayConfig::default()
        };
        // Shared: the second gateway reuses the certificates the first made.
        gc.tls.dev_certs_dir = dir.path().join("certs");
        Ok(gc)
    };
    let mut gc = config("data")?;
    gc.inventory.client_grants = true;
    let running = outpost_gateway::start(gc).await?;
    let mut busy = config("busy-data")?;
    busy.limits.max_sessions = 1;
    busy.admission.busy_retry_after_ms = BUSY_RETRY_AFTER_MS;
    busy.admission.busy_retry_jitter_ms = 0;
    let busy = outpost_gateway::start(busy).await?;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, running.dev_ca_pem.clone().context("dev CA PEM")?)?;
    Ok(Gateway {
        running,
        busy,
        ca_file,
        _dir: dir,
    })
}

/// Runs a blocking child process without stalling the gateway's runtime.
async fn run_async(mut cmd: Command) -> Result<String> {
    tokio::task::spawn_blocking(move || run(&mut cmd)).await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_example_against_a_real_gateway() -> Result<()> {
    let lib = lib_dir()?;
    let work = tempfile::tempdir()?;
    let exe = work.path().join("e2e_c");
    compile_c("e2e.c", &exe, &lib)?;
    let gw = gateway().await?;
    let mut cmd = Command::new(&exe);
    gw.args(&mut cmd, "c-e2e");
    let out = run_async(cmd).await?;
    assert!(out.contains("C E2E OK"), "{out}");
    gw.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpp_example_against_a_real_gateway() -> Result<()> {
    let lib = lib_dir()?;
    let work = tempfile::tempdir()?;
    let exe = work.path().join("e2e_cpp");
    run(Command::new("c++")
        .args([
            "-std=c++17",
            "-O1",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fno-exceptions",
        ])
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(crate_dir().join("tests/engines/e2e.cpp"))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-loutpost_client_ffi"))?;
    let gw = gateway().await?;
    let mut cmd = Command::new(&exe);
    gw.args(&mut cmd, "cpp-e2e");
    let out = run_async(cmd).await?;
    assert!(out.contains("C++ E2E OK"), "{out}");
    gw.shutdown().await;
    Ok(())
}

/// Mono (`mcs`, `mono`): `apt-get install mono-mcs mono-runtime` (.ci/run does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csharp_example_against_a_real_gateway() -> Result<()> {
    let lib = lib_dir()?;
    let work = tempfile::tempdir()?;
    let exe = work.path().join("e2e.exe");
    run(Command::new("mcs")
        .args(["-warn:4", "-warnaserror", "-nologo"])
        .arg(format!("-out:{}", exe.display()))
        .arg(crate_dir().join("csharp/Outpost.cs"))
        .arg(crate_dir().join("tests/engines/E2E.cs")))
    .context("compiling the C# example needs Mono's mcs (apt-get install mono-mcs mono-runtime)")?;
    let gw = gateway().await?;
    let mut cmd = Command::new("mono");
    cmd.arg(&exe).env("LD_LIBRARY_PATH", &lib);
    gw.args(&mut cmd, "cs-e2e");
    let out = run_async(cmd).await?;
    assert!(out.contains("C# E2E OK"), "{out}");
    gw.shutdown().await;
    Ok(())
}

/// NULL pointers and handles, invalid UTF-8, freed handles, short buffers, bad
/// enum values: documented status codes, no crash; under valgrind (when
/// installed; .ci/run installs it) also no memory error and no definite leak.
#[test]
fn hostile_inputs_at_the_boundary() -> Result<()> {
    let lib = lib_dir()?;
    let work = tempfile::tempdir()?;
    let exe = work.path().join("hostile");
    compile_c("hostile.c", &exe, &lib)?;
    let valgrind = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let out = if valgrind {
        eprintln!("running the hostile-input program under valgrind");
        run(Command::new("valgrind")
            .args([
                "--quiet",
                "--error-exitcode=99",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
                "--show-leak-kinds=definite",
            ])
            .arg(&exe))?
    } else {
        eprintln!("valgrind not installed: running the hostile-input program without it");
        run(&mut Command::new(&exe))?
    };
    assert!(out.contains("HOSTILE OK"), "{out}");
    Ok(())
}

/// The static library links with just the system libraries the header names
/// (what engines that link statically, and iOS, need) and works.
#[test]
fn static_library_links_and_runs() -> Result<()> {
    let lib = lib_dir()?;
    let work = tempfile::tempdir()?;
    let exe = work.path().join("hostile_static");
    run(Command::new("cc")
        .args(["-std=c11", "-D_POSIX_C_SOURCE=200809L"])
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(crate_dir().join("tests/engines/hostile.c"))
        .arg(lib.join("liboutpost_client_ffi.a"))
        .args(["-lpthread", "-ldl", "-lm"])
        .arg("-o")
        .arg(&exe))?;
    let out = run(&mut Command::new(&exe))?;
    assert!(out.contains("HOSTILE OK"), "{out}");
    Ok(())
}
