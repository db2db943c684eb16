//! The Kubernetes manifests in `deploy/kubernetes/` are valid and use only what `strata` has:
//! `deploy/check_manifests.py` validates every resource against the Kubernetes JSON schemas
//! (`kubernetes-validate`, strict) and checks every flag, `STRATA_*` variable and
//! `STRATA__SECTION__KEY` of their Strata containers against this build's
//! `strata <role> --help` and `strata config`.

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

#[test]
fn kubernetes_manifests_are_valid_and_use_only_existing_flags_and_settings() {
    let script = format!("{REPO}/deploy/check_manifests.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg("--strata")
        .arg(env!("CARGO_BIN_EXE_strata"))
        .output()
        .expect("python3 must be installed (./minio/with-s3.sh installs kubernetes-validate)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "deploy/check_manifests.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{stdout}");
}
