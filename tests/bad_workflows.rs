//! Invalid workflows and flags are rejected before anything runs: exit code 2, an error
//! naming the file and line (each fixture in `tests/fixtures/bad/` says which on its first
//! line: `# error on line N: MESSAGE`), nothing executed, nothing stored.

mod common;

use std::path::Path;

use common::{toml_string, Sandbox};

/// The expected line and message from a fixture's first-line comment.
fn expectation(text: &str) -> (usize, String) {
    let first = text.lines().next().unwrap_or_default();
    let rest = first
        .strip_prefix("# error on line ")
        .unwrap_or_else(|| panic!("fixture lacks `# error on line N: MESSAGE`: {first:?}"));
    let (line, message) = rest.split_once(": ").expect("`N: MESSAGE`");
    (line.parse().expect("a line number"), message.to_string())
}

/// Copies the fixture into a sandbox (so a store would land there), then checks `plan` and
/// `run` both refuse it the same way.
fn rejects(fixture: &str) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bad")
        .join(format!("{fixture}.toml"));
    let text = std::fs::read_to_string(&source)
        .unwrap_or_else(|error| panic!("cannot read `{}`: {error}", source.display()));
    let (line, message) = expectation(&text);
    let sandbox = Sandbox::new();
    let path = sandbox.write(&format!("{fixture}.toml"), &text);
    let located = format!("{}:{line}:", path.display());
    for command in ["plan", "run"] {
        let outcome = sandbox
            .peirce(&[command, path.to_str().unwrap()])
            .expect_code(2);
        assert!(
            outcome.stderr.contains(&located),
            "`{command}` does not name `{located}`:\n{outcome}"
        );
        assert!(
            outcome.stderr.contains(&message),
            "`{command}` does not say {message:?}:\n{outcome}"
        );
        assert!(
            !outcome.stderr.contains("panicked"),
            "`{command}` panicked:\n{outcome}"
        );
        assert_eq!(outcome.stdout, "", "`{command}` printed a plan or record");
    }
    let stored = sandbox.store_files();
    assert!(stored.is_empty(), "a rejected workflow stored {stored:?}");
    let scratch = sandbox.store().join("scratch");
    assert!(
        !scratch.exists() || std::fs::read_dir(&scratch).unwrap().next().is_none(),
        "a rejected workflow executed something"
    );
}

#[test]
fn cycle() {
    rejects("cycle");
}

#[test]
fn unknown_kind() {
    rejects("unknown_kind");
}

#[test]
fn unknown_key() {
    rejects("unknown_key");
}

#[test]
fn missing_input() {
    rejects("missing_input");
}

#[test]
fn wrong_type() {
    rejects("wrong_type");
}

#[test]
fn syntax() {
    rejects("syntax");
}

/// Fixtures added later are covered too, without a test of their own.
#[test]
fn every_fixture_is_rejected() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad");
    let mut count = 0;
    for item in std::fs::read_dir(&dir).unwrap() {
        let path = item.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            rejects(&path.file_stem().unwrap().to_string_lossy());
            count += 1;
        }
    }
    assert!(count >= 6, "fixtures went missing from `{}`", dir.display());
}

/// A valid one-node workflow that counts its executions.
fn valid(sandbox: &Sandbox) {
    sandbox.workflow(&format!(
        "[build]\nkind = \"exec\"\ncommand = {}\n",
        toml_string(&format!(
            "{}; echo ok > out/ok.txt",
            sandbox.counter("build")
        ))
    ));
}

#[test]
fn bad_set_flags_are_rejected() {
    let sandbox = Sandbox::new();
    valid(&sandbox);
    for (flag, named) in [
        ("nonode.x=1", "nonode"),
        ("build.comand=\"echo\"", "comand"),
        ("build.env=3", "env"),
        ("build.retries=abc", "retries"),
        ("novalue", "novalue"),
    ] {
        for command in ["plan", "run"] {
            let outcome = sandbox
                .peirce(&[command, "wf.toml", "--set", flag])
                .expect_code(2);
            assert!(
                outcome.stderr.contains(named),
                "`{command} --set {flag}` does not name `{named}`:\n{outcome}"
            );
        }
    }
    assert_eq!(sandbox.count("build"), 0);
    assert!(sandbox.store_files().is_empty());
}

#[test]
fn forcing_an_unknown_node_is_rejected() {
    let sandbox = Sandbox::new();
    valid(&sandbox);
    for command in ["plan", "run"] {
        let outcome = sandbox
            .peirce(&[command, "wf.toml", "--force", "nosuchnode"])
            .expect_code(2);
        assert!(outcome.stderr.contains("nosuchnode"), "{outcome}");
    }
    assert_eq!(sandbox.count("build"), 0);
    assert!(sandbox.store_files().is_empty());
}

#[test]
fn a_missing_workflow_file_is_rejected() {
    let sandbox = Sandbox::new();
    let outcome = sandbox.peirce(&["run", "absent.toml"]).expect_code(2);
    assert!(outcome.stderr.contains("absent.toml"), "{outcome}");
}
