//! Sharing results through an S3 bucket (docs/architecture.md §10), against a real S3 server on
//! loopback: moto, started by scripts/test (`PEIRCE_TEST_S3_ENDPOINT`), and for the test
//! that kills the server, a moto of its own (`PEIRCE_TEST_MOTO`).
//!
//! Every test works in a bucket of its own. Workspaces are separate sandboxes with separate
//! local stores; nodes count their executions in files of the first sandbox, so the counts
//! say what really ran on either side.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::s3::{self, Moto};
use common::*;
use serde_json::Value;

/// `gen` makes a small file and a 3 MB one; `left` and `right` read the small one; `join`
/// reads theirs. Each counts itself (in `counters`' sandbox) and sleeps `sleep` seconds.
fn shared_workflow(counters: &Sandbox, sleep: f64) -> String {
    let command = |name: &str, rest: &str| counted(counters, sleep, name, rest);
    format!(
        r#"[workflow]
name = "shared"

[gen]
kind = "exec"
command = {gen}

[left]
kind = "exec"
inputs = ["gen"]
command = {left}

[right]
kind = "exec"
inputs = ["gen"]
command = {right}

[join]
kind = "exec"
inputs = {{ sum = "left", count = "right" }}
env = {{ MODE = "a" }}
command = {join}
"#,
        gen = command(
            "gen",
            "seq 1 1000 > out/numbers.txt; head -c 3000000 /dev/zero | tr '\\0' x > out/pad.bin"
        ),
        left = command(
            "left",
            "awk '{s+=$1} END {print s}' {inputs.gen}/numbers.txt > out/sum.txt"
        ),
        right = command("right", "wc -l < {inputs.gen}/numbers.txt > out/count.txt"),
        join = command(
            "join",
            "cat {inputs.sum}/sum.txt {inputs.count}/count.txt > out/join.txt; echo $MODE >> out/join.txt"
        ),
    )
}

const SHARED: [&str; 4] = ["gen", "left", "right", "join"];

/// Digests of the blobs in a sandbox's local store.
fn local_blobs(sandbox: &Sandbox) -> BTreeSet<String> {
    sandbox
        .store_files()
        .into_iter()
        .filter(|path| path.parent().and_then(Path::parent) == Some(&sandbox.store().join("cas")))
        .map(|path| format!("blake3:{}", path.file_name().unwrap().to_string_lossy()))
        .collect()
}

fn remote_activity(record: &Value) -> &Value {
    let remote = &record["remote"];
    assert!(remote.is_object(), "no remote activity in {record:#}");
    remote
}

fn transfers(record: &Value, field: &str) -> u64 {
    remote_activity(record)["transfers"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no `{field}` in {record:#}"))
}

/// Every record on the remote whose tree or blobs are missing, of the wrong size or corrupt.
fn remote_problems(endpoint: &str, bucket: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for key in s3::list_keys(endpoint, bucket, "team/ac") {
        let record =
            peirce_store::encoding::decode_record(&s3::get_object(endpoint, bucket, &key).unwrap())
                .unwrap();
        let record = serde_json::to_value(record).unwrap();
        let output = record["output"].as_str().unwrap();
        let Some(tree) = s3::get_object(endpoint, bucket, &s3::blob_key(output)) else {
            problems.push(format!("{key}: tree {output} missing"));
            continue;
        };
        if peirce_store::BlobDigest::of(&tree).to_string() != output {
            problems.push(format!("{key}: tree {output} corrupt"));
        }
        let tree = common::tree_json(output, &tree).unwrap();
        for (name, entry) in tree["entries"].as_object().unwrap() {
            let digest = entry["digest"].as_str().unwrap();
            match s3::get_object(endpoint, bucket, &s3::blob_key(digest)) {
                None => problems.push(format!("{key}: `{name}` missing")),
                Some(bytes) if peirce_store::BlobDigest::of(&bytes).to_string() != digest => {
                    problems.push(format!("{key}: `{name}` corrupt"))
                }
                Some(_) => {}
            }
        }
    }
    problems
}

/// The store invariant for a workspace with a remote: every record's blobs are here, or on
/// the remote (verified there), since hits leave their files remote until read.
fn assert_sound_with_remote(sandbox: &Sandbox, endpoint: &str, bucket: &str) {
    let problems: Vec<String> = sandbox
        .store_problems()
        .into_iter()
        .filter(|problem| {
            let Some(digest) = problem
                .split_whitespace()
                .find(|word| word.starts_with("blake3:"))
                .filter(|_| problem.ends_with("missing"))
            else {
                return true;
            };
            match s3::get_object(endpoint, bucket, &s3::blob_key(digest)) {
                Some(bytes) => peirce_store::BlobDigest::of(&bytes).to_string() != digest,
                None => true,
            }
        })
        .collect();
    assert!(
        problems.is_empty(),
        "store invariant broken:\n{problems:#?}"
    );
}

#[test]
fn a_second_workspace_runs_nothing_and_downloads_only_what_it_reads() {
    let Some(endpoint) = s3::endpoint("a_second_workspace_...") else {
        return;
    };
    let (bucket, remote) = s3::fresh_remote(&endpoint, "share");
    let (first, second) = (Sandbox::new(), Sandbox::new());
    let text = shared_workflow(&first, 0.0);
    first.workflow(&text);
    second.workflow(&text);

    let ran = first.run_ok(&["--remote", &remote]);
    expect_statuses(&ran, &SHARED.map(|node| (node, "ran")));
    let activity = remote_activity(&ran);
    assert_eq!(
        activity["pushed"],
        serde_json::json!(["gen", "join", "left", "right"])
    );
    assert_eq!(activity["push_failures"], serde_json::json!({}));
    assert!(!activity["url"].as_str().unwrap().contains("allow_http"));
    assert_eq!(s3::list_keys(&endpoint, &bucket, "team/ac").len(), 4);
    assert!(remote_problems(&endpoint, &bucket).is_empty());

    // The second workspace: everything is a hit; only records and trees come down.
    let cached = second.run_ok(&["--remote", &remote]);
    expect_statuses(&cached, &SHARED.map(|node| (node, "cached")));
    assert_eq!(
        first.counts(&SHARED),
        [1, 1, 1, 1],
        "nothing executed twice"
    );
    assert_eq!(outputs(&cached), outputs(&ran));
    let trees: BTreeSet<String> = outputs(&ran).into_values().collect();
    let tree_bytes: u64 = trees
        .iter()
        .map(|tree| std::fs::metadata(first.blob_path(tree)).unwrap().len())
        .sum();
    assert_eq!(transfers(&cached, "records_fetched"), 4);
    assert_eq!(transfers(&cached, "blobs_downloaded"), 4, "the four trees");
    assert_eq!(transfers(&cached, "bytes_downloaded"), tree_bytes);
    assert_eq!(transfers(&cached, "bytes_uploaded"), 0);
    assert_eq!(local_blobs(&second), trees, "no file came down");

    // Reading a file downloads that file, verified, and nothing else.
    let join_listing = first.listing("join");
    assert_eq!(
        second
            .peirce(&["cat", "join", "join.txt", "--remote", &remote])
            .success()
            .stdout,
        "500500\n1000\na\n"
    );
    let mut expected = trees.clone();
    expected.insert(join_listing["join.txt"].1.clone());
    assert_eq!(local_blobs(&second), expected);

    // A changed `join` runs here: it needs `left`'s and `right`'s files, not `gen`'s.
    let rerun = second.run_ok(&["--remote", &remote, "--set", "join.env.MODE=b"]);
    expect_statuses(
        &rerun,
        &[
            ("gen", "cached"),
            ("left", "cached"),
            ("right", "cached"),
            ("join", "ran"),
        ],
    );
    assert_eq!(first.counts(&SHARED), [1, 1, 1, 2]);
    let local = local_blobs(&second);
    for (node, file) in [("left", "sum.txt"), ("right", "count.txt")] {
        assert!(
            local.contains(&first.listing(node)[file].1),
            "`{node}` was materialized"
        );
    }
    let gen_listing = first.listing("gen");
    for file in ["numbers.txt", "pad.bin"] {
        assert!(
            !local.contains(&gen_listing[file].1),
            "`gen`'s {file} was not needed"
        );
    }
    assert_eq!(
        remote_activity(&rerun)["pushed"],
        serde_json::json!(["join"])
    );
    assert!(transfers(&rerun, "bytes_downloaded") < 1000);
    assert_eq!(s3::list_keys(&endpoint, &bucket, "team/ac").len(), 5);
    assert!(remote_problems(&endpoint, &bucket).is_empty());
    assert_sound_with_remote(&second, &endpoint, &bucket);

    // `pull` fetches everything a workflow's results reach; a second pull moves nothing.
    let pulled = second
        .peirce(&[
            "pull",
            "wf.toml",
            "--remote",
            &remote,
            "--json",
            "--set",
            "join.env.MODE=b",
        ])
        .success()
        .json();
    assert!(pulled["transfers"]["bytes_downloaded"].as_u64().unwrap() > 3_000_000);
    let again = second
        .peirce(&[
            "pull",
            "wf.toml",
            "--remote",
            &remote,
            "--json",
            "--set",
            "join.env.MODE=b",
        ])
        .success()
        .json();
    assert_eq!(again["transfers"]["bytes_downloaded"], 0);
    assert!(local_blobs(&second).contains(&gen_listing["pad.bin"].1));
    second.assert_store_sound();
}

#[test]
fn two_runners_at_once_run_each_node_once() {
    let Some(endpoint) = s3::endpoint("two_runners_at_once_run_each_node_once") else {
        return;
    };
    let (bucket, remote) = s3::fresh_remote(&endpoint, "race");
    let (first, second) = (Sandbox::new(), Sandbox::new());
    let text = shared_workflow(&first, 1.0);
    first.workflow(&text);
    second.workflow(&text);
    let args = ["run", "wf.toml", "--json", "--remote", remote.as_str()];
    let (one, two) = (first.spawn(&args), second.spawn(&args));
    let (one, two) = (finish(one).success(), finish(two).success());
    let (one, two) = (one.json(), two.json());
    assert_eq!(
        first.counts(&SHARED),
        [1, 1, 1, 1],
        "each node ran once in all"
    );
    assert_eq!(
        outputs(&one),
        outputs(&two),
        "both runners have the same results"
    );
    for node in SHARED {
        let mut seen = [statuses(&one)[node].clone(), statuses(&two)[node].clone()];
        seen.sort();
        assert_eq!(seen, ["cached", "ran"], "`{node}` ran in one runner only");
    }
    assert!(remote_problems(&endpoint, &bucket).is_empty());
    assert_sound_with_remote(&first, &endpoint, &bucket);
    assert_sound_with_remote(&second, &endpoint, &bucket);
}

#[test]
fn a_corrupt_remote_blob_is_detected_never_used_and_healed() {
    let Some(endpoint) = s3::endpoint("a_corrupt_remote_blob_...") else {
        return;
    };
    let (bucket, remote) = s3::fresh_remote(&endpoint, "corrupt");
    let (first, second, third) = (Sandbox::new(), Sandbox::new(), Sandbox::new());
    let text = shared_workflow(&first, 0.0);
    for sandbox in [&first, &second, &third] {
        sandbox.workflow(&text);
    }
    first.run_ok(&["--remote", &remote]);
    let numbers = first.listing("gen")["numbers.txt"].1.clone();
    let key = s3::blob_key(&numbers);
    let good = s3::get_object(&endpoint, &bucket, &key).unwrap();
    let mut bad = good.clone();
    bad[0] ^= 0x20; // same length: only hashing can tell
    s3::put_object(&endpoint, &bucket, &key, &bad);

    // A hit costs no file, so the damage shows when something reads the file.
    second.run_ok(&["--remote", &remote]);
    let read = second
        .peirce(&["cat", "gen", "numbers.txt", "--remote", &remote])
        .expect_code(1);
    assert!(
        read.stdout.is_empty(),
        "corrupt bytes were printed:\n{read}"
    );
    assert!(
        read.stderr.contains("corrupt") && read.stderr.contains(&numbers),
        "{read}"
    );
    assert!(!local_blobs(&second).contains(&numbers), "never installed");
    assert_eq!(
        s3::get_object(&endpoint, &bucket, &key),
        None,
        "moved out of cas/"
    );
    assert!(
        s3::list_keys(&endpoint, &bucket, "team/quarantine")
            .iter()
            .any(|quarantined| quarantined.contains(&numbers[7..])),
        "kept in the remote's quarantine"
    );

    // Status says why `gen` is stale; the next run recomputes it and the push heals it.
    let status = second
        .peirce(&["status", "wf.toml", "--remote", &remote])
        .success()
        .stdout;
    let gen_line = status.lines().find(|line| line.contains(" gen ")).unwrap();
    assert!(
        gen_line.contains("stale")
            && gen_line.contains("on the remote")
            && gen_line.contains("missing"),
        "{status}"
    );
    let healed = second.run_ok(&["--remote", &remote]);
    assert_eq!(statuses(&healed)["gen"], "ran");
    assert_eq!(first.count("gen"), 2);
    assert_eq!(s3::get_object(&endpoint, &bucket, &key), Some(good));
    assert!(remote_problems(&endpoint, &bucket).is_empty());
    let fresh = third.run_ok(&["--remote", &remote]);
    expect_statuses(&fresh, &SHARED.map(|node| (node, "cached")));
    assert_eq!(
        third
            .peirce(&["cat", "gen", "numbers.txt", "--remote", &remote])
            .success()
            .stdout
            .lines()
            .count(),
        1000
    );
}

#[test]
fn remotes_come_from_the_flag_the_workflow_or_the_user_config() {
    let Some(endpoint) = s3::endpoint("remotes_come_from_...") else {
        return;
    };
    let (_, remote) = s3::fresh_remote(&endpoint, "config");
    let sandbox = Sandbox::new();
    let text = shared_workflow(&sandbox, 0.0);
    sandbox.workflow(&text);
    let pushed = sandbox.peirce(&["push", "wf.toml"]).expect_code(2);
    assert!(pushed.stderr.contains("needs a remote"), "{pushed}");

    // The user config file.
    std::fs::create_dir_all(sandbox.path("config/peirce")).unwrap();
    sandbox.write(
        "config/peirce/config.toml",
        &format!("remote = {}\n", toml_string(&remote)),
    );
    let record = sandbox.run_ok(&[]);
    assert_eq!(
        remote_activity(&record)["pushed"].as_array().unwrap().len(),
        4
    );
    let local_only = sandbox.run_ok(&["--no-remote"]);
    assert!(local_only["remote"].is_null());

    // The workflow's `remote` wins over the config; the flag wins over both.
    let (_, other) = s3::fresh_remote(&endpoint, "config-workflow");
    sandbox.workflow(&format!(
        "{}\n",
        text.replace(
            "name = \"shared\"",
            &format!("name = \"shared\"\nremote = {}", toml_string(&other))
        )
    ));
    let record = sandbox.run_ok(&[]);
    let url = remote_activity(&record)["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(url.contains("config-workflow"), "{url}");
    assert_eq!(remote_activity(&record)["pushed"], serde_json::json!([]));
    let pushed = sandbox
        .peirce(&["push", "wf.toml", "--json"])
        .success()
        .json();
    assert_eq!(pushed["results"].as_array().unwrap().len(), 4);
    assert!(pushed["transfers"]["bytes_uploaded"].as_u64().unwrap() > 3_000_000);
    let record = sandbox.run_ok(&["--remote", &remote]);
    assert!(!remote_activity(&record)["url"]
        .as_str()
        .unwrap()
        .contains("config-workflow"));
}

#[test]
fn credentials_are_never_printed_or_stored() {
    let Some(endpoint) = s3::endpoint("credentials_are_never_printed_or_stored") else {
        return;
    };
    let (bucket, remote) = s3::fresh_remote(&endpoint, "secrets");
    let sandbox = Sandbox::new();
    sandbox.workflow(&shared_workflow(&sandbox, 0.0));
    let secret_url =
        format!("{remote}&access_key_id=AKIDQUERYSECRET&secret_access_key=QUERYSECRET");
    let run = |args: &[&str]| {
        let mut command = sandbox.command(args);
        command.env("AWS_SECRET_ACCESS_KEY", "ENVSECRET");
        finish(command.spawn().unwrap())
    };
    let outcome = run(&["run", "wf.toml", "--json", "-vv", "--remote", &secret_url]).success();
    let broken = format!("{secret_url}&no_such_option=1");
    let failed = run(&["plan", "wf.toml", "--remote", &broken]).expect_code(1);
    assert!(failed.stderr.contains("no_such_option"), "{failed}");
    let mut texts = vec![outcome.stdout, outcome.stderr, failed.stdout, failed.stderr];
    for path in sandbox.store_files() {
        texts.push(String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned());
    }
    for key in s3::list_keys(&endpoint, &bucket, "team") {
        let bytes = s3::get_object(&endpoint, &bucket, &key).unwrap();
        texts.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    for text in &texts {
        for secret in ["QUERYSECRET", "ENVSECRET"] {
            assert!(!text.contains(secret), "`{secret}` leaked into:\n{text}");
        }
    }
}

/// Every text a command and its store show: its output, and each file under the store.
fn shown_texts(sandbox: &Sandbox, outcomes: &[&Outcome]) -> Vec<String> {
    let mut texts: Vec<String> = outcomes
        .iter()
        .flat_map(|outcome| [outcome.stdout.clone(), outcome.stderr.clone()])
        .collect();
    for path in sandbox.store_files() {
        texts.push(String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned());
    }
    texts
}

/// A mistyped remote URL is a usage error whose message shows the URL redacted: a URL that
/// does not parse (a bad port, an invalid IPv6 host) or has no scheme used to be printed
/// whole, credentials included. Needs no S3 server: nothing is opened.
#[test]
fn a_mistyped_remote_url_shows_no_credentials() {
    let sandbox = Sandbox::new();
    sandbox.workflow(&shared_workflow(&sandbox, 0.0));
    let mut outcomes = Vec::new();
    for url in [
        "s3://AKIAEXAMPLE:wJalrSECRET@bucket:99999/p",
        "s3://AKIAEXAMPLE:wJalrSECRET@[::zz]/p",
        "AKIAEXAMPLE:wJalrSECRET@bucket/p",
        "://AKIAEXAMPLE:wJalrSECRET@bucket/p",
    ] {
        let outcome = sandbox
            .peirce(&["plan", "wf.toml", "--remote", url])
            .expect_code(2);
        assert!(outcome.stderr.contains("--remote"), "{outcome}");
        outcomes.push(outcome);
        let mut command = sandbox.command(&["plan", "wf.toml"]);
        command.env("PEIRCE_REMOTE", url);
        outcomes.push(finish(command.spawn().unwrap()).expect_code(2));
    }
    assert!(
        outcomes[0].stderr.contains("invalid port"),
        "{}",
        outcomes[0]
    );
    assert!(
        outcomes[0].stderr.contains("bucket:99999"),
        "{}",
        outcomes[0]
    );
    assert!(
        outcomes[2].stderr.contains("invalid IPv6"),
        "{}",
        outcomes[2]
    );
    // Help shows where `--remote` may come from, not what the environment holds.
    let mut command = sandbox.command(&["plan", "--help"]);
    command.env("PEIRCE_REMOTE", "s3://AKIAEXAMPLE:wJalrSECRET@bucket/p");
    outcomes.push(finish(command.spawn().unwrap()).success());
    // Nothing was created for the scheme-less one.
    assert!(!sandbox.path("AKIAEXAMPLE:wJalrSECRET@bucket").exists());
    for text in shown_texts(&sandbox, &outcomes.iter().collect::<Vec<_>>()) {
        for secret in ["AKIAEXAMPLE", "wJalrSECRET"] {
            assert!(!text.contains(secret), "`{secret}` leaked into:\n{text}");
        }
    }
}

/// An endpoint with a password, or with a secret in its query, reaches object_store, whose
/// errors quote the request URL: neither the messages (`-v` logs included) nor the run
/// record (`runs --json`, `status --json`, the files of the store) show it. The endpoint is
/// an unreachable port: no S3 server needed.
#[test]
fn an_endpoint_password_stays_out_of_errors_and_run_records() {
    for (endpoint, secrets) in [
        ("http://minio:pw@127.0.0.1:1", &["minio:pw", ":pw@"][..]),
        (
            "http://127.0.0.1:1/?token=QUERYSECRET",
            &["QUERYSECRET"][..],
        ),
        ("http://127.0.0.1:1/?BARESECRET", &["BARESECRET"][..]),
    ] {
        let sandbox = Sandbox::new();
        sandbox.workflow(&shared_workflow(&sandbox, 0.0));
        let remote =
            format!("s3://bucket/team?endpoint={endpoint}&allow_http=true&retries=0&timeout=5");
        let peirce = |args: &[&str]| {
            let mut command = sandbox.command(args);
            command
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .env_remove("AWS_PROFILE")
                .env_remove("AWS_ENDPOINT_URL");
            finish(command.spawn().unwrap())
        };
        let run = peirce(&["run", "wf.toml", "--json", "-v", "--remote", &remote]).expect_code(1);
        let record = run.json();
        assert_eq!(record["status"], "failed", "{run}");
        assert!(
            run.stderr.contains("127.0.0.1:1"),
            "the error names the endpoint:\n{run}"
        );
        let runs = peirce(&["runs", "--json"]).success();
        assert_eq!(runs.json().as_array().unwrap().len(), 1, "{runs}");
        let status = peirce(&["status", "wf.toml", "--json", "--no-remote"]).success();
        let push = peirce(&["push", "wf.toml", "--remote", &remote]);
        let texts = shown_texts(&sandbox, &[&run, &runs, &status, &push]);
        assert!(
            texts.iter().any(|text| text.contains("Error performing")),
            "the run record keeps object_store's error:\n{runs}"
        );
        for text in &texts {
            for secret in secrets {
                assert!(!text.contains(secret), "`{secret}` leaked into:\n{text}");
            }
        }
    }
}

/// A run record written before redaction existed, holding an endpoint's password in a node
/// error: `runs --json` and `status --json` show it redacted, and `push --run` sends (and
/// keeps) only the redacted record. The remote is a folder: no S3 server needed.
#[test]
fn an_old_run_record_is_redacted_when_shown_or_pushed() {
    let sandbox = Sandbox::new();
    sandbox.workflow(&shared_workflow(&sandbox, 0.0));
    let record = sandbox.run_ok(&[]);
    let id = record["id"].as_str().unwrap();
    let path = sandbox.store().join("runs").join(id);
    let mut stored: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    stored["nodes"]["left"]["error"] =
        "GET http://minio:OLDSECRET@127.0.0.1:1/b?X-Amz-Signature=OLDSIGNATURE".into();
    std::fs::write(&path, serde_json::to_vec_pretty(&stored).unwrap()).unwrap();

    let runs = sandbox.peirce(&["runs", "--json"]).success();
    assert!(runs.stdout.contains("http://***@127.0.0.1:1/b"), "{runs}");
    let status = sandbox.peirce(&["status", "wf.toml", "--json"]).success();
    let remote = sandbox.path("remote");
    let remote = remote.to_str().unwrap();
    let push = sandbox
        .peirce(&["push", "--run", id, "--remote", remote])
        .success();
    let mut texts = shown_texts(&sandbox, &[&runs, &status, &push]);
    texts.push(std::fs::read_to_string(sandbox.path("remote/runs").join(id)).unwrap());
    for text in &texts {
        for secret in ["OLDSECRET", "OLDSIGNATURE"] {
            assert!(!text.contains(secret), "`{secret}` leaked into:\n{text}");
        }
    }
}

/// Waits for `condition`, polling, or fails after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The S3 server dies in the middle of pushing a 120 MiB artifact. moto keeps objects in
/// memory, so the test server records every request and the restarted one replays them:
/// after the restart the server holds exactly what the old one had completed (the
/// interrupted multipart upload is gone, as its parts never formed an object). Then: no
/// record without its bytes, the next push completes, and a fresh workspace gets verified
/// hits, downloading the artifact in ranges that a second `pull` resumes after a kill.
#[test]
fn a_server_killed_mid_push_leaves_no_record_and_the_next_push_completes() {
    let Some(program) = s3::moto_program("a_server_killed_mid_push_...") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut moto = Moto::start(&program, dir.path());
    let endpoint = moto.endpoint();
    let (bucket, remote) = s3::fresh_remote(&endpoint, "killed");
    // Fail fast while the server is down instead of retrying for minutes.
    let remote = format!("{remote}&retries=1&retry_timeout=2");
    let (first, fresh) = (Sandbox::new(), Sandbox::new());
    let size: u64 = 120 << 20;
    let text = format!(
        r#"[small]
kind = "exec"
command = "echo small > out/small.txt"

[big]
kind = "exec"
inputs = ["small"]
command = "head -c {size} /dev/urandom > out/big.bin"
"#
    );
    first.workflow(&text);
    fresh.workflow(&text);
    let record = first.run_ok(&[]);
    let big_key = record["nodes"]["big"]["key"].as_str().unwrap().to_string();
    let big_blob = first.listing("big")["big.bin"].1.clone();

    let push = first.spawn(&["push", "wf.toml", "--remote", &remote, "-j", "1"]);
    // Kill the server once the big upload has sent a few parts.
    // Parts are recorded base64-encoded: 24 MB of recording is more than two 8 MiB parts.
    let recording = moto.recording.clone();
    wait_until("two parts to arrive", Duration::from_secs(60), || {
        std::fs::metadata(&recording)
            .map(|meta| meta.len() > 24 << 20)
            .unwrap_or(false)
    });
    moto.kill();
    let failed = finish(push);
    assert_eq!(
        failed.code, 1,
        "the push fails while the server is gone:\n{failed}"
    );
    assert!(failed.stderr.contains("big"), "{failed}");

    moto.restart(&program);
    assert_eq!(
        s3::get_object(&endpoint, &bucket, &s3::record_key(&big_key)),
        None,
        "no record of `big` on the remote"
    );
    assert_eq!(
        s3::get_object(&endpoint, &bucket, &s3::blob_key(&big_blob)),
        None
    );
    assert!(remote_problems(&endpoint, &bucket).is_empty());
    let plan = fresh.plan(&["--remote", &remote]);
    assert_eq!(planned(&plan, "big")["state"], "runs", "{plan:#}");

    let pushed = first
        .peirce(&["push", "wf.toml", "--remote", &remote, "--json"])
        .success()
        .json();
    assert!(pushed["transfers"]["bytes_uploaded"].as_u64().unwrap() >= size);
    assert!(remote_problems(&endpoint, &bucket).is_empty());

    // A fresh workspace: hits; the artifact comes down in ranges, resumed after a kill.
    let hits = fresh.run_ok(&["--remote", &remote]);
    expect_statuses(&hits, &[("small", "cached"), ("big", "cached")]);
    let pull = fresh.spawn(&["pull", "wf.toml", "--node", "big", "--remote", &remote]);
    let journal = fresh
        .store()
        .join("tmp")
        .join(format!("fetch-{}.ranges", &big_blob[7..]));
    wait_until("a first range to arrive", Duration::from_secs(60), || {
        std::fs::read_to_string(&journal)
            .map(|text| text.lines().count() >= 2)
            .unwrap_or(false)
    });
    let mut pull = pull;
    pull.kill().unwrap();
    pull.wait().unwrap();
    let resumed = fresh
        .peirce(&[
            "pull", "wf.toml", "--node", "big", "--remote", &remote, "--json",
        ])
        .success()
        .json();
    let downloaded = resumed["transfers"]["bytes_downloaded"].as_u64().unwrap();
    assert!(
        downloaded > 0 && downloaded < size,
        "the second pull fetched {downloaded} of {size} bytes"
    );
    let original = std::fs::read(first.blob_path(&big_blob)).unwrap();
    let copy = std::fs::read(fresh.blob_path(&big_blob)).unwrap();
    assert!(original == copy, "the pulled artifact differs");
    assert_sound_with_remote(&fresh, &endpoint, &bucket);
}
