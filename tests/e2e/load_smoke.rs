//! The load generator completes a short run against a local server and sees every update.

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_load_smoke_run() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(test_config(dir.path())).await;
    let url = format!("ws://{}/{{doc}}", app.addr);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft-load"))
        .args(["--url", &url, "-c", "12", "-d", "2", "-w", "2", "-r", "50"])
        .args([
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--drain",
            "1",
            "--json",
        ])
        .args(["--pid", &std::process::id().to_string()])
        .output()
        .await
        .expect("run weft-load");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    let expected = report["expected_deliveries"].as_u64().unwrap();
    assert!(expected > 100, "{report}");
    assert_eq!(report["delivered"].as_u64().unwrap(), expected, "{report}");
    assert_eq!(report["disconnects"], 0);
    assert!(report["latency_ms_p99"].as_f64().unwrap() > 0.0);
    assert!(report["server_rss_mib_max"].as_f64().unwrap() > 0.0);
    app.stop().await;
}
