//! The Python objectives of the side-by-side benchmark (`bench/problems.py`) equal
//! Rust's (`tuner_optim::problems`) on sample points from `bench optimizer
//! --eval-points`: Optuna and tuner must optimize the same functions.

use std::{path::Path, process::Command};

const BIN: &str = env!("CARGO_BIN_EXE_tuner-cli");

#[test]
fn python_objectives_equal_rust_objectives() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/optuna_side_by_side.py");
    // The check uses Python's standard library only; without python3 there is
    // nothing to compare against (the benchmark cannot run either).
    let Ok(out) = Command::new("python3")
        .arg(&script)
        .args(["--check", "--bin", BIN])
        .output()
    else {
        eprintln!("python3 not found: skipped");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(" 0 mismatches"), "{stderr}");
}
