//! Support for the end-to-end tests: they run the `didact` binary that
//! `just test` builds (`target/release/didact`, or the profile the tests
//! themselves were built with) as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `configs/smoke.toml`.
pub fn smoke_config() -> PathBuf {
    root().join("configs/smoke.toml")
}

/// The `didact` binary built beside the test executable.
pub fn didact_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/didact
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join(format!("didact{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not found: build it first (`just test` does: cargo build --release --bins)",
        bin.display()
    );
    bin
}

/// The result of one `didact` invocation.
pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.output.status.success()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    /// Panics with both streams unless the command succeeded.
    pub fn expect_ok(self) -> Self {
        assert!(
            self.ok(),
            "didact failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
    /// The `error: …` line of a failed run.
    pub fn error_line(&self) -> String {
        assert!(
            !self.ok(),
            "expected failure, got success:\n{}",
            self.stderr()
        );
        let errors: Vec<&str> = self
            .output
            .stderr
            .split(|b| *b == b'\n')
            .filter_map(|l| std::str::from_utf8(l).ok())
            .filter(|l| l.starts_with("error"))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "expected one error line, got:\n{}",
            self.stderr()
        );
        errors[0].to_string()
    }
}

/// Runs `didact args…` in `cwd` with logging at its default level.
pub fn didact(cwd: &Path, args: &[&str]) -> Run {
    let output = Command::new(didact_bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("DIDACT_LOG")
        .output()
        .expect("run didact");
    Run { output }
}

/// Runs `didact <stage> --config configs/smoke.toml --run-dir run -q` in
/// `cwd`, with a `--set` for each of `sets`: the setup most end-to-end
/// tests share.
pub fn smoke_run(cwd: &Path, stage: &str, sets: &[&str]) -> Run {
    let config = smoke_config();
    let mut args = vec![
        stage,
        "--config",
        config.to_str().expect("utf-8 path"),
        "--run-dir",
        "run",
        "-q",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    didact(cwd, &args)
}

/// [`smoke_run`] without overrides, required to succeed.
pub fn smoke_stage(cwd: &Path, stage: &str) -> Run {
    smoke_run(cwd, stage, &[]).expect_ok()
}

/// Runs `didact data import args…` in `cwd`.
pub fn data_import(cwd: &Path, args: &[&str]) -> Run {
    let mut all = vec!["data", "import"];
    all.extend(args);
    didact(cwd, &all)
}

/// A scratch directory for one test.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}
