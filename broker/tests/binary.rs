//! Checks on the built `stompd` binary itself. Having an integration test here also makes
//! `cargo test --workspace` build the binary that the e2e suite in `tests/` runs.

use std::process::Command;

#[test]
fn print_config_prints_the_embedded_default_exactly() {
    let out = Command::new(env!("CARGO_BIN_EXE_stompd"))
        .arg("print-config")
        .output()
        .expect("run stompd");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        stompd_config::DEFAULT_CONFIG
    );
}

#[test]
fn version_flag_names_the_crate_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_stompd"))
        .arg("--version")
        .output()
        .expect("run stompd");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}
