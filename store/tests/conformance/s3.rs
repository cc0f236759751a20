//! The S3 backend of the suite: a fresh bucket on the server named by
//! `PEIRCE_TEST_S3_ENDPOINT` for every test, opened through a store URL the way the CLI
//! opens `--remote`, with a second client as the backdoor.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};

use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;

use super::*;

/// The fixture, or `None` (after saying why) when no S3 server is configured.
pub fn fixture() -> Option<Fixture> {
    let Ok(endpoint) = std::env::var("PEIRCE_TEST_S3_ENDPOINT") else {
        eprintln!(
            "skipping the S3 conformance test: PEIRCE_TEST_S3_ENDPOINT is not set \
             (scripts/test starts a moto server and sets it)"
        );
        return None;
    };
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let bucket = format!(
        "conformance-{}-{}-{:08x}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    );
    create_bucket(&endpoint, &bucket);
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

/// Creates `bucket` with a plain `PUT /bucket` (the test server takes unsigned requests).
pub fn create_bucket(endpoint: &str, bucket: &str) {
    let address = endpoint
        .strip_prefix("http://")
        .expect("a plain-HTTP test endpoint")
        .trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).expect("the S3 test server answers");
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
        "creating bucket `{bucket}`: {response}"
    );
}
