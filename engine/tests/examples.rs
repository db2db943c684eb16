//! The Python examples in `examples/` run against `strata serve` (embedded local store).

mod common;

use common::Proc;

fn run(script: &str, grpc: &str) -> String {
    let path = format!("{}/../examples/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("python3")
        .arg(&path)
        .arg(grpc.replace("http://", "grpc://"))
        .output()
        .expect(
            "python3 must be installed (.ci/run installs pyarrow, adbc-driver-flightsql, pandas)",
        );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn python_examples_run_against_serve() {
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::start(&["serve", "--data-dir", dir.path().to_str().unwrap()], &[]);
    let out = run("flight_put.py", &p.grpc);
    assert!(out.contains("acknowledged 1000 rows"), "{out}");
    let out = run("adbc_pandas.py", &p.grpc);
    assert!(out.contains("web-1 requests: 200"), "{out}");
}
