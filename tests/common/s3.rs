//! S3 helpers of the integration tests: the shared test server (`PEIRCE_TEST_S3_ENDPOINT`,
//! started by scripts/test), a private moto server for tests that kill it
//! (`PEIRCE_TEST_MOTO`), buckets, and plain HTTP requests that reach objects behind peirce's
//! back (the servers take unsigned requests).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The shared S3 test server, or `None` after saying why the test is skipped (see
/// `peirce_testing::external`).
pub fn endpoint(test: &str) -> Option<String> {
    peirce_testing::external(
        "PEIRCE_TEST_S3_ENDPOINT",
        test,
        "scripts/test starts a moto S3 server and sets it",
    )
}

/// A bucket name no other test uses.
pub fn unique_bucket(tag: &str) -> String {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{tag}-{}-{}-{nanos:x}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh bucket on `endpoint`, and the `--remote` URL of prefix `team` in it.
pub fn fresh_remote(endpoint: &str, tag: &str) -> (String, String) {
    let bucket = unique_bucket(tag);
    let (status, body) = request(endpoint, "PUT", &format!("/{bucket}"), &[]);
    assert_eq!(status, 200, "creating bucket `{bucket}`: {body}");
    let url = format!("s3://{bucket}/team?endpoint={endpoint}&allow_http=true");
    (bucket, url)
}

/// One plain HTTP/1.1 request; returns the status and the body as text (lossy).
pub fn request(endpoint: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let (status, bytes) = request_bytes(endpoint, method, path, body);
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// [`request`], with the body as bytes.
pub fn request_bytes(endpoint: &str, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let address = endpoint
        .strip_prefix("http://")
        .expect("a plain-HTTP test endpoint")
        .trim_end_matches('/');
    let mut stream = TcpStream::connect(address)
        .unwrap_or_else(|error| panic!("connecting to {address}: {error}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    let mut payload = response[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = dechunk(&payload);
    }
    (status, payload)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

/// The object key (under the `team` prefix) of a blob.
pub fn blob_key(digest: &str) -> String {
    let hex = digest.strip_prefix("blake3:").expect("a blake3 digest");
    format!("team/cas/{}/{hex}", &hex[..2])
}

/// The object key (under the `team` prefix) of an action record.
pub fn record_key(key: &str) -> String {
    let hex = key.strip_prefix("blake3:").expect("a blake3 key");
    format!("team/ac/{hex}")
}

/// A signed client of `bucket` (the servers refuse anonymous object requests).
fn client(endpoint: &str, bucket: &str) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .with_virtual_hosted_style_request(false)
        .build()
        .expect("an S3 client")
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Whether `bucket` holds `key`, and its bytes.
pub fn get_object(endpoint: &str, bucket: &str, key: &str) -> Option<Vec<u8>> {
    use object_store::ObjectStore;
    let client = client(endpoint, bucket);
    block_on(async {
        match client.get(&key.into()).await {
            Ok(result) => Some(result.bytes().await.unwrap().to_vec()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(error) => panic!("GET {bucket}/{key}: {error}"),
        }
    })
}

/// Replaces an object behind peirce's back.
pub fn put_object(endpoint: &str, bucket: &str, key: &str, bytes: &[u8]) {
    use object_store::ObjectStore;
    let client = client(endpoint, bucket);
    block_on(client.put(&key.into(), bytes.to_vec().into()))
        .unwrap_or_else(|error| panic!("PUT {bucket}/{key}: {error}"));
}

/// Keys in `bucket` under `prefix` (a folder, without the trailing slash).
pub fn list_keys(endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    let client = client(endpoint, bucket);
    let prefix = object_store::path::Path::from(prefix);
    let metas: Vec<object_store::ObjectMeta> = block_on(client.list(Some(&prefix)).try_collect())
        .unwrap_or_else(|error| panic!("listing {bucket}: {error}"));
    let mut keys: Vec<String> = metas
        .into_iter()
        .map(|meta| meta.location.to_string())
        .collect();
    keys.sort();
    keys
}

/// A moto server of the test's own, on a free loopback port, recording every request so
/// that a restarted server can replay them (moto keeps objects in memory only).
pub struct Moto {
    child: Option<Child>,
    pub port: u16,
    pub recording: PathBuf,
    log: PathBuf,
}

/// The `moto_server` program (`PEIRCE_TEST_MOTO`), or `None` after saying why the test skips.
pub fn moto_program(test: &str) -> Option<PathBuf> {
    peirce_testing::external(
        "PEIRCE_TEST_MOTO",
        test,
        "scripts/test installs moto and points it at moto_server",
    )
    .map(PathBuf::from)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Moto {
    /// Starts a server that records requests into `dir/recording.jsonl`.
    pub fn start(program: &Path, dir: &Path) -> Moto {
        let mut moto = Moto {
            child: None,
            port: free_port(),
            recording: dir.join("recording.jsonl"),
            log: dir.join("moto.log"),
        };
        moto.spawn(program);
        moto
    }

    fn spawn(&mut self, program: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .env("MOTO_ENABLE_RECORDING", "true")
            .env("MOTO_RECORDER_FILEPATH", &self.recording)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting moto_server");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not start; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL): connections drop mid-request.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and replays what the killed one recorded,
    /// so it holds what the old one had completed (a request cut off by the kill is lost,
    /// as it would be on a real server).
    pub fn restart(&mut self, program: &Path) {
        self.kill();
        // The port is free once the old process is gone; wait for the kernel to agree.
        self.spawn(program);
        // Replayable requests only: a line cut off by the kill would stop the replay, and so
        // would the parts of multipart uploads (the new server knows none of the old upload
        // ids, so no part, and no upload the parts belong to, can be replayed).
        let recorded = std::fs::read_to_string(&self.recording).unwrap_or_default();
        let kept: String = recorded
            .split_inclusive('\n')
            .filter(|line| line.ends_with('\n'))
            .filter(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .map(|entry| !entry["url"].as_str().unwrap_or("").contains("partNumber="))
                    .unwrap_or(false)
            })
            .collect();
        std::fs::write(&self.recording, kept).unwrap();
        let (status, body) = request(
            &self.endpoint(),
            "POST",
            "/moto-api/recorder/replay-recording",
            &[],
        );
        assert_eq!(
            status,
            200,
            "replaying the recording: {body}\nmoto log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}
