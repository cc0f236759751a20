//! Showing a run as it happens: progress bars on a terminal, plain lines otherwise.
//!
//! On a terminal the run has a bar of its own (nodes done of the total, elapsed time, what is
//! running), and each running node a line: a spinner with its last message, or a bar with
//! done/total, rate and time left once the node reports progress with a total (worker
//! `progress` events, docs/architecture.md §7). Otherwise every line printed for a node
//! carries the run's progress (`[3/8 12.4s]`), and a node reporting progress prints a line at
//! most once a second with done/total and rate.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use peirce_dag::engine::{EngineEvent, Reason};
use peirce_dag::kind::NodeEvent;
use peirce_dag::runs::{NodeRun, NodeStatus};

/// How often plain output may print a node's progress.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// A node's progress as plain output shows it.
struct Reported {
    /// When the node started reporting progress with a total: the rate counts from here.
    since: Instant,
    /// What it had done then.
    done_at_start: u64,
    /// When a line was last printed.
    printed: Option<Instant>,
}

/// Consumes engine events and draws them.
pub struct Display {
    multi: Option<MultiProgress>,
    /// The run's own bar (terminal only).
    run_bar: Option<ProgressBar>,
    bars: HashMap<String, ProgressBar>,
    /// Nodes with a determinate bar (they reported a total).
    determinate: HashSet<String>,
    reported: HashMap<String, Reported>,
    /// Nodes finished (ran, cached, failed, skipped or cancelled), and how many in all.
    finished: HashSet<String>,
    total: usize,
    started: Instant,
    quiet: bool,
}

fn reasons_text(reasons: &[Reason]) -> String {
    reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// `[3/8 12.4s]`: nodes finished of the run's total, and the time since it started.
pub fn run_progress_text(done: usize, total: usize, elapsed: Duration) -> String {
    format!("[{done}/{total} {:.1}s]", elapsed.as_secs_f64())
}

/// `[30/100 30%, 12.5/s, 5.6s left] message`: a node's reported progress and its rate since
/// it started reporting (`rate` per second; none when unknown).
pub fn node_progress_text(done: u64, total: u64, rate: Option<f64>, message: &str) -> String {
    let mut text = format!("[{done}/{total}");
    if let Some(percent) = (done.min(total) * 100).checked_div(total) {
        text.push_str(&format!(" {percent}%"));
    }
    if let Some(rate) = rate.filter(|rate| rate.is_finite() && *rate > 0.0) {
        text.push_str(&format!(", {}/s", significant(rate)));
        if total > done {
            text.push_str(&format!(", {:.0}s left", (total - done) as f64 / rate));
        }
    }
    text.push(']');
    if !message.is_empty() {
        text.push(' ');
        text.push_str(message);
    }
    text
}

/// A rate with three significant digits at most: `1234`, `12.5`, `0.123`.
fn significant(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else if value >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

impl Display {
    /// Bars when stderr is a terminal (and not `quiet`), lines otherwise.
    pub fn new(quiet: bool) -> Self {
        let multi = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
        Self::with(multi, quiet)
    }

    fn with(multi: Option<MultiProgress>, quiet: bool) -> Self {
        Display {
            multi,
            run_bar: None,
            bars: HashMap::new(),
            determinate: HashSet::new(),
            reported: HashMap::new(),
            finished: HashSet::new(),
            total: 0,
            started: Instant::now(),
            quiet,
        }
    }

    /// Prints one line, redacted: node errors may quote a store's request URLs
    /// (docs/architecture.md §10).
    fn line(&self, text: String) {
        if self.quiet {
            return;
        }
        let text = peirce_store::redact_url(&text);
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    /// A line about a node; plain output prefixes the run's progress.
    fn node_line(&self, text: String) {
        if self.multi.is_some() {
            self.line(text);
        } else {
            let progress =
                run_progress_text(self.finished.len(), self.total, self.started.elapsed());
            self.line(format!("{progress}{text}"));
        }
    }

    fn bar(&mut self, node: &str) -> Option<&ProgressBar> {
        let multi = self.multi.as_ref()?;
        if !self.bars.contains_key(node) {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:20} {elapsed:>5} {wide_msg}")
                    .expect("valid template"),
            );
            bar.set_prefix(node.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            self.bars.insert(node.to_string(), bar);
        }
        self.bars.get(node)
    }

    /// A node reported progress on a known amount of work: its line becomes a bar.
    fn determinate(&mut self, node: &str, done: u64, total: u64, message: String) {
        if self.multi.is_none() {
            self.plain_progress(node, done, total, &message);
            return;
        }
        let first = self.determinate.insert(node.to_string());
        let Some(bar) = self.bar(node) else { return };
        if first {
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix:20} {elapsed:>5} [{bar:25}] {pos}/{len} {per_sec} eta {eta} {wide_msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            // The rate counts from here, not from the node's start.
            bar.reset_elapsed();
            bar.reset_eta();
        }
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(message);
    }

    fn plain_progress(&mut self, node: &str, done: u64, total: u64, message: &str) {
        let now = Instant::now();
        let reported = self.reported.entry(node.to_string()).or_insert(Reported {
            since: now,
            done_at_start: done,
            printed: None,
        });
        let due = reported
            .printed
            .is_none_or(|printed| now - printed >= PLAIN_PROGRESS_EVERY);
        if !(due || done >= total) {
            return;
        }
        reported.printed = Some(now);
        let seconds = (now - reported.since).as_secs_f64();
        let rate =
            (seconds > 0.0).then(|| done.saturating_sub(reported.done_at_start) as f64 / seconds);
        let text = node_progress_text(done, total, rate, message);
        self.node_line(format!("  {node:20} {text}"));
    }

    fn finish_bar(&mut self, node: &str) {
        self.determinate.remove(node);
        self.reported.remove(node);
        if let Some(bar) = self.bars.remove(node) {
            bar.finish_and_clear();
        }
    }

    /// Counts a node as finished and updates the run's bar.
    fn count_finished(&mut self, node: &str) {
        self.finished.insert(node.to_string());
        if let Some(bar) = &self.run_bar {
            bar.set_position(self.finished.len().min(self.total) as u64);
            bar.set_message(format!("{} running", self.bars.len()));
        }
    }

    /// Clears the run's bar once the run has ended (the summary line follows).
    pub fn finish(&mut self) {
        if let Some(bar) = self.run_bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Draws one event.
    pub fn handle(&mut self, event: EngineEvent) {
        match event {
            EngineEvent::RunStarted { run, total } => {
                self.total = total;
                self.started = Instant::now();
                self.line(format!("run {run}: {total} nodes"));
                if let Some(multi) = &self.multi {
                    let bar = multi.insert(0, ProgressBar::new(total as u64));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "run {prefix} [{bar:30}] {pos}/{len} nodes  {elapsed_precise}  {wide_msg}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(run);
                    bar.enable_steady_tick(Duration::from_millis(500));
                    self.run_bar = Some(bar);
                }
            }
            EngineEvent::Cached {
                node,
                output,
                by_peer,
            } => {
                let how = if by_peer {
                    "cached (computed by a concurrent runner)"
                } else {
                    "cached"
                };
                self.count_finished(&node);
                self.node_line(format!("  {node:20} {how}  {}", output.short()));
            }
            EngineEvent::Started {
                node,
                attempt,
                reasons,
            } => {
                let retry = if attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                self.node_line(format!(
                    "  {node:20} running{retry}: {}",
                    reasons_text(&reasons)
                ));
                if let Some(bar) = self.bar(&node) {
                    bar.set_message("starting");
                }
                let running = self.bars.len();
                if let Some(bar) = &self.run_bar {
                    bar.set_message(format!("{running} running"));
                }
            }
            EngineEvent::Progress { node, event } => match event {
                NodeEvent::Progress {
                    done,
                    total,
                    message,
                } if total > 0 => self.determinate(&node, done, total, message),
                NodeEvent::Progress { message, .. } => {
                    if let Some(bar) = self.bar(&node) {
                        bar.set_message(message);
                    }
                }
                NodeEvent::Message(text) => self.node_line(format!("  {node:20} {text}")),
                NodeEvent::Metric(metric) => {
                    if let Some(bar) = self.bar(&node) {
                        bar.set_message(metric.to_string());
                    }
                }
                // Its executor says so in a message of its own.
                NodeEvent::Job(_) => {}
            },
            EngineEvent::Waiting { node, holder } => {
                self.node_line(format!("  {node:20} waiting for another runner ({holder})"));
            }
            EngineEvent::Retrying {
                node,
                attempt,
                delay,
                error,
            } => self.node_line(format!(
                "  {node:20} attempt {attempt} failed: {error}; retrying in {:.1}s",
                delay.as_secs_f64()
            )),
            EngineEvent::Finished { node, run } => {
                self.finish_bar(&node);
                self.count_finished(&node);
                self.node_line(finished_line(&node, &run));
            }
        }
    }
}

fn finished_line(node: &str, run: &NodeRun) -> String {
    match run.status {
        NodeStatus::Ran => {
            // The time it ran; the wait for its cpus and GPUs is shown apart.
            let queued = if run.queued_s >= 0.5 {
                format!(" (after {:.1}s waiting for resources)", run.queued_s)
            } else {
                String::new()
            };
            format!(
                "  {node:20} done in {:.2}s{queued}  {}",
                run.running_s(),
                run.output.map(|o| o.short()).unwrap_or_default()
            )
        }
        NodeStatus::Failed => format!(
            "  {node:20} FAILED: {}",
            run.error.clone().unwrap_or_default()
        ),
        NodeStatus::Skipped => format!(
            "  {node:20} skipped: {}",
            run.error.clone().unwrap_or_default()
        ),
        NodeStatus::Cancelled => format!("  {node:20} cancelled"),
        NodeStatus::Cached => format!("  {node:20} cached"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_texts() {
        assert_eq!(
            run_progress_text(3, 8, Duration::from_millis(12_340)),
            "[3/8 12.3s]"
        );
        assert_eq!(
            node_progress_text(30, 100, Some(12.5), "loss 0.3"),
            "[30/100 30%, 12.5/s, 6s left] loss 0.3"
        );
        assert_eq!(
            node_progress_text(4, 4, Some(2.0), ""),
            "[4/4 100%, 2.00/s]"
        );
        assert_eq!(node_progress_text(1, 3, None, "x"), "[1/3 33%] x");
        assert_eq!(node_progress_text(1, 3, Some(0.0), "x"), "[1/3 33%] x");
    }

    fn finished(status: NodeStatus) -> NodeRun {
        NodeRun {
            kind: "exec".into(),
            status,
            key: None,
            output: None,
            duration_s: 1.0,
            queued_s: 0.0,
            attempts: 1,
            error: None,
            log: None,
            jobs: Vec::new(),
        }
    }

    #[test]
    fn bars_follow_the_run_and_nodes_that_report_a_total() {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
        let mut display = Display::with(Some(multi), false);
        display.handle(EngineEvent::RunStarted {
            run: "r".into(),
            total: 3,
        });
        display.handle(EngineEvent::Started {
            node: "train".into(),
            attempt: 1,
            reasons: Vec::new(),
        });
        let progress = |done, total| EngineEvent::Progress {
            node: "train".into(),
            event: NodeEvent::Progress {
                done,
                total,
                message: "step".into(),
            },
        };
        // A spinner until the node reports a total, then a bar.
        display.handle(progress(0, 0));
        assert_eq!(display.bars["train"].length(), None);
        display.handle(progress(3, 10));
        assert_eq!(display.bars["train"].length(), Some(10));
        assert_eq!(display.bars["train"].position(), 3);
        display.handle(progress(7, 10));
        assert_eq!(display.bars["train"].position(), 7);
        let run_bar = display.run_bar.clone().expect("a run bar");
        assert_eq!((run_bar.position(), run_bar.length()), (0, Some(3)));
        display.handle(EngineEvent::Finished {
            node: "train".into(),
            run: finished(NodeStatus::Ran),
        });
        display.handle(EngineEvent::Finished {
            node: "eval".into(),
            run: finished(NodeStatus::Failed),
        });
        // The same node finishing again (recomputed) is not counted twice.
        display.handle(EngineEvent::Finished {
            node: "eval".into(),
            run: finished(NodeStatus::Ran),
        });
        assert_eq!(run_bar.position(), 2);
        assert!(display.bars.is_empty());
        display.finish();
        assert!(run_bar.is_finished());
    }
}
