//! How a test finds an external dependency (an S3 server, mergekit, a Python with
//! transformers): one policy for every test of the workspace.
//!
//! `scripts/test` installs and starts every dependency, exports the variables naming them,
//! and sets [`REQUIRE`]: under it a missing dependency fails the test loudly, so CI can never
//! pass by skipping. A bare `cargo test` may lack them: the test then returns early and says
//! on stderr what it skipped and how to run it.

/// Set to `1` by `scripts/test`: every external dependency is required.
pub const REQUIRE: &str = "PEIRCE_REQUIRE_EXTERNAL";

/// The value of `var` (a non-empty path, URL or program), or `None` after saying on stderr
/// that `test` is skipped. Panics instead when [`REQUIRE`] is `1`. `how` tells how to get the
/// dependency.
pub fn external(var: &str, test: &str, how: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if required() => panic!(
            "`{test}` needs {var}, which is not set ({how}); {REQUIRE}=1 makes every external \
             dependency required"
        ),
        _ => {
            // Straight to the process's stderr, not through `eprintln!`, which the test
            // harness captures and hides for a passing test: a skip must always be seen.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr().lock(),
                "skipping `{test}`: {var} is not set ({how})"
            );
            None
        }
    }
}

/// Whether missing dependencies fail ([`REQUIRE`] is `1`).
pub fn required() -> bool {
    std::env::var(REQUIRE).is_ok_and(|value| value == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test, so no other test of this crate sees the variables change.
    #[test]
    fn present_found_missing_skipped_or_fatal() {
        let var = "PEIRCE_TESTING_SELF_CHECK";
        std::env::set_var(var, "/bin/true");
        assert_eq!(external(var, "t", "how").as_deref(), Some("/bin/true"));
        std::env::remove_var(var);
        std::env::remove_var(REQUIRE);
        assert_eq!(external(var, "t", "how"), None);
        std::env::set_var(REQUIRE, "1");
        let fatal = std::panic::catch_unwind(|| external(var, "t", "how"));
        std::env::remove_var(REQUIRE);
        let message = fatal.expect_err("required and missing must fail");
        let text = message
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(text.contains(var) && text.contains("`t`"), "{text}");
    }
}
