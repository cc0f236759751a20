//! Showing a run as it happens: progress bars on a terminal, plain lines otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use peirce_dag::engine::{EngineEvent, Reason};
use peirce_dag::kind::NodeEvent;
use peirce_dag::runs::{NodeRun, NodeStatus};

/// Consumes engine events and draws them.
pub struct Display {
    multi: Option<MultiProgress>,
    bars: HashMap<String, ProgressBar>,
    quiet: bool,
}

fn reasons_text(reasons: &[Reason]) -> String {
    reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Display {
    /// Bars when stderr is a terminal (and not `quiet`), lines otherwise.
    pub fn new(quiet: bool) -> Self {
        let multi = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
        Display {
            multi,
            bars: HashMap::new(),
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

    fn finish_bar(&mut self, node: &str) {
        if let Some(bar) = self.bars.remove(node) {
            bar.finish_and_clear();
        }
    }

    /// Draws one event.
    pub fn handle(&mut self, event: EngineEvent) {
        match event {
            EngineEvent::RunStarted { run, total } => {
                self.line(format!("run {run}: {total} nodes"))
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
                self.line(format!("  {node:20} {how}  {}", output.short()));
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
                self.line(format!(
                    "  {node:20} running{retry}: {}",
                    reasons_text(&reasons)
                ));
                if let Some(bar) = self.bar(&node) {
                    bar.set_message("starting");
                }
            }
            EngineEvent::Progress { node, event } => match event {
                NodeEvent::Progress {
                    done,
                    total,
                    message,
                } => {
                    if let Some(bar) = self.bar(&node) {
                        if total > 0 {
                            bar.set_message(format!("[{done}/{total}] {message}"));
                        } else {
                            bar.set_message(message);
                        }
                    }
                }
                NodeEvent::Message(text) => self.line(format!("  {node:20} {text}")),
                NodeEvent::Metric(metric) => {
                    if let Some(bar) = self.bar(&node) {
                        bar.set_message(metric.to_string());
                    }
                }
            },
            EngineEvent::Waiting { node, holder } => {
                self.line(format!("  {node:20} waiting for another runner ({holder})"));
            }
            EngineEvent::Retrying {
                node,
                attempt,
                delay,
                error,
            } => self.line(format!(
                "  {node:20} attempt {attempt} failed: {error}; retrying in {:.1}s",
                delay.as_secs_f64()
            )),
            EngineEvent::Finished { node, run } => {
                self.finish_bar(&node);
                self.line(finished_line(&node, &run));
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
