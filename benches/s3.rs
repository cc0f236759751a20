//! S3 transfer throughput: a 1 GiB artifact pushed to and pulled from the loopback S3
//! server by peirce, against `aws s3 cp` on the same file in the same run, as ratios
//! (target: at least parity).
//!
//! peirce's figures are the real paths: `push_action` (multipart upload, 16 MiB parts, 10 in
//! flight, each part with its SHA-256 checksum, the bytes hashed as they are read and the
//! upload completed only if they verify, then tree and record) and `pull_action` on a fresh
//! local store (record and tree, then the blob in parallel ranges, hashed before it is
//! installed). awscli uses its defaults (8 MiB parts, 10 requests in flight, a CRC32 per part).
//!
//! Run with `scripts/bench-s3` (starts moto, sets `PEIRCE_TEST_S3_ENDPOINT`, `PEIRCE_TEST_AWS`
//! and `PEIRCE_BENCH_S3_SERVER_PID`). `PEIRCE_BENCH_S3_MIB` changes the size (default 1024);
//! `PEIRCE_BENCH_S3_ROUNDS` repeats the uploads, each round to fresh names, peirce first in
//! even rounds and awscli in odd ones (default 1; the table shows medians, each round's
//! ratio below it);
//! `PEIRCE_BENCH_S3_DOWNLOAD=false` skips the downloads; `PEIRCE_BENCH_S3_QUERY` adds to
//! peirce's store URL (`checksum_algorithm=none`, say, to see what the checksums change). With the server's process id known,
//! the CPU seconds it spent on each transfer are shown too: moto is one Python process, and
//! what it spends per byte is most of a transfer's time.

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
    let setting = |name: &str| std::env::var(name).ok();
    let mib: u64 = setting("PEIRCE_BENCH_S3_MIB")
        .and_then(|text| text.parse().ok())
        .unwrap_or(1024);
    let rounds: usize = setting("PEIRCE_BENCH_S3_ROUNDS")
        .and_then(|text| text.parse().ok())
        .unwrap_or(1)
        .max(1);
    let download = setting("PEIRCE_BENCH_S3_DOWNLOAD").as_deref() != Some("false");
    let server: Option<u32> =
        setting("PEIRCE_BENCH_S3_SERVER_PID").and_then(|text| text.parse().ok());
    let size = mib << 20;
    let query = setting("PEIRCE_BENCH_S3_QUERY")
        .filter(|extra| !extra.is_empty())
        .map(|extra| format!("&{extra}"))
        .unwrap_or_default();
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
    println!("artifact: {mib} MiB, server {endpoint}, {rounds} upload round(s){query}");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = |round: usize| {
        format!("s3://{bucket}/peirce-{round}?endpoint={endpoint}&allow_http=true{query}")
    };
    let local = Store::open_local(&scratch.path().join("store-a")).unwrap();
    let key = ActionKey::of(b"s3 bench");
    runtime.block_on(async {
        let (tree, _) = local.publish_dir(&artifact).await.unwrap();
        local.put_action(&record(key, tree)).await.unwrap();
    });

    let mut uploads = Vec::new();
    for round in 0..rounds {
        // peirce push, to a prefix that has nothing yet.
        let tiered = local.with_remote(peirce_store::open_store(&url(round)).unwrap());
        let ours = || {
            measure(server, || {
                runtime.block_on(async {
                    let report = tiered.push_action(key).await.unwrap();
                    assert!(report.transferred_bytes >= size, "{report:?}");
                })
            })
        };
        // aws s3 cp up.
        let theirs = || {
            measure(server, || {
                aws_cp(
                    &aws,
                    &endpoint,
                    file.to_str().unwrap(),
                    &format!("s3://{bucket}/aws/model-{round}"),
                )
            })
        };
        // Whoever goes second finds the server with one more object: take turns.
        uploads.push(if round % 2 == 0 {
            let ours = ours();
            (ours, theirs())
        } else {
            let theirs = theirs();
            (ours(), theirs)
        });
    }
    let mut downloads = Vec::new();
    if download {
        // peirce pull into a fresh store.
        let fresh = Store::open_local(&scratch.path().join("store-b"))
            .unwrap()
            .with_remote(peirce_store::open_store(&url(0)).unwrap());
        let ours = measure(server, || {
            runtime.block_on(async {
                let report = fresh.pull_action(key).await.unwrap().expect("a hit");
                assert!(report.transferred_bytes >= size, "{report:?}");
            })
        });
        drop(fresh);
        let _ = std::fs::remove_dir_all(scratch.path().join("store-b"));
        // aws s3 cp down.
        let copy = scratch.path().join("aws-copy");
        let theirs = measure(server, || {
            aws_cp(
                &aws,
                &endpoint,
                &format!("s3://{bucket}/aws/model-0"),
                copy.to_str().unwrap(),
            )
        });
        assert_eq!(std::fs::metadata(&copy).unwrap().len(), size);
        downloads.push((ours, theirs));
    }

    let rate = |elapsed: Duration| size as f64 / 1e6 / elapsed.as_secs_f64();
    let cell = |sample: &Sample| {
        let server = match sample.server_cpu {
            Some(cpu) => format!(", server CPU {cpu:.1} s"),
            None => String::new(),
        };
        format!(
            "{:.2} s ({:.0} MB/s; client CPU {:.1} s{server})",
            sample.elapsed.as_secs_f64(),
            rate(sample.elapsed),
            sample.client_cpu
        )
    };
    println!("| direction | peirce | aws s3 cp | ratio peirce/aws (throughput) |");
    println!("|---|---|---|---|");
    for (name, samples) in [("upload", &uploads), ("download", &downloads)] {
        if samples.is_empty() {
            continue;
        }
        let ours = median(samples.iter().map(|(ours, _)| ours));
        let theirs = median(samples.iter().map(|(_, theirs)| theirs));
        println!(
            "| {name} | {} | {} | {:.2}x |",
            cell(ours),
            cell(theirs),
            theirs.elapsed.as_secs_f64() / ours.elapsed.as_secs_f64()
        );
    }
    if rounds > 1 {
        let ratios: Vec<String> = uploads
            .iter()
            .map(|(ours, theirs)| {
                format!(
                    "{:.2} s / {:.2} s = {:.2}x",
                    ours.elapsed.as_secs_f64(),
                    theirs.elapsed.as_secs_f64(),
                    theirs.elapsed.as_secs_f64() / ours.elapsed.as_secs_f64()
                )
            })
            .collect();
        println!("upload rounds (peirce / aws): {}", ratios.join(", "));
    }
}

/// One timed transfer: wall time, CPU time of this process or of the child it ran, and of
/// the server when its process id is known.
#[derive(Debug, Clone, Copy)]
struct Sample {
    elapsed: Duration,
    client_cpu: f64,
    server_cpu: Option<f64>,
}

fn measure(server: Option<u32>, run: impl FnOnce()) -> Sample {
    let server_before = server.and_then(process_cpu);
    let client_before = own_cpu();
    let started = Instant::now();
    run();
    let elapsed = started.elapsed();
    let client_cpu = own_cpu() - client_before;
    let server_cpu = match (server_before, server.and_then(process_cpu)) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    Sample {
        elapsed,
        client_cpu,
        server_cpu,
    }
}

/// The sample with the median wall time (the upper one of an even count).
fn median<'a>(samples: impl Iterator<Item = &'a Sample>) -> &'a Sample {
    let mut sorted: Vec<&Sample> = samples.collect();
    sorted.sort_by_key(|sample| sample.elapsed);
    sorted[sorted.len() / 2]
}

/// CPU seconds of this process and of its finished children (awscli runs as one).
fn own_cpu() -> f64 {
    let seconds = |usage: &libc::rusage| {
        let time = |value: libc::timeval| value.tv_sec as f64 + value.tv_usec as f64 / 1e6;
        time(usage.ru_utime) + time(usage.ru_stime)
    };
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: `usage` is a valid, writable rusage for the duration of the call.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut usage) } == 0 {
            total += seconds(&usage);
        }
    }
    total
}

/// CPU seconds (user and system) a process has used, from `/proc/PID/stat`.
fn process_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: utime and
    // stime are the 12th and 13th of them.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| ticks / per_second as f64)
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
