//! S3 transfer throughput: a 1 GiB artifact pushed to and pulled from the loopback S3
//! server by peirce, against `aws s3 cp` on the same file in the same run, as ratios
//! (target: at least parity).
//!
//! peirce's figures are the real paths: `push_action` (multipart upload, 16 MiB parts, 10 in
//! flight, the bytes hashed as they are read and the upload completed only if they verify,
//! then tree and record) and `pull_action` on a fresh local store (record and tree, then the
//! blob in parallel ranges, hashed before it is installed). awscli uses its defaults
//! (8 MiB parts, 10 requests in flight, no content verification beyond its own checksums).
//!
//! Run with `scripts/bench-s3` (starts moto, sets `PEIRCE_TEST_S3_ENDPOINT` and
//! `PEIRCE_TEST_AWS`); `PEIRCE_BENCH_S3_MIB` changes the size (default 1024).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use peirce_store::{ActionKey, ActionRecord, KeyComponents, Store};

fn main() {
    let (Ok(endpoint), Ok(aws)) = (
        std::env::var("PEIRCE_TEST_S3_ENDPOINT"),
        std::env::var("PEIRCE_TEST_AWS"),
    ) else {
        eprintln!(
            "skipping the S3 bench: PEIRCE_TEST_S3_ENDPOINT and PEIRCE_TEST_AWS are not set \
             (run it with scripts/bench-s3)"
        );
        return;
    };
    let mib: u64 = std::env::var("PEIRCE_BENCH_S3_MIB")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1024);
    let size = mib << 20;
    let bucket = format!("bench-{}", std::process::id());
    let status = Command::new(&aws)
        .args([
            "--endpoint-url",
            &endpoint,
            "s3",
            "mb",
            &format!("s3://{bucket}"),
        ])
        .output()
        .expect("awscli runs");
    assert!(status.status.success(), "aws s3 mb: {status:?}");

    let scratch = tempfile::tempdir().expect("a scratch folder");
    let artifact = scratch.path().join("artifact");
    std::fs::create_dir_all(&artifact).unwrap();
    let file = artifact.join("model.safetensors");
    write_pattern(&file, size);
    println!("artifact: {mib} MiB, server {endpoint}");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = format!("s3://{bucket}/peirce?endpoint={endpoint}&allow_http=true");

    // peirce push.
    let local = Store::open_local(&scratch.path().join("store-a")).unwrap();
    let tiered = local.with_remote(peirce_store::open_store(&url).unwrap());
    let key = ActionKey::of(b"s3 bench");
    let push = runtime.block_on(async {
        let (tree, _) = tiered.publish_dir(&artifact).await.unwrap();
        tiered.put_action(&record(key, tree)).await.unwrap();
        let started = Instant::now();
        let report = tiered.push_action(key).await.unwrap();
        assert!(report.transferred_bytes >= size, "{report:?}");
        started.elapsed()
    });
    // aws s3 cp up.
    let aws_up = timed(|| {
        aws_cp(
            &aws,
            &endpoint,
            file.to_str().unwrap(),
            &format!("s3://{bucket}/aws/model"),
        )
    });
    // peirce pull into a fresh store.
    let fresh = Store::open_local(&scratch.path().join("store-b"))
        .unwrap()
        .with_remote(peirce_store::open_store(&url).unwrap());
    let pull = runtime.block_on(async {
        let started = Instant::now();
        let report = fresh.pull_action(key).await.unwrap().expect("a hit");
        assert!(report.transferred_bytes >= size, "{report:?}");
        started.elapsed()
    });
    drop(fresh);
    let _ = std::fs::remove_dir_all(scratch.path().join("store-b"));
    // aws s3 cp down.
    let copy = scratch.path().join("aws-copy");
    let aws_down = timed(|| {
        aws_cp(
            &aws,
            &endpoint,
            &format!("s3://{bucket}/aws/model"),
            copy.to_str().unwrap(),
        )
    });
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), size);

    let rate = |elapsed: Duration| size as f64 / 1e6 / elapsed.as_secs_f64();
    println!("| direction | peirce | aws s3 cp | ratio peirce/aws (throughput) |");
    println!("|---|---|---|---|");
    for (name, ours, theirs) in [("upload", push, aws_up), ("download", pull, aws_down)] {
        println!(
            "| {name} | {:.2} s ({:.0} MB/s) | {:.2} s ({:.0} MB/s) | {:.2}x |",
            ours.as_secs_f64(),
            rate(ours),
            theirs.as_secs_f64(),
            rate(theirs),
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
    }
}

fn record(key: ActionKey, output: peirce_store::TreeDigest) -> ActionRecord {
    ActionRecord {
        key,
        output,
        components: KeyComponents {
            schema: 1,
            kind: "bench".into(),
            kind_version: 1,
            params: serde_json::json!({}),
            inputs: Default::default(),
            salt: String::new(),
        },
        node: "model".into(),
        workflow: "bench".into(),
        log: None,
        started_at: 0.0,
        duration_s: 0.0,
        host: "bench".into(),
        engine_version: env!("CARGO_PKG_VERSION").into(),
        input_sources: Default::default(),
    }
}

fn timed(run: impl FnOnce()) -> Duration {
    let started = Instant::now();
    run();
    started.elapsed()
}

fn aws_cp(aws: &str, endpoint: &str, from: &str, to: &str) {
    let output = Command::new(aws)
        .args([
            "--endpoint-url",
            endpoint,
            "s3",
            "cp",
            "--no-progress",
            "--only-show-errors",
            from,
            to,
        ])
        .output()
        .expect("awscli runs");
    assert!(
        output.status.success(),
        "aws s3 cp {from} {to}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `size` bytes that do not compress (xorshift), written in 8 MiB blocks.
fn write_pattern(path: &Path, size: u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 8 << 20];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let take = left.min(block.len() as u64) as usize;
        file.write_all(&block[..take]).unwrap();
        left -= take as u64;
    }
    file.flush().unwrap();
}
