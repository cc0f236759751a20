//! Results are never served from bytes other than their key says: a node that writes into
//! its input (a hard link to the store's blob) fails and cannot corrupt another node's cached
//! result, and an action record copied to another action's key is refused
//! (docs/architecture.md §5, §15).

mod common;

use std::path::Path;

use common::{planned, toml_string, Sandbox};
use serde_json::Value;

/// Every blob under `cas/` hashes to its name.
fn assert_every_blob_matches_its_name(sandbox: &Sandbox) {
    fn walk(dir: &Path, bad: &mut Vec<String>) {
        let Ok(reader) = std::fs::read_dir(dir) else {
            return;
        };
        for item in reader.flatten() {
            let path = item.path();
            if path.is_dir() {
                walk(&path, bad);
                continue;
            }
            let bytes = std::fs::read(&path).expect("reading a blob");
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if blake3::hash(&bytes).to_hex().as_str() != name {
                bad.push(format!(
                    "{}: {:?}",
                    path.display(),
                    String::from_utf8_lossy(&bytes)
                ));
            }
        }
    }
    let mut bad = Vec::new();
    walk(&sandbox.store().join("cas"), &mut bad);
    assert!(
        bad.is_empty(),
        "blobs that do not hash to their name:\n{bad:#?}"
    );
}

/// `peirce cat NODE FILE`, if the node has a result: its text.
fn served(sandbox: &Sandbox, node: &str, file: &str) -> Option<String> {
    let outcome = sandbox.peirce(&["cat", node, file]);
    (outcome.code == 0).then_some(outcome.stdout)
}

fn node_error(record: &Value, node: &str) -> String {
    record["nodes"][node]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_node_writing_into_its_input_cannot_corrupt_another_nodes_result() {
    let sandbox = Sandbox::new();
    sandbox.workflow(&format!(
        r#"[producer]
kind = "exec"
command = {producer}

[careless]
kind = "exec"
inputs = {{ p = "producer" }}
command = {careless}

[innocent]
kind = "exec"
inputs = {{ p = "producer", c = "careless" }}
command = "cp {{inputs.p}}/data.txt out/copy.txt"

[bystander]
kind = "exec"
inputs = {{ p = "producer" }}
command = "sleep 0.3; cp {{inputs.p}}/data.txt out/copy.txt"
"#,
        producer = toml_string(&format!(
            "{}; echo 'good data' > out/data.txt",
            sandbox.counter("producer")
        )),
        careless = toml_string(
            "printf EVIL | dd of={inputs.p}/data.txt bs=1 seek=4 conv=notrunc; echo done > out/done.txt"
        ),
    ));
    for run in 1..=2 {
        let (outcome, record) = sandbox.run(&[]);
        let outcome = outcome.expect_code(1);
        assert_eq!(
            record["nodes"]["careless"]["status"], "failed",
            "{record:#}"
        );
        let error = node_error(&record, "careless");
        assert!(
            error.contains("node `careless` modified its input `p/data.txt`")
                && error.contains("quarantined"),
            "run {run}: unclear error: {error}\n{outcome}"
        );
        for node in ["innocent", "bystander"] {
            if let Some(text) = served(&sandbox, node, "copy.txt") {
                assert_eq!(
                    text, "good data\n",
                    "run {run}: `{node}` served changed bytes"
                );
            }
        }
        if let Some(text) = served(&sandbox, "producer", "data.txt") {
            assert_eq!(
                text, "good data\n",
                "run {run}: the producer's result changed"
            );
        }
        // The changed blob is in `quarantine/`, not `cas/`: the producer's record is a miss.
        assert_every_blob_matches_its_name(&sandbox);
    }
    // The quarantined blob broke the producer's record, so the second run recomputed it.
    assert_eq!(sandbox.count("producer"), 2);
}

/// A counted `producer` writing `data.txt`, and `writer` running `command` on it (input `p`).
fn producer_and_writer(sandbox: &Sandbox, command: &str) {
    sandbox.workflow(&format!(
        r#"[producer]
kind = "exec"
command = {producer}

[writer]
kind = "exec"
inputs = {{ p = "producer" }}
command = {command}
"#,
        producer = toml_string(&format!(
            "{}; echo 'good data' > out/data.txt",
            sandbox.counter("producer")
        )),
        command = toml_string(command),
    ));
}

#[test]
fn a_node_that_chmods_and_writes_its_input_fails_and_its_producer_reruns() {
    let sandbox = Sandbox::new();
    producer_and_writer(&sandbox, "chmod u+w {inputs.p}/data.txt && echo EVIL >> {inputs.p}/data.txt && cp {inputs.p}/data.txt out/copy.txt");
    let (outcome, record) = sandbox.run(&[]);
    let outcome = outcome.expect_code(1);
    assert_eq!(record["nodes"]["writer"]["status"], "failed", "{record:#}");
    let error = node_error(&record, "writer");
    assert!(
        error.contains("node `writer` modified its input `p/data.txt`"),
        "unclear error: {error}\n{outcome}"
    );
    assert!(!sandbox.has_record_for("writer"), "a result was published");
    assert_every_blob_matches_its_name(&sandbox);
    // The producer's blob is gone from `cas/`, so its record is broken and it reruns.
    let plan = sandbox.plan(&[]);
    assert_eq!(planned(&plan, "producer")["state"], "runs", "{plan:#}");
    producer_and_writer(
        &sandbox,
        "cp {inputs.p}/data.txt out/copy.txt && echo fine >> out/copy.txt",
    );
    let record = sandbox.run_ok(&[]);
    assert_eq!(record["nodes"]["producer"]["status"], "ran", "{record:#}");
    assert_eq!(sandbox.count("producer"), 2);
    assert_eq!(sandbox.cat("writer", "copy.txt"), "good data\nfine\n");
    assert_every_blob_matches_its_name(&sandbox);
    sandbox.assert_store_sound();
}

#[test]
fn a_node_that_only_chmods_its_input_succeeds_and_the_blob_stays_read_only() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new();
    sandbox.workflow(
        r#"[producer]
kind = "exec"
command = "echo 'good data' > out/data.txt"

[chmodder]
kind = "exec"
inputs = { p = "producer" }
command = "chmod 644 {inputs.p}/data.txt && cp {inputs.p}/data.txt out/copy.txt"
"#,
    );
    sandbox.run_ok(&[]);
    assert_eq!(sandbox.cat("chmodder", "copy.txt"), "good data\n");
    let listing = sandbox.listing("producer");
    let blob = sandbox.blob_path(&listing["data.txt"].1);
    let mode = std::fs::metadata(blob).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o444, "the store's blob was left writable");
}

/// Two independent nodes; `b`'s record is copied to `a`'s key, its key field rewritten.
#[test]
fn a_record_copied_to_another_actions_key_is_refused() {
    let sandbox = Sandbox::new();
    sandbox.workflow(&format!(
        r#"[a]
kind = "exec"
command = {a}

[b]
kind = "exec"
command = "echo forged > out/out.txt"
"#,
        a = toml_string(&format!(
            "{}; echo genuine > out/out.txt",
            sandbox.counter("a")
        )),
    ));
    let record = sandbox.run_ok(&[]);
    let key_of = |node: &str| {
        record["nodes"][node]["key"]
            .as_str()
            .expect("a key")
            .strip_prefix("blake3:")
            .expect("a blake3 key")
            .to_string()
    };
    let (a, b) = (key_of("a"), key_of("b"));
    let ac = sandbox.store().join("ac");
    let bytes = std::fs::read(ac.join(&b)).expect("b's record");
    let mut forged = peirce_store::encoding::decode_record(&bytes).expect("a record");
    forged.key = format!("blake3:{a}").parse().expect("a key");
    std::fs::write(ac.join(&a), peirce_store::encoding::encode_record(&forged)).unwrap();

    let read = sandbox.peirce(&["cat", "a", "out.txt"]);
    assert!(
        !read.stdout.contains("forged"),
        "a forged record was served:\n{read}"
    );
    let plan = sandbox.plan(&[]);
    assert_eq!(planned(&plan, "a")["state"], "runs", "{plan:#}");
    let outcome = sandbox.peirce(&["run", "wf.toml", "--json"]).success();
    let record = outcome.json();
    assert_eq!(record["nodes"]["a"]["status"], "ran", "{record:#}");
    assert_eq!(record["nodes"]["b"]["status"], "cached", "{record:#}");
    assert_eq!(sandbox.count("a"), 2);
    assert_eq!(sandbox.cat("a", "out.txt"), "genuine\n");
}
