//! The README's tour runs as written from the repository's root: its commands are read from
//! README.md itself (the `sh` block under "A tour"), run in order in a copy of the
//! repository's `workflows/` folder with `scripts/peirce` standing for the binary under test,
//! and each must succeed. Where the README shows a command's output (comment lines starting
//! `#   ` under it), those lines must be in what the command printed.

mod common;

use std::path::Path;

use common::Sandbox;

/// One command of the tour and the output lines the README shows for it.
#[derive(Debug)]
struct Step {
    line: String,
    args: Vec<String>,
    shown: Vec<String>,
}

/// The tour's commands, from the first `sh` block after the heading `## A tour`.
fn tour(readme: &str) -> Vec<Step> {
    let section = readme
        .split_once("\n## A tour\n")
        .expect("README.md has a section `## A tour`")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("the tour has an sh block")
        .1
        .split_once("\n```")
        .expect("the tour's sh block ends")
        .0;
    let mut steps: Vec<Step> = Vec::new();
    for line in block.lines() {
        if let Some(shown) = line.strip_prefix("#   ") {
            steps
                .last_mut()
                .expect("output lines follow a command")
                .shown
                .push(normalize(shown));
            continue;
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let command = line.split(" #").next().unwrap_or_default().trim();
        let mut words = command.split_whitespace();
        assert_eq!(
            words.next(),
            Some("scripts/peirce"),
            "a tour command that is not `scripts/peirce ...`: {line}"
        );
        assert!(
            !command.contains(['"', '\'', '|', '>', '$', '`']),
            "the tour test runs commands without a shell: {line}"
        );
        steps.push(Step {
            line: line.to_string(),
            args: words.map(str::to_string).collect(),
            shown: Vec::new(),
        });
    }
    steps
}

/// Runs of spaces as one, ends trimmed.
fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Copies the folder `from` into `to`, leaving out stores.
fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        if item.file_name() == ".peirce" {
            continue;
        }
        let target = to.join(item.file_name());
        if item.file_type().unwrap().is_dir() {
            copy_folder(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), &target).unwrap();
        }
    }
}

#[test]
fn the_readme_tour_runs_as_written_from_the_repository_root() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let steps = tour(&readme);
    assert!(
        steps.len() >= 8,
        "the tour has too few commands: {steps:#?}"
    );
    // The sandbox stands for the repository's root: its workflows, no store yet.
    let sandbox = Sandbox::new();
    copy_folder(&root.join("workflows"), &sandbox.path("workflows"));
    for (index, step) in steps.iter().enumerate() {
        let args: Vec<&str> = step.args.iter().map(String::as_str).collect();
        let outcome = sandbox.peirce(&args);
        assert_eq!(
            outcome.code,
            0,
            "tour command {} failed: {}\n{outcome}",
            index + 1,
            step.line
        );
        let printed: Vec<String> = outcome.stdout.lines().map(normalize).collect();
        for shown in &step.shown {
            assert!(
                printed.contains(shown),
                "`{}` did not print the README's line `{shown}`:\n{outcome}",
                step.line
            );
        }
        // The second run of the workflow executes nothing, as the tour says.
        if index == 1 {
            assert!(
                outcome.stderr.contains("0 ran, 4 cached"),
                "the second run executed something:\n{outcome}"
            );
        }
    }
    // Every command used the one store in the root; none was made beside the workflow.
    assert!(sandbox.store().join("schema").is_file());
    assert!(!sandbox.path("workflows/.peirce").exists());
}

#[test]
fn the_tour_parser_reads_commands_and_shown_lines() {
    let readme = "x\n## A tour\n\ntext\n```sh\nscripts/peirce run a.toml   # runs\n\
                  scripts/peirce plan a.toml\n#   cached  words    4e08\n#   run     top  why\n\
                  # a comment\nscripts/peirce runs\n```\n```sh\nscripts/peirce other\n```\n";
    let steps = tour(readme);
    let args: Vec<Vec<String>> = steps.iter().map(|step| step.args.clone()).collect();
    assert_eq!(
        args,
        [vec!["run", "a.toml"], vec!["plan", "a.toml"], vec!["runs"]]
    );
    assert_eq!(steps[1].shown, ["cached words 4e08", "run top why"]);
}
