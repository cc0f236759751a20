//! Signed action records (docs/architecture.md §15): with a team key in
//! `PEIRCE_SIGNING_KEY`, records read from the remote must carry the key's valid MAC. A
//! record forged by anyone who can write the bucket (true key components, another complete
//! output tree) or signed with another key is refused, and the node reruns; a colleague's
//! signed record is a hit. Without a key nothing is signed or verified.
//!
//! The remote is a folder shared by several workspaces (sandboxes), so these run without S3.

mod common;

use std::path::{Path, PathBuf};

use common::{planned, toml_string, Outcome, Sandbox};
use serde_json::Value;

const TEAM_KEY: &str = "5eed000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d";
const OTHER_KEY: &str = "07e4ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d";

/// The id a key is named by in messages: the first 8 bytes of its blake3, in hex.
fn key_id(hex: &str) -> String {
    let bytes: Vec<u8> = (0..32)
        .map(|index| u8::from_str_radix(&hex[2 * index..2 * index + 2], 16).unwrap())
        .collect();
    blake3::hash(&bytes).to_hex()[..16].to_string()
}

/// A bucket shared by a team: a remote folder, and a counter of `a`'s executions in any
/// workspace (the command, and so the key, is the same everywhere).
struct Team {
    dir: tempfile::TempDir,
}

impl Team {
    fn new() -> Self {
        Team {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn remote(&self) -> PathBuf {
        self.dir.path().join("remote")
    }

    fn count(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("count-a"))
            .map(|text| text.lines().count())
            .unwrap_or(0)
    }

    /// A workspace of this team, with `a` (counted, writes "genuine") and `b` (writes
    /// "forged": the output a forger puts under `a`'s key).
    fn workspace(&self) -> Sandbox {
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
                "echo x >> '{}'; echo genuine > out/out.txt",
                self.dir.path().join("count-a").display()
            )),
        ));
        sandbox
    }

    /// `peirce ARGS --remote <team remote>` in `sandbox`, with `key` as PEIRCE_SIGNING_KEY.
    fn peirce(&self, sandbox: &Sandbox, key: Option<&str>, args: &[&str]) -> Outcome {
        let remote = self.remote();
        let mut args = args.to_vec();
        args.extend(["--remote", remote.to_str().unwrap()]);
        let mut command = sandbox.command(&args);
        if let Some(key) = key {
            command.env("PEIRCE_SIGNING_KEY", key);
        }
        common::finish(command.spawn().unwrap())
    }

    /// A run that must succeed; its record.
    fn run(&self, sandbox: &Sandbox, key: Option<&str>) -> Value {
        self.peirce(sandbox, key, &["run", "wf.toml", "--json"])
            .success()
            .json()
    }

    /// `peirce cat NODE FILE` through the remote (files stay remote until read).
    fn cat(&self, sandbox: &Sandbox, key: Option<&str>, node: &str, file: &str) -> String {
        self.peirce(sandbox, key, &["cat", node, file])
            .success()
            .stdout
    }

    /// `a`'s plan entry, as text (its reasons say why a record was refused).
    fn plan_of_a(&self, sandbox: &Sandbox, key: Option<&str>) -> String {
        let plan = self
            .peirce(sandbox, key, &["plan", "wf.toml", "--json"])
            .success()
            .json();
        planned(&plan, "a").to_string()
    }
}

fn key_of(record: &Value, node: &str) -> String {
    record["nodes"][node]["key"]
        .as_str()
        .and_then(|key| key.strip_prefix("blake3:"))
        .expect("a blake3 key")
        .to_string()
}

/// Puts under `a`'s key on the remote a record with `a`'s true components and `b`'s
/// complete output tree, unsigned: what anyone who can write `ac/` can do.
fn forge(remote: &Path, a: &str, b: &str) {
    let ac = remote.join("ac");
    let genuine = peirce_store::encoding::decode_record(&std::fs::read(ac.join(a)).unwrap());
    let other = peirce_store::encoding::decode_record(&std::fs::read(ac.join(b)).unwrap());
    let mut forged = genuine.expect("a's record");
    forged.output = other.expect("b's record").output;
    std::fs::write(ac.join(a), peirce_store::encoding::encode_record(&forged)).unwrap();
}

#[test]
fn a_forged_remote_record_is_refused_with_a_key_and_the_node_recomputes() {
    let team = Team::new();
    let colleague = team.workspace();
    let record = team.run(&colleague, Some(TEAM_KEY));
    assert_eq!(team.count(), 1);
    forge(&team.remote(), &key_of(&record, "a"), &key_of(&record, "b"));

    // Without a key nothing is verified: the forged record is served (as before signing).
    let careless = team.workspace();
    let record = team.run(&careless, None);
    assert_eq!(record["nodes"]["a"]["status"], "cached", "{record:#}");
    assert_eq!(team.cat(&careless, None, "a", "out.txt"), "forged\n");
    assert_eq!(team.count(), 1);

    // With the team key it is refused, saying why, and `a` reruns to the right output.
    let careful = team.workspace();
    let plan = team.plan_of_a(&careful, Some(TEAM_KEY));
    for needle in [
        "is not signed with this team's key",
        &key_id(TEAM_KEY),
        "it is unsigned",
        team.remote().to_str().unwrap(),
    ] {
        assert!(plan.contains(needle), "`{needle}` not in {plan}");
    }
    assert!(!plan.contains(TEAM_KEY), "the key was shown: {plan}");
    let record = team.run(&careful, Some(TEAM_KEY));
    assert_eq!(record["nodes"]["a"]["status"], "ran", "{record:#}");
    assert_eq!(record["nodes"]["b"]["status"], "cached", "{record:#}");
    assert_eq!(team.count(), 2);
    assert_eq!(
        team.cat(&careful, Some(TEAM_KEY), "a", "out.txt"),
        "genuine\n"
    );

    // Its push replaced the forged record: teammates get a hit again.
    let teammate = team.workspace();
    let record = team.run(&teammate, Some(TEAM_KEY));
    assert_eq!(record["nodes"]["a"]["status"], "cached", "{record:#}");
    assert_eq!(
        team.cat(&teammate, Some(TEAM_KEY), "a", "out.txt"),
        "genuine\n"
    );
    assert_eq!(team.count(), 2);
}

#[test]
fn a_record_signed_with_another_key_is_refused() {
    let team = Team::new();
    let outsider = team.workspace();
    team.run(&outsider, Some(OTHER_KEY));
    assert_eq!(team.count(), 1);

    let member = team.workspace();
    let plan = team.plan_of_a(&member, Some(TEAM_KEY));
    let needle = format!("it is signed with key `{}`", key_id(OTHER_KEY));
    assert!(plan.contains(&needle), "`{needle}` not in {plan}");
    let record = team.run(&member, Some(TEAM_KEY));
    assert_eq!(record["nodes"]["a"]["status"], "ran", "{record:#}");
    assert_eq!(team.count(), 2);
}

#[test]
fn a_colleagues_signed_record_is_a_hit() {
    let team = Team::new();
    let colleague = team.workspace();
    team.run(&colleague, Some(TEAM_KEY));
    let me = team.workspace();
    let record = team.run(&me, Some(TEAM_KEY));
    assert_eq!(record["nodes"]["a"]["status"], "cached", "{record:#}");
    assert_eq!(record["nodes"]["b"]["status"], "cached", "{record:#}");
    assert_eq!(team.cat(&me, Some(TEAM_KEY), "a", "out.txt"), "genuine\n");
    assert_eq!(team.count(), 1, "a signed record was not used");

    // Records in both stores carry the team key's signature (local ones too).
    for store in [team.remote(), me.store()] {
        let bytes = std::fs::read(store.join("ac").join(key_of(&record, "a"))).unwrap();
        let stored = peirce_store::encoding::decode_stored_record(&bytes).unwrap();
        let signature = stored.signature.expect("a signed record");
        assert_eq!(signature.key_id.to_string(), key_id(TEAM_KEY));
    }
}

#[test]
fn without_a_key_records_are_unsigned() {
    let team = Team::new();
    let sandbox = team.workspace();
    let record = team.run(&sandbox, None);
    for store in [team.remote(), sandbox.store()] {
        let bytes = std::fs::read(store.join("ac").join(key_of(&record, "a"))).unwrap();
        let stored = peirce_store::encoding::decode_stored_record(&bytes).unwrap();
        assert_eq!(stored.signature, None);
        assert_eq!(stored.signed_len, bytes.len());
    }
}

#[test]
fn a_malformed_key_is_an_error_that_never_shows_it() {
    let team = Team::new();
    let sandbox = team.workspace();
    let secret = "5ecre7-not-hex-5ecre7";
    let outcome = team.peirce(&sandbox, Some(secret), &["run", "wf.toml"]);
    assert_ne!(outcome.code, 0, "{outcome}");
    assert!(
        outcome
            .stderr
            .contains("the signing key in PEIRCE_SIGNING_KEY is not 64 hex digits"),
        "{outcome}"
    );
    assert!(!outcome.to_string().contains(secret), "{outcome}");

    let file = sandbox.write("team.key", &format!("{secret}\n"));
    let mut command = sandbox.command(&["run", "wf.toml"]);
    command.env("PEIRCE_SIGNING_KEY_FILE", &file);
    let outcome = common::finish(command.spawn().unwrap());
    assert_ne!(outcome.code, 0, "{outcome}");
    assert!(outcome.stderr.contains("is not 64 hex digits"), "{outcome}");
    assert!(
        outcome.stderr.contains("PEIRCE_SIGNING_KEY_FILE"),
        "{outcome}"
    );
    assert!(!outcome.to_string().contains(secret), "{outcome}");
    assert_eq!(team.count(), 0);

    // A key file holding the key works like the variable.
    sandbox.write("team.key", &format!("{TEAM_KEY}\n"));
    let mut command = sandbox.command(&["run", "wf.toml", "--json"]);
    command.env("PEIRCE_SIGNING_KEY_FILE", &file);
    common::finish(command.spawn().unwrap()).success();
    let record = sandbox.action_records();
    assert!(!record.is_empty());
    let key = std::fs::read_dir(sandbox.store().join("ac"))
        .unwrap()
        .next();
    let bytes = std::fs::read(key.unwrap().unwrap().path()).unwrap();
    let stored = peirce_store::encoding::decode_stored_record(&bytes).unwrap();
    assert_eq!(
        stored
            .signature
            .map(|signature| signature.key_id.to_string()),
        Some(key_id(TEAM_KEY))
    );
}
