//! The S3 backend of the suite: a fresh bucket on the server named by
//! `PEIRCE_TEST_S3_ENDPOINT` for every test, opened through a store URL the way the CLI
//! opens `--remote`, with a second client as the backdoor.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};

use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;

use super::*;

/// The shared S3 test server, or `None` after saying why `test` is skipped (see
/// `peirce_testing::external`).
fn s3_endpoint(test: &str) -> Option<String> {
    peirce_testing::external(
        "PEIRCE_TEST_S3_ENDPOINT",
        test,
        "scripts/test starts a moto S3 server and sets it",
    )
}

/// The fixture, or `None` (after saying why) when no S3 server is configured.
pub fn fixture() -> Option<Fixture> {
    let endpoint = s3_endpoint("the S3 conformance tests")?;
    let bucket = fresh_bucket(&endpoint);
    let object = AmazonS3Builder::from_env()
        .with_bucket_name(&bucket)
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_region("us-east-1")
        .build()
        .expect("an S3 client");
    let object: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(object, "store"));
    let url = format!("s3://{bucket}/store?endpoint={endpoint}&allow_http=true");
    Some(Fixture::opened(&url, object))
}

/// A bucket of its own for one test, created on the server at `endpoint`.
pub fn fresh_bucket(endpoint: &str) -> String {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let bucket = format!(
        "conformance-{}-{}-{:08x}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    );
    create_bucket(endpoint, &bucket);
    bucket
}

/// Creates `bucket` with a plain `PUT /bucket` (the test server takes unsigned requests).
pub fn create_bucket(endpoint: &str, bucket: &str) {
    raw_request(
        endpoint,
        "PUT",
        &format!("/{bucket}"),
        "Content-Length: 0\r\n",
    );
}

/// The response headers (names in lower case) of a plain, unsigned request to the test
/// server, with `headers` added.
fn raw_headers(endpoint: &str, method: &str, path: &str, headers: &str) -> Vec<(String, String)> {
    raw_request(endpoint, method, path, headers)
        .lines()
        .skip(1)
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect()
}

/// The whole response to a plain, unsigned request to the test server, which must be a 200.
fn raw_request(endpoint: &str, method: &str, path: &str, headers: &str) -> String {
    let address = endpoint
        .strip_prefix("http://")
        .expect("a plain-HTTP test endpoint")
        .trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).expect("the S3 test server answers");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
        "{method} {path}: {response}"
    );
    response
}

/// A blob large enough for a multipart upload goes up with a SHA-256 checksum on every part,
/// which the server combines into the object's (so real S3 checks each part on receipt, and
/// needs no second pass over the object when the upload completes); `checksum_algorithm=none`
/// in the URL sends none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multipart_uploads_carry_part_checksums() {
    let Some(endpoint) = s3_endpoint("multipart_uploads_carry_part_checksums") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("large");
    // Just over one 16 MiB part: two parts.
    fs::write(&file, pattern((16 << 20) + 4097, 11)).unwrap();
    for (query, checksummed) in [("", true), ("&checksum_algorithm=none", false)] {
        let bucket = fresh_bucket(&endpoint);
        let url = format!("s3://{bucket}/store?endpoint={endpoint}&allow_http=true{query}");
        let store = peirce_store::open_store(&url).unwrap();
        let (digest, size) = store.put_file(&file).await.unwrap();
        assert_eq!(store.blob_size(digest).await.unwrap(), Some(size));
        let hex = digest.hex();
        let headers = raw_headers(
            &endpoint,
            "HEAD",
            &format!("/{bucket}/store/cas/{}/{hex}", &hex[..2]),
            "x-amz-checksum-mode: ENABLED\r\n",
        );
        let checksum = headers
            .iter()
            .find(|(name, _)| name == "x-amz-checksum-sha256")
            .map(|(_, value)| value.clone());
        if checksummed {
            // The server keeps the algorithm the upload declared, and a SHA-256 (base64).
            let checksum = checksum.unwrap_or_else(|| panic!("{url}: no checksum in {headers:?}"));
            assert_eq!(checksum.len(), 44, "{url}: {checksum}");
        } else {
            assert_eq!(checksum, None, "{url}: {headers:?}");
        }
        assert_eq!(store.get_bytes(digest).await.unwrap().len() as u64, size);
    }
}
