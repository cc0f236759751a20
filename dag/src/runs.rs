//! Run records and workflow refs: the engine's memory of what it did.
//!
//! A run record (`runs/<id>`) lists, for one `peirce run`, every node's key, output and
//! outcome. A workflow ref (`refs/workflow-<name>`) remembers the latest key of every node
//! of a workflow; the planner explains a miss by comparing against that key's record, and
//! `gc` keeps what the refs (and pinned runs) reach.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use peirce_store::{redact_url, ActionKey, BlobDigest, Store, TransferSnapshot, TreeDigest};
use serde::{Deserialize, Serialize};

/// How one node ended in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Served from the action cache.
    Cached,
    /// Executed and published.
    Ran,
    /// Failed (after any retries).
    Failed,
    /// Not attempted because an input failed.
    Skipped,
    /// Stopped by the user.
    Cancelled,
}

/// One node's line in a run record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRun {
    /// Its kind.
    pub kind: String,
    /// How it ended.
    pub status: NodeStatus,
    /// Its action key, when it was known.
    pub key: Option<ActionKey>,
    /// Its output tree, when it has one.
    pub output: Option<TreeDigest>,
    /// Wall time spent on it in this run, in seconds, waiting for resources included.
    pub duration_s: f64,
    /// Of `duration_s`, the seconds it waited for its cpus and GPUs before it started.
    #[serde(default)]
    pub queued_s: f64,
    /// Attempts made (0 when cached).
    pub attempts: u32,
    /// The error, when it failed.
    pub error: Option<String>,
    /// The blob of its captured stdout and stderr, when it executed and printed something:
    /// for a failed node, the only place its log is kept (`peirce log NODE` reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<BlobDigest>,
    /// The cluster jobs (Slurm job ids) its attempts ran as, in order; empty when it ran on
    /// the runner's machine (docs/architecture.md §21).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<String>,
}

impl NodeRun {
    /// Seconds it ran: `duration_s` less the wait for its cpus and GPUs.
    pub fn running_s(&self) -> f64 {
        (self.duration_s - self.queued_s).max(0.0)
    }
}

/// How a whole run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Still going (or the runner died).
    Running,
    /// Every node is cached or ran.
    Succeeded,
    /// Some node failed.
    Failed,
    /// Stopped by the user.
    Cancelled,
}

/// One `peirce run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Sortable id: UTC time and a random suffix.
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The workflow file.
    pub workflow_path: String,
    /// Start, seconds since the Unix epoch.
    pub started_at: f64,
    /// End, when finished.
    pub finished_at: Option<f64>,
    /// Outcome.
    pub status: RunStatus,
    /// Kept by `gc` regardless of age.
    #[serde(default)]
    pub pinned: bool,
    /// Per node, by name.
    pub nodes: BTreeMap<String, NodeRun>,
    /// What the run exchanged with its remote, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteActivity>,
    /// `blake3:<hex>` of the workflow file's text (absent in records of older peirces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_digest: Option<String>,
    /// The `--set` overrides it ran with, as typed.
    #[serde(default)]
    pub overrides: Vec<String>,
    /// An experiment: a run with overrides that left the workflow's latest results as
    /// they were (no `--as-latest`); gc keeps its results while it is recent or pinned
    /// (docs/architecture.md §17).
    #[serde(default)]
    pub experiment: bool,
}

/// A run's traffic with its remote (`--remote`): never credentials, only the redacted URL.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoteActivity {
    /// The remote, as `Store::url` shows it.
    pub url: String,
    /// Requests, bytes and blobs moved during the run.
    pub transfers: TransferSnapshot,
    /// Nodes whose fresh results were pushed.
    pub pushed: Vec<String>,
    /// Nodes whose fresh results could not be pushed, with the error (`peirce push` retries).
    pub push_failures: BTreeMap<String, String>,
}

impl RunRecord {
    /// Whether `gc` keeps this run's results: pinned, or an experiment started less than
    /// `keep_experiments` before `now` (seconds since the epoch).
    pub fn kept_by_gc(&self, now: f64, keep_experiments: std::time::Duration) -> bool {
        self.pinned || (self.experiment && now - self.started_at < keep_experiments.as_secs_f64())
    }

    /// The run whose id is `wanted`, or ends or starts with it when exactly one run's
    /// does (`peirce diff 3fa2 9c1e` names runs by their random suffix). The error lists
    /// what matched, or says none did.
    pub async fn find(store: &Store, wanted: &str) -> Result<RunRecord, String> {
        let records = Self::all(store).await.map_err(|error| error.to_string())?;
        if let Some(exact) = records.iter().find(|record| record.id == wanted) {
            return Ok(exact.clone());
        }
        let mut matching: Vec<RunRecord> = records
            .into_iter()
            .filter(|record| {
                !wanted.is_empty() && (record.id.ends_with(wanted) || record.id.starts_with(wanted))
            })
            .collect();
        match matching.len() {
            1 => Ok(matching.remove(0)),
            0 => Err(format!(
                "No run `{wanted}` in the store at `{}` (`peirce runs` lists them)",
                store.url()
            )),
            _ => Err(format!(
                "`{wanted}` names {} runs ({}); give more of the id",
                matching.len(),
                matching
                    .iter()
                    .map(|record| record.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// Removes anything credential-like from the record's free text: node errors (a store
    /// error quotes request URLs, with the endpoint's user info and query), push failures
    /// and the remote's URL, through `redact_url` (docs/architecture.md §10). The engine
    /// calls it before every write; readers call it again, for records written before it.
    pub fn redact(&mut self) {
        for run in self.nodes.values_mut() {
            if let Some(error) = &mut run.error {
                *error = redact_url(error);
            }
        }
        if let Some(remote) = &mut self.remote {
            remote.url = redact_url(&remote.url);
            for error in remote.push_failures.values_mut() {
                *error = redact_url(error);
            }
        }
    }

    /// Where the record lives in the store.
    pub fn location(id: &str) -> String {
        format!("runs/{id}")
    }

    /// Every run record in the store, newest first by start time (ids alone do not order
    /// runs started in one second); an unreadable record is skipped with a warning.
    pub async fn all(store: &Store) -> peirce_store::Result<Vec<RunRecord>> {
        let mut records = Vec::new();
        for (id, _, _) in store.list_prefix("runs").await? {
            match store.get_document::<RunRecord>(&Self::location(&id)).await {
                Ok(Some(mut record)) => {
                    record.redact();
                    records.push(record);
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "skipping run record `{id}`"),
            }
        }
        records.sort_by(|a, b| {
            b.started_at
                .total_cmp(&a.started_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        Ok(records)
    }
}

/// The latest key of every node of one workflow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRef {
    /// The workflow's name.
    pub workflow: String,
    /// The workflow file last run.
    pub workflow_path: String,
    /// The latest run's id.
    pub latest_run: String,
    /// Node name to its latest key and output.
    pub nodes: BTreeMap<String, NodeRef>,
}

/// A node's latest key and output.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NodeRef {
    /// The key.
    pub key: ActionKey,
    /// The output it had.
    pub output: TreeDigest,
}

/// The prefix of every workflow ref's file name under `refs/`.
const REF_PREFIX: &str = "workflow-";

/// The file name of workflow `name`'s ref, in one place: the name itself when it is plain
/// (ASCII letters, digits, `_`, `-` and inner `.`, no `..`, at most 100 bytes), so refs stay
/// readable; otherwise `h` and 32 hex digits of blake3(name), a form no plain name takes.
/// A name with `/`, `..`, `~`, `%`, `#` or anything an object store may escape can then
/// neither leave `refs/` nor fail to read back what was written (docs/architecture.md §8).
pub fn ref_file_name(name: &str) -> String {
    let plain = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !looks_hashed(name);
    if plain {
        format!("{REF_PREFIX}{name}")
    } else {
        let digest = blake3::hash(name.as_bytes()).to_hex();
        format!("{REF_PREFIX}h{}", &digest[..32])
    }
}

/// Whether `name` has the shape of a hashed ref name (`h` and 32 lowercase hex digits).
fn looks_hashed(name: &str) -> bool {
    name.len() == 33
        && name.starts_with('h')
        && name[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl WorkflowRef {
    /// Where the ref of workflow `name` lives.
    pub fn location(name: &str) -> String {
        format!("refs/{}", ref_file_name(name))
    }

    /// Loads the ref of workflow `name` (absent or unreadable: none).
    pub async fn load(store: &Store, name: &str) -> Option<WorkflowRef> {
        store
            .get_document(&Self::location(name))
            .await
            .ok()
            .flatten()
    }

    /// The locations of every workflow ref in the store (whatever the names they hold).
    pub async fn locations(store: &Store) -> peirce_store::Result<Vec<String>> {
        Ok(store
            .list_prefix("refs")
            .await?
            .into_iter()
            .filter(|(file, _, _)| file.starts_with(REF_PREFIX))
            .map(|(file, _, _)| format!("refs/{file}"))
            .collect())
    }

    /// All workflow refs in the store (unreadable ones skipped: for display).
    pub async fn all(store: &Store) -> peirce_store::Result<Vec<WorkflowRef>> {
        let mut refs = Vec::new();
        for location in Self::locations(store).await? {
            if let Ok(Some(found)) = store.get_document::<WorkflowRef>(&location).await {
                refs.push(found);
            }
        }
        Ok(refs)
    }
}

/// Seconds since the Unix epoch.
pub fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (UTC, no time-zone database needed).
pub fn format_utc(seconds: f64) -> String {
    let (date, time) = civil(seconds);
    format!(
        "{}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        date.0, date.1, date.2, time.0, time.1, time.2
    )
}

/// A new run id: `YYYYMMDDTHHMMSSZ-xxxx`, sortable by start time.
pub fn new_run_id() -> String {
    let (date, time) = civil(now_seconds());
    format!(
        "{}{:02}{:02}T{:02}{:02}{:02}Z-{:04x}",
        date.0,
        date.1,
        date.2,
        time.0,
        time.1,
        time.2,
        rand::random::<u16>()
    )
}

fn civil(seconds: f64) -> ((i64, u32, u32), (u32, u32, u32)) {
    let total = seconds.max(0.0) as i64;
    let days = total.div_euclid(86_400);
    let rest = total.rem_euclid(86_400) as u32;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (
        (year, month, day),
        (rest / 3600, rest % 3600 / 60, rest % 60),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names_stay_inside_refs_and_never_collide() {
        assert_eq!(
            ref_file_name("meta-align_2.tiny"),
            "workflow-meta-align_2.tiny"
        );
        let odd = [
            "team/exp1",
            "..",
            "../x",
            "a..b",
            "exp~1",
            "a[1]",
            "50%",
            "x#y",
            "",
            ".hidden",
            "é",
            "a b",
            "hffffffffffffffffffffffffffffffff",
        ];
        let mut seen = std::collections::BTreeSet::new();
        for name in odd {
            let file = ref_file_name(name);
            assert!(file.starts_with("workflow-h") && file.len() == "workflow-h".len() + 32);
            assert!(seen.insert(file), "{name}");
        }
        // A plain name never takes the hashed form's shape.
        assert!(looks_hashed(
            &ref_file_name("team/exp1")["workflow-".len()..]
        ));
        assert!(!looks_hashed("hello"));
    }

    #[test]
    fn formats_utc_dates() {
        assert_eq!(format_utc(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400.0), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_795_316_596.0), "2026-11-22T03:03:16Z");
    }

    #[test]
    fn records_lose_credentials_in_errors_and_urls() {
        let mut record = RunRecord {
            id: "r".into(),
            workflow: "w".into(),
            workflow_path: "wf.toml".into(),
            started_at: 0.0,
            finished_at: None,
            status: RunStatus::Failed,
            pinned: false,
            nodes: BTreeMap::from([(
                "a".to_string(),
                NodeRun {
                    kind: "exec".into(),
                    status: NodeStatus::Failed,
                    key: None,
                    output: None,
                    duration_s: 0.0,
                    queued_s: 0.0,
                    attempts: 1,
                    error: Some(
                        "Error performing GET http://minio:NODESECRET@127.0.0.1:1/b".into(),
                    ),
                    log: None,
                    jobs: Vec::new(),
                },
            )]),
            remote: Some(RemoteActivity {
                url: "s3://b/p?endpoint=http://u:URLSECRET@h".into(),
                push_failures: BTreeMap::from([(
                    "a".to_string(),
                    "PUT http://127.0.0.1:1/?token=PUSHSECRET/b".to_string(),
                )]),
                ..RemoteActivity::default()
            }),
            workflow_digest: None,
            overrides: Vec::new(),
            experiment: false,
        };
        record.redact();
        let text = serde_json::to_string(&record).unwrap();
        for secret in ["NODESECRET", "URLSECRET", "PUSHSECRET"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("http://***@127.0.0.1:1/b"), "{text}");
    }

    #[test]
    fn run_ids_sort_by_time() {
        let id = new_run_id();
        assert_eq!(id.len(), "20261122T020316Z-abcd".len());
        assert!(id.starts_with("20"));
    }
}
