//! Located errors of workflow files, and the small helpers that build them.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a workflow file, at a 1-based line and column.
///
/// Line 0 means "no position": the file could not be read, or the problem is in a
/// `--set` override, whose text then stands in `file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl SpecError {
    pub fn new(file: impl Into<PathBuf>, line: usize, column: usize, message: String) -> Self {
        SpecError {
            file: file.into(),
            line,
            column,
            message,
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// Every problem found in one workflow file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl SpecErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, SpecError> {
        self.0.iter()
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl From<SpecError> for SpecErrors {
    fn from(error: SpecError) -> Self {
        SpecErrors(vec![error])
    }
}

/// Where a value came from: a position in the file, or a `--set` override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    File { line: usize, column: usize },
    Set(String),
}

/// Turns byte offsets of one file into positions and collects errors against it.
pub(crate) struct Reporter<'a> {
    file: &'a Path,
    text: &'a str,
    line_starts: Vec<usize>,
    errors: Vec<SpecError>,
}

impl<'a> Reporter<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(index, _)| index + 1))
            .collect();
        Reporter {
            file,
            text,
            line_starts,
            errors: Vec::new(),
        }
    }

    /// The 1-based line and column (in characters) of a byte offset.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line_index = match self.line_starts.binary_search(&offset) {
            Ok(index) => index,
            Err(index) => index.saturating_sub(1),
        };
        let start = self.line_starts.get(line_index).copied().unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |prefix| prefix.chars().count());
        (line_index + 1, column + 1)
    }

    /// The origin of a span; a missing span falls back to the file's start.
    pub(crate) fn origin(&self, span: Option<Range<usize>>) -> Origin {
        let (line, column) = span.map_or((1, 1), |span| self.position(span.start));
        Origin::File { line, column }
    }

    pub(crate) fn error(&mut self, origin: &Origin, message: String, hint: Option<String>) {
        let error = match origin {
            Origin::File { line, column } => SpecError::new(self.file, *line, *column, message),
            Origin::Set(text) => SpecError::new(format!("--set {text}"), 0, 0, message),
        };
        self.errors.push(error.with_hint(hint));
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The collected errors, `--set` ones first, then in file order, without duplicates
    /// (a bad `[defaults]` value is found once per node it applies to).
    pub(crate) fn finish(mut self) -> Vec<SpecError> {
        self.errors
            .sort_by_key(|error| (error.file.as_path() == self.file, error.line, error.column));
        self.errors.dedup();
        self.errors
    }
}

/// `did you mean `x`?` when a candidate is close enough to `word`.
pub(crate) fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<String> {
    closest(word, candidates).map(|best| format!("did you mean `{best}`?"))
}

/// Names longer than this (in characters) get no hint and are offered as none: the
/// string distances cost time proportional to the product of the two lengths, so one
/// 70,000-character name would take tens of seconds (docs/architecture.md §9: loading
/// must stay fast on any input).
const HINT_MAX_CHARS: usize = 256;

/// The most distance work (the sum of the two lengths' products over the candidates
/// compared) spent on one hint; candidates past it are not considered.
const HINT_MAX_WORK: usize = 1 << 20;

/// The candidate closest to `word`, if any is plausibly a typo of it.
pub(crate) fn closest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let word_chars = word.chars().count();
    if word_chars > HINT_MAX_CHARS {
        return None;
    }
    let mut work = 0usize;
    let mut best: Option<(&'c str, f64)> = None;
    for candidate in candidates {
        let candidate_chars = candidate.chars().count();
        if candidate == word || candidate_chars > HINT_MAX_CHARS {
            continue;
        }
        work = work.saturating_add(word_chars.max(1) * candidate_chars.max(1));
        if work > HINT_MAX_WORK {
            break;
        }
        let score = strsim::normalized_damerau_levenshtein(word, candidate)
            .max(strsim::jaro_winkler(word, candidate) - 0.2);
        if score >= 0.6 && best.is_none_or(|(_, best_score)| score >= best_score) {
            best = Some((candidate, score));
        }
    }
    best.map(|(candidate, _)| candidate)
}

/// `` `a`, `b`, `c` `` for a hint listing what is accepted.
pub(crate) fn backticked<'c>(names: impl IntoIterator<Item = &'c str>) -> String {
    names
        .into_iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_in_characters() {
        let text = "a = 1\nbé = 2\n\nc";
        let reporter = Reporter::new(Path::new("w.toml"), text);
        assert_eq!(reporter.position(0), (1, 1));
        assert_eq!(reporter.position(4), (1, 5));
        assert_eq!(reporter.position(6), (2, 1));
        // `=` after a two-byte character is the fourth character of line 2.
        assert_eq!(reporter.position(10), (2, 4));
        assert_eq!(reporter.position(text.len()), (4, 2));
        assert_eq!(reporter.position(usize::MAX), (4, 2));
        // An offset inside a multi-byte character does not panic.
        assert_eq!(reporter.position(8).0, 2);
    }

    #[test]
    fn display_with_and_without_position() {
        let error = SpecError::new("w.toml", 3, 7, "Unknown key `lrr`".to_owned())
            .with_hint(Some("did you mean `lr`?".to_owned()));
        assert_eq!(
            error.to_string(),
            "w.toml:3:7: Unknown key `lrr`\n  hint: did you mean `lr`?"
        );
        let error = SpecError::new("--set a.b=1", 0, 0, "Unknown node `a`".to_owned());
        assert_eq!(error.to_string(), "--set a.b=1: Unknown node `a`");
        let errors = SpecErrors(vec![error.clone(), error]);
        assert_eq!(errors.to_string().lines().count(), 2);
    }

    #[test]
    fn hints_pick_close_names_only() {
        assert_eq!(closest("lrr", ["lr", "steps", "weights"]), Some("lr"));
        assert_eq!(closest("trian", ["exec", "train"]), Some("train"));
        assert_eq!(
            closest("comand", ["command", "env", "outputs"]),
            Some("command")
        );
        assert_eq!(closest("zzz", ["exec", "train"]), None);
        assert_eq!(closest("exec", ["exec"]), None);
    }

    #[test]
    fn hints_for_huge_names_are_skipped_quickly() {
        let long = "n".repeat(70_000);
        let typo = format!("{}m", &long[1..]);
        let started = std::time::Instant::now();
        assert_eq!(closest(&typo, [long.as_str(), "short"]), None);
        assert_eq!(closest("shrot", [long.as_str(), "short"]), Some("short"));
        // Many candidates: the work stays bounded.
        let many: Vec<String> = (0..100_000).map(|i| format!("node{i:06}")).collect();
        closest("node0000x1", many.iter().map(String::as_str));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
