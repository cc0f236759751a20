//! The small commands around a workflow, through the real binary: `export` (a node's
//! output as a folder), `dag` (DOT and Mermaid) with `plan --json`'s edges, `--version`
//! with the commit, and shell completions.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{diamond, Sandbox};

fn diamond_sandbox() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.workflow(&diamond(&sandbox, 0.0));
    sandbox
}

#[test]
fn export_writes_a_nodes_files_as_verified_hard_links_or_copies() {
    let sandbox = diamond_sandbox();
    let record = sandbox.run_ok(&[]);
    let listing = sandbox.listing("join");

    let dir = sandbox.path("exported");
    let dir_text = dir.display().to_string();
    let outcome = sandbox.peirce(&["export", "join", &dir_text]).success();
    assert!(
        outcome.stderr.contains("1 hard links to the store"),
        "{outcome}"
    );
    let (_, digest) = &listing["join.txt"];
    let exported = dir.join("join.txt");
    assert_eq!(std::fs::read_to_string(&exported).unwrap(), "55\n110\n");
    // The exported file is the store's blob, not a copy.
    let blob = sandbox.blob_path(digest);
    assert_eq!(
        std::fs::metadata(&exported).unwrap().ino(),
        std::fs::metadata(&blob).unwrap().ino()
    );

    // A non-empty folder is refused; `--copy` gives writable files of their own.
    let again = sandbox.peirce(&["export", "join", &dir_text]);
    assert_ne!(again.code, 0, "{again}");
    assert!(again.stderr.contains("is not empty"), "{again}");
    let copies = sandbox.path("copies");
    sandbox
        .peirce(&["export", "gen", &copies.display().to_string(), "--copy"])
        .success();
    let copied = copies.join("numbers.txt");
    let meta = std::fs::metadata(&copied).unwrap();
    assert_eq!(meta.nlink(), 1);
    assert!(!meta.permissions().readonly());
    assert_eq!(
        std::fs::read_to_string(&copied).unwrap().lines().count(),
        10
    );

    // A corrupt blob is not exported: the read is verified.
    let (_, gen_blob) = &sandbox.listing("gen")["numbers.txt"];
    let path = sandbox.blob_path(gen_blob);
    let mut permissions = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(&path, permissions).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let corrupt = sandbox.peirce(&["export", "gen", &sandbox.path("bad").display().to_string()]);
    assert_ne!(corrupt.code, 0, "{corrupt}");
    assert!(corrupt.stderr.contains("corrupt"), "{corrupt}");

    // `--run` exports from a run record: here the first run's `right`.
    let run = record["id"].as_str().unwrap();
    let from_run = sandbox.path("from-run");
    sandbox
        .peirce(&[
            "export",
            "right",
            &from_run.display().to_string(),
            "--run",
            run,
        ])
        .success();
    assert_eq!(
        std::fs::read_to_string(from_run.join("scaled.txt")).unwrap(),
        "110\n"
    );
}

#[test]
fn dag_draws_dot_and_mermaid_and_plan_lists_edges() {
    let sandbox = diamond_sandbox();
    let dot = sandbox.peirce(&["dag", "wf.toml"]).success().stdout;
    assert!(dot.starts_with("digraph \"diamond\" {"), "{dot}");
    assert!(dot.contains("label=\"join\\nexec\""), "{dot}");
    // gen -> left, gen -> right, left -> join, right -> join: four edges between nodes.
    assert_eq!(dot.matches(" -> n").count(), 4, "{dot}");
    let mermaid = sandbox
        .peirce(&["dag", "wf.toml", "--format", "mermaid"])
        .success()
        .stdout;
    assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
    assert_eq!(mermaid.matches(" -->|").count(), 4, "{mermaid}");
    assert!(mermaid.contains("[\"join<br/>exec\"]"), "{mermaid}");

    let plan = sandbox.plan(&[]);
    let join = common::planned(&plan, "join");
    assert_eq!(
        join["inputs"],
        serde_json::json!({"sum": "left", "scaled": "right"}),
        "{plan:#}"
    );
    assert_eq!(
        common::planned(&plan, "gen")["inputs"],
        serde_json::json!({})
    );
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let sandbox = Sandbox::new();
    let version = sandbox.peirce(&["--version"]).success().stdout;
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string());
    match head {
        Some(commit) => assert_eq!(
            version.trim(),
            format!("peirce {} (commit {commit})", env!("CARGO_PKG_VERSION"))
        ),
        // Built from a tarball: the build says so instead of guessing.
        None => assert!(version.contains("(commit unknown)"), "{version}"),
    }
}

#[test]
fn completions_are_generated_for_each_shell() {
    let sandbox = Sandbox::new();
    for (shell, marker) in [
        ("bash", "_peirce()"),
        ("zsh", "#compdef peirce"),
        ("fish", "complete -c peirce"),
    ] {
        let script = sandbox.peirce(&["completions", shell]).success().stdout;
        assert!(script.contains(marker), "{shell}:\n{script}");
        for command in ["run", "diff", "export", "dag"] {
            assert!(script.contains(command), "{shell} lacks `{command}`");
        }
    }
    let unknown = sandbox.peirce(&["completions", "tcsh"]);
    assert_eq!(unknown.code, 2, "{unknown}");
}
