//! A partner in another language: Python stubs generated from `proto/` with grpcio-tools,
//! and `tests/python/partner_scenario.py` run on them against a real `feedpub serve` —
//! publish, read back, correct, retry, a stale etag, a bad field, a batch, retract, and a
//! watch resumed from a saved cursor, with the feed fetched over HTTP.
//!
//! The Python environment is `target/pyvenv-grpc`, made by `tests/python/ensure-venv` from
//! PyPI when missing (`.ci/run` makes it before the tests, so that here it is only found).
//! The stubs are generated afresh for every run, into a folder under `target/`.

mod common;

use common::binary::{
    DEADLINE, ServeOptions, ServeProcess, partner_add, run_within, text, token_of,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Creating the environment downloads and installs grpcio-tools.
const INSTALL_DEADLINE: Duration = Duration::from_secs(600);
/// The scenario bounds each of its own waits; this only stops a hung interpreter.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(180);

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The environment's python, after `tests/python/ensure-venv` made sure it has the pinned
/// packages.
fn python() -> PathBuf {
    let output = run_within(
        Command::new("bash").arg(repository().join("tests/python/ensure-venv")),
        INSTALL_DEADLINE,
    );
    assert!(
        output.status.success(),
        "the Python environment could not be made ({}):\n{}",
        output.status,
        text(&output.stderr)
    );
    let python = PathBuf::from(text(&output.stdout).trim());
    assert!(python.is_file(), "no interpreter at {}", python.display());
    python
}

/// Generates the messages, the gRPC stubs and their type stubs of `proto/` into `out`, as
/// a partner would (grpcio-tools brings the well-known types such as Timestamp).
fn generate_stubs(python: &Path, out: &Path) {
    let output = run_within(
        Command::new(python)
            .current_dir(repository())
            .args(["-m", "grpc_tools.protoc", "-I", "proto"])
            .arg(format!("--python_out={}", out.display()))
            .arg(format!("--pyi_out={}", out.display()))
            .arg(format!("--grpc_python_out={}", out.display()))
            .args([
                "proto/feedpub/v1/publisher.proto",
                "proto/google/rpc/status.proto",
                "proto/google/rpc/error_details.proto",
            ]),
        DEADLINE,
    );
    assert!(
        output.status.success(),
        "protoc failed ({}):\n{}",
        output.status,
        text(&output.stderr)
    );
    for stub in [
        "feedpub/v1/publisher_pb2.py",
        "feedpub/v1/publisher_pb2_grpc.py",
        "google/rpc/error_details_pb2.py",
    ] {
        assert!(out.join(stub).is_file(), "protoc made no {stub}");
    }
}

#[test]
fn a_python_partner_on_stubs_generated_from_the_proto_publishes_corrects_retracts_and_watches() {
    let python = python();
    let target = repository().join("target");
    std::fs::create_dir_all(&target).unwrap();
    let stubs = tempfile::Builder::new()
        .prefix("python-stubs-")
        .tempdir_in(&target)
        .unwrap();
    generate_stubs(&python, stubs.path());

    // A partner with only the sections the scenario publishes to, as its docs say.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = token_of(&partner_add(
        dir.path(),
        &[
            "wire",
            "--section",
            "rural",
            "--section",
            "politics",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    ));
    let mut server = ServeProcess::start(ServeOptions::new(&data, &dir.path().join("feeds")));
    let running = server.wait_ready();

    let output = run_within(
        Command::new(&python)
            .arg(repository().join("tests/python/partner_scenario.py"))
            .args([
                "--grpc",
                &running.grpc.to_string(),
                "--http",
                &running.url(""),
            ])
            .env("FEEDPUB_TOKEN", &token)
            .env("PYTHONPATH", stubs.path())
            .env("PYTHONIOENCODING", "utf-8"),
        SCENARIO_DEADLINE,
    );
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "the Python partner failed ({}):\n{stdout}\n{}\nserver log:\n{}",
        output.status,
        text(&output.stderr),
        server.log()
    );
    // The copy went through Python and back intact, and every step ran.
    assert!(
        stdout.contains("“右玉县农旅融合助力乡村振兴” by 刘磊、张智宙"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("scenario passed")),
        "{stdout}"
    );
    assert!(server.is_running(), "the server survived the scenario");
}
