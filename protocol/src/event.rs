//! What a worker reports on stdout, one JSON object per line:
//!
//! ```text
//! {"event":"progress","done":3,"total":100,"message":"step 3"}
//! {"event":"metric", ...any fields...}
//! {"event":"message","text":"loaded model"}
//! {"event":"error","class":"bad_input"|"transient"|"failed","message":"..."}
//! ```
//!
//! Other stdout lines and all of stderr are the node's log. Exit status 0 means success;
//! anything else fails the node, classified by the last `error` event.

use std::io::Write;

use serde::{Deserialize, Serialize};

/// One protocol line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Progress on a known amount of work (`total` 0: unknown).
    Progress {
        /// Units done.
        #[serde(default)]
        done: u64,
        /// Units in all.
        #[serde(default)]
        total: u64,
        /// A short status text.
        #[serde(default)]
        message: String,
    },
    /// A metrics record (a training step, an evaluation): any fields.
    Metric(serde_json::Map<String, serde_json::Value>),
    /// A line worth showing to the user.
    Message {
        /// The text.
        text: String,
    },
    /// Why the worker is about to exit with a failure.
    Error(WorkerError),
}

impl Event {
    /// The event on `line`, or `None` for a line that is not a protocol message (it goes to
    /// the node's log).
    pub fn parse(line: &str) -> Option<Event> {
        let trimmed = line.trim();
        if !trimmed.starts_with('{') {
            return None;
        }
        serde_json::from_str(trimmed).ok()
    }

    /// The event as one line of JSON, without the newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("events serialize")
    }

    /// A metric event from a JSON object's fields (anything else is recorded as `value`).
    pub fn metric(fields: serde_json::Value) -> Event {
        Event::Metric(match fields {
            serde_json::Value::Object(map) => map,
            other => serde_json::Map::from_iter([("value".to_string(), other)]),
        })
    }

    /// Writes the event to the worker's stdout and flushes it.
    pub fn emit(&self) {
        let mut stdout = std::io::stdout().lock();
        // A closed stdout means the engine is gone; nothing useful is left to do about it.
        let _ = writeln!(stdout, "{}", self.to_line());
        let _ = stdout.flush();
    }
}

/// Reports progress (worker side).
pub fn progress(done: u64, total: u64, message: &str) {
    Event::Progress {
        done,
        total,
        message: message.to_string(),
    }
    .emit();
}

/// Reports a line for the user (worker side).
pub fn message(text: &str) {
    Event::Message {
        text: text.to_string(),
    }
    .emit();
}

/// Reports a metrics record (worker side).
pub fn metric(fields: serde_json::Value) {
    Event::metric(fields).emit();
}

/// How a failure is classified, which decides whether the engine retries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Bad parameters or input files: reported, never retried.
    BadInput,
    /// Worth retrying (a device busy, memory exhausted).
    Transient,
    /// Anything else: retried only when the node asks for retries.
    #[serde(other)]
    Failed,
}

/// A classified failure of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerError {
    /// Its class.
    pub class: ErrorClass,
    /// What went wrong.
    #[serde(default)]
    pub message: String,
}

impl WorkerError {
    /// Bad parameters or inputs.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::BadInput,
            message: message.into(),
        }
    }

    /// Worth retrying.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Transient,
            message: message.into(),
        }
    }

    /// Any other failure.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Failed,
            message: message.into(),
        }
    }

    /// Reports the error on stdout (worker side), before a failing exit.
    pub fn emit(&self) {
        Event::Error(self.clone()).emit();
    }
}

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WorkerError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_event_round_trips() {
        let events = [
            Event::Progress {
                done: 3,
                total: 10,
                message: "step 3".into(),
            },
            Event::metric(json!({"step": 4, "reward": -0.5, "phase": "train"})),
            Event::Message {
                text: "loaded".into(),
            },
            Event::Error(WorkerError::bad_input("no such model")),
            Event::Error(WorkerError::transient("out of memory")),
            Event::Error(WorkerError::failed("crashed")),
        ];
        for event in events {
            let line = event.to_line();
            assert!(!line.contains('\n'));
            assert_eq!(Event::parse(&line), Some(event.clone()), "{line}");
        }
    }

    #[test]
    fn the_wire_format_is_the_documented_one() {
        assert_eq!(
            Event::Progress {
                done: 3,
                total: 10,
                message: "s".into()
            }
            .to_line(),
            r#"{"event":"progress","done":3,"total":10,"message":"s"}"#
        );
        assert_eq!(
            Event::metric(json!({"loss": 1.5})).to_line(),
            r#"{"event":"metric","loss":1.5}"#
        );
        assert_eq!(
            Event::Error(WorkerError::bad_input("x")).to_line(),
            r#"{"event":"error","class":"bad_input","message":"x"}"#
        );
        // Lines written by hand, as a worker in another language would.
        assert_eq!(
            Event::parse(r#"{"event":"error","class":"bad_input","message":"no such model"}"#),
            Some(Event::Error(WorkerError::bad_input("no such model")))
        );
        assert_eq!(
            Event::parse(r#"{"event":"error","class":"weird","message":"m"}"#),
            Some(Event::Error(WorkerError::failed("m"))),
            "an unknown class is a plain failure"
        );
        assert_eq!(
            Event::parse(r#"{"event":"progress"}"#),
            Some(Event::Progress {
                done: 0,
                total: 0,
                message: String::new()
            })
        );
        let Some(Event::Metric(fields)) = Event::parse(r#"{"event":"metric","loss":1.5}"#) else {
            panic!("a metric");
        };
        assert_eq!(fields.get("loss"), Some(&json!(1.5)));
        assert!(!fields.contains_key("event"));
    }

    #[test]
    fn other_lines_are_log_lines() {
        for line in [
            "plain text",
            "{not json",
            r#"{"event":"unknown"}"#,
            r#"{"no":"event"}"#,
            "",
        ] {
            assert_eq!(Event::parse(line), None, "{line}");
        }
    }
}
