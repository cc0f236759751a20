//! Store locations: a local folder, or an object store URL (`s3://`, `gs://`, `az://`,
//! `memory://`), turned into a [`Store`].
//!
//! S3 settings come, from weakest to strongest, from the AWS shared files (`~/.aws/config`
//! and `~/.aws/credentials`, profile `AWS_PROFILE` or `default`), the `AWS_*` environment
//! variables object_store reads (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, ...), and the
//! URL's query: `s3://bucket/prefix?endpoint=http://127.0.0.1:9000&allow_http=true`.
//! Query keys: `endpoint`, `allow_http`, `region`, `profile`, `path_style` (default true
//! with a custom endpoint), `retries`, `retry_timeout` (seconds), `timeout` (seconds),
//! `checksum_algorithm` (`sha256`, the default, or `none`: see `s3_checksum`), and any key
//! object_store's S3 builder accepts.
//!
//! Secrets never leave this module in text: [`redact_url`] drops user info and every query
//! value whose key names a secret, and a store's [`Store::url`] keeps only scheme, bucket,
//! prefix and endpoint host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::error::{Error, Result};
use crate::store::Store;

/// Query keys whose values are secrets (matched as substrings, case-insensitively).
const SECRET_MARKERS: [&str; 6] = ["secret", "token", "password", "key", "signature", "sas"];

/// Whether `text` names an object store URL rather than a local folder.
pub fn is_url(text: &str) -> bool {
    text.split_once("://")
        .map(|(scheme, _)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+')
        })
        .unwrap_or(false)
}

/// `text` with user info and secret query values replaced by `***`, for messages.
pub fn redact_url(text: &str) -> String {
    let Ok(mut url) = url::Url::parse(text) else {
        // Not a URL we can take apart: keep the scheme and authority only.
        return match text.split_once("://") {
            Some((scheme, rest)) => {
                let authority = rest.split(['/', '?', '@']).next().unwrap_or_default();
                format!("{scheme}://{authority}/***")
            }
            None => text.to_string(),
        };
    };
    if !url.username().is_empty() || url.password().is_some() {
        let _ = url.set_username("***");
        let _ = url.set_password(None);
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(key, value)| {
            let value = if is_secret_key(&key) {
                "***".to_string()
            } else if is_url(&value) {
                redact_url(&value)
            } else {
                value.into_owned()
            };
            (key.into_owned(), value)
        })
        .collect();
    if pairs.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|marker| key.contains(marker))
}

fn url_error(text: &str, reason: impl Into<String>) -> Error {
    Error::Url {
        url: redact_url(text),
        reason: reason.into(),
    }
}

/// Passes every query option peirce does not consume itself to an object_store builder
/// (each builder has its own config-key type, hence a macro rather than a function).
macro_rules! apply_query {
    ($builder:ident, $query:expr, $location:expr) => {
        for (key, value) in $query {
            if is_peirce_option(key) {
                continue;
            }
            let parsed = key
                .parse()
                .map_err(|_| url_error($location, format!("unknown option `{key}`")))?;
            $builder = $builder.with_config(parsed, value);
        }
    };
}

/// Finishes a GCS or Azure builder (retries, client options, query options) into a store.
macro_rules! cloud_store {
    ($builder:ident, $scheme:literal, $bucket:ident, $prefix:ident, $query:ident, $location:ident) => {{
        let mut $builder = $builder
            .with_retry(retry_config($location, &$query)?)
            .with_client_options(client_options($location, &$query)?);
        apply_query!($builder, &$query, $location);
        let object = $builder
            .build()
            .map_err(|error| url_error($location, error.to_string()))?;
        Ok(Store::from_object_store(
            with_prefix(Arc::new(object), &$prefix),
            format!("{}://{}/{}", $scheme, $bucket, $prefix),
        ))
    }};
}

/// Opens the store at `location`: a folder (created if needed), or an object store URL.
pub fn open(location: &str) -> Result<Store> {
    if let Some(path) = location.strip_prefix("file://") {
        return Store::open_local(Path::new(path));
    }
    if !is_url(location) {
        return Store::open_local(Path::new(location));
    }
    let url = url::Url::parse(location).map_err(|error| url_error(location, error.to_string()))?;
    let query: BTreeMap<String, String> = url
        .query_pairs()
        .map(|(key, value)| (key.to_ascii_lowercase(), value.into_owned()))
        .collect();
    let bucket = url.host_str().unwrap_or_default().to_string();
    let prefix = url.path().trim_matches('/').to_string();
    match url.scheme() {
        "memory" => Ok(Store::in_memory()),
        "s3" | "s3a" => {
            if bucket.is_empty() {
                return Err(url_error(
                    location,
                    "no bucket: expected `s3://bucket/prefix`",
                ));
            }
            let (object, endpoint) = s3(location, &bucket, &query)?;
            let mut shown = format!("s3://{bucket}/{prefix}");
            if let Some(endpoint) = endpoint {
                shown.push_str(&format!("?endpoint={}", endpoint_for_display(&endpoint)));
            }
            Ok(Store::from_object_store(
                with_prefix(object, &prefix),
                shown,
            ))
        }
        "gs" => {
            if bucket.is_empty() {
                return Err(url_error(
                    location,
                    "no bucket: expected `gs://bucket/prefix`",
                ));
            }
            let builder =
                object_store::gcp::GoogleCloudStorageBuilder::from_env().with_bucket_name(&bucket);
            cloud_store!(builder, "gs", bucket, prefix, query, location)
        }
        "az" | "azure" => {
            if bucket.is_empty() {
                return Err(url_error(
                    location,
                    "no container: expected `az://container/prefix` (account from AZURE_STORAGE_ACCOUNT_NAME)",
                ));
            }
            let builder =
                object_store::azure::MicrosoftAzureBuilder::from_env().with_container_name(&bucket);
            cloud_store!(builder, "az", bucket, prefix, query, location)
        }
        other => Err(url_error(
            location,
            format!(
                "unknown scheme `{other}`: use a folder, `s3://`, `gs://`, `az://` or `memory://`"
            ),
        )),
    }
}

fn with_prefix(object: Arc<dyn ObjectStore>, prefix: &str) -> Arc<dyn ObjectStore> {
    if prefix.is_empty() {
        object
    } else {
        Arc::new(PrefixStore::new(object, prefix))
    }
}

/// Options peirce reads itself (the rest go to object_store's builders).
fn is_peirce_option(key: &str) -> bool {
    matches!(
        key,
        "profile" | "path_style" | "retries" | "retry_timeout" | "timeout"
    )
}

/// Scheme, host and port of an endpoint: what messages may show of it.
fn endpoint_for_display(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(url) => format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port()
                .map(|port| format!(":{port}"))
                .unwrap_or_default()
        ),
        Err(_) => redact_url(endpoint),
    }
}

fn parse_seconds(location: &str, key: &str, value: &str) -> Result<Duration> {
    let number = value.trim().trim_end_matches('s');
    number
        .parse::<f64>()
        .ok()
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| url_error(location, format!("`{key}` must be seconds, got `{value}`")))
}

fn parse_bool(location: &str, key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(url_error(
            location,
            format!("`{key}` must be true or false, got `{value}`"),
        )),
    }
}

/// Retries with exponential backoff for transient errors (5xx, throttling, connection
/// failures): 10 attempts within 3 minutes unless the URL says otherwise.
fn retry_config(location: &str, query: &BTreeMap<String, String>) -> Result<RetryConfig> {
    let mut config = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: 10,
        retry_timeout: Duration::from_secs(180),
    };
    if let Some(value) = query.get("retries") {
        config.max_retries = value.parse().map_err(|_| {
            url_error(
                location,
                format!("`retries` must be a count, got `{value}`"),
            )
        })?;
    }
    if let Some(value) = query.get("retry_timeout") {
        config.retry_timeout = parse_seconds(location, "retry_timeout", value)?;
    }
    Ok(config)
}

fn client_options(location: &str, query: &BTreeMap<String, String>) -> Result<ClientOptions> {
    // A whole request (a 128 MiB range of a large blob included) may take minutes on a slow
    // link; a dead connection is still noticed quickly through the connect timeout.
    let mut timeout = Duration::from_secs(600);
    if let Some(value) = query.get("timeout") {
        timeout = parse_seconds(location, "timeout", value)?;
    }
    let mut options = ClientOptions::new()
        .with_timeout(timeout)
        .with_connect_timeout(Duration::from_secs(10))
        .with_pool_max_idle_per_host(32);
    // `allow_http` itself reaches the builders as a configuration key (URL or AWS_ALLOW_HTTP);
    // checked here so a typo is an error rather than a silent `false`.
    if let Some(value) = query.get("allow_http") {
        options = options.with_allow_http(parse_bool(location, "allow_http", value)?);
    }
    Ok(options)
}

/// An S3 client for `bucket`, and the custom endpoint if one is set.
fn s3(
    location: &str,
    bucket: &str,
    query: &BTreeMap<String, String>,
) -> Result<(Arc<dyn ObjectStore>, Option<String>)> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    // Client options first: `with_client_options` replaces what configuration keys set.
    // Payloads go unsigned (as awscli sends them over HTTPS): the checksum below already
    // covers each request's body, and peirce verifies every blob by its blake3 name on the
    // way in anyway. `unsigned_payload=false` (URL or AWS_UNSIGNED_PAYLOAD) signs them.
    let mut builder = AmazonS3Builder::new()
        .with_client_options(client_options(location, query)?)
        .with_retry(retry_config(location, query)?)
        .with_unsigned_payload(true);
    if let Some(checksum) = s3_checksum(location, query)? {
        builder = builder.with_checksum_algorithm(checksum);
    }
    // Weakest first: the shared files' profile, then the environment, then the URL.
    let profile_name = query
        .get("profile")
        .cloned()
        .or_else(|| std::env::var("AWS_PROFILE").ok())
        .unwrap_or_else(|| "default".to_string());
    for (key, value) in aws_profile(&profile_name) {
        if let Ok(parsed) = key.parse::<AmazonS3ConfigKey>() {
            builder = with_config(builder, parsed, value);
        }
    }
    for (name, value) in std::env::vars() {
        if !name.starts_with("AWS_") {
            continue;
        }
        if let Ok(parsed) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            builder = with_config(builder, parsed, value);
        }
    }
    for (key, value) in query {
        if is_peirce_option(key) {
            continue;
        }
        let parsed: AmazonS3ConfigKey = key.parse().map_err(|_| {
            url_error(
                location,
                format!("unknown option `{key}` (see object_store's S3 configuration keys)"),
            )
        })?;
        builder = with_config(builder, parsed, value);
    }
    builder = builder.with_bucket_name(bucket);
    let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
    if builder
        .get_config_value(&AmazonS3ConfigKey::Region)
        .is_none()
    {
        let region = builder
            .get_config_value(&AmazonS3ConfigKey::DefaultRegion)
            .unwrap_or_else(|| "us-east-1".to_string());
        builder = builder.with_region(region);
    }
    // Local servers (moto, MinIO) want path-style addressing: the default with a custom
    // endpoint, unless the URL asks for virtual-hosted style.
    let path_style = match query.get("path_style") {
        Some(value) => parse_bool(location, "path_style", value)?,
        None => endpoint.is_some(),
    };
    if path_style {
        builder = builder.with_virtual_hosted_style_request(false);
    }
    let object = builder
        .build()
        .map_err(|error| url_error(location, error.to_string()))?;
    Ok((Arc::new(object), endpoint))
}

/// `builder` with one configuration key set, except the checksum, which [`s3_checksum`]
/// chooses (object_store's own parsing knows no `none`).
fn with_config(
    builder: object_store::aws::AmazonS3Builder,
    key: object_store::aws::AmazonS3ConfigKey,
    value: impl Into<String>,
) -> object_store::aws::AmazonS3Builder {
    if key == object_store::aws::AmazonS3ConfigKey::Checksum {
        builder
    } else {
        builder.with_config(key, value)
    }
}

/// The checksum every S3 write carries: SHA-256 unless the URL's `checksum_algorithm` (or
/// else `AWS_CHECKSUM_ALGORITHM`) says `none`.
///
/// With it, each request (each part of a multipart upload) sends `x-amz-checksum-sha256`,
/// which S3 checks on receipt, rejecting a part damaged on the way, and the upload declares
/// the algorithm up front (as awscli declares CRC32), so the server combines the parts'
/// checksums at completion. Without it some servers checksum the whole object again when
/// the upload completes: moto copies a completed 1 GiB object twice more to do so, which
/// made peirce's uploads 1.3-1.6x slower than awscli's. `none` is for S3-compatible
/// servers that refuse the header.
fn s3_checksum(
    location: &str,
    query: &BTreeMap<String, String>,
) -> Result<Option<object_store::aws::Checksum>> {
    let value = query
        .get("checksum_algorithm")
        .or_else(|| query.get("aws_checksum_algorithm"))
        .cloned()
        .or_else(|| std::env::var("AWS_CHECKSUM_ALGORITHM").ok());
    match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("sha256") => Ok(Some(object_store::aws::Checksum::SHA256)),
        Some("none") => Ok(None),
        Some(other) => Err(url_error(
            location,
            format!("`checksum_algorithm` must be sha256 or none, got `{other}`"),
        )),
    }
}

/// Settings of one profile from the AWS shared config and credentials files, as object_store
/// configuration keys. Missing files or profiles give nothing.
fn aws_profile(profile: &str) -> Vec<(String, String)> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let config = std::env::var_os("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|home| home.join(".aws/config")));
    let credentials = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|home| home.join(".aws/credentials")));
    let mut settings = BTreeMap::new();
    // In the config file, profiles other than `default` are `[profile NAME]`.
    if let Some(text) = config.and_then(|path| std::fs::read_to_string(path).ok()) {
        let section = if profile == "default" {
            "default".to_string()
        } else {
            format!("profile {profile}")
        };
        settings.extend(ini_section(&text, &section));
    }
    if let Some(text) = credentials.and_then(|path| std::fs::read_to_string(path).ok()) {
        settings.extend(ini_section(&text, profile));
    }
    settings
        .into_iter()
        .filter_map(|(key, value)| {
            let key = match key.as_str() {
                "aws_access_key_id" | "aws_secret_access_key" | "aws_session_token" => key,
                "region" => "aws_region".to_string(),
                "endpoint_url" => "aws_endpoint".to_string(),
                _ => return None,
            };
            Some((key, value))
        })
        .collect()
}

/// `key = value` lines of `[section]` in an INI file.
fn ini_section(text: &str, section: &str) -> BTreeMap<String, String> {
    let mut current = None;
    let mut found = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim().to_string());
            continue;
        }
        if current.as_deref() != Some(section) {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            found.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_folders() {
        assert!(is_url("s3://bucket/prefix"));
        assert!(is_url("memory://"));
        assert!(!is_url("/tmp/store"));
        assert!(!is_url("relative/folder"));
        assert!(!is_url("C:/odd"));
    }

    #[test]
    fn redaction_drops_secrets_and_keeps_the_rest() {
        let text = "s3://bucket/prefix?endpoint=http://user:hunter2@127.0.0.1:9000\
                    &secret_access_key=SECRETVALUE&aws_session_token=TOKENVALUE&region=eu-west-1";
        let redacted = redact_url(text);
        for secret in ["hunter2", "SECRETVALUE", "TOKENVALUE", "user"] {
            assert!(!redacted.contains(secret), "{redacted}");
        }
        assert!(redacted.contains("region=eu-west-1"), "{redacted}");
        assert!(redacted.contains("s3://bucket/prefix"), "{redacted}");
        assert!(!redact_url("s3://AKIA:SECRET@bucket/x").contains("SECRET"));
    }

    #[test]
    fn store_urls_show_no_secrets() {
        let store = open(
            "s3://bucket/some/prefix?endpoint=http://me:hunter2@127.0.0.1:9&allow_http=true\
             &access_key_id=AKIDVALUE&secret_access_key=SECRETVALUE",
        )
        .unwrap();
        assert_eq!(
            store.url(),
            "s3://bucket/some/prefix?endpoint=http://127.0.0.1:9"
        );
        let error = open("s3://bucket/x?secret_access_key=SECRETVALUE&bogus_option=1")
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("bogus_option"), "{error}");
        assert!(!error.contains("SECRETVALUE"), "{error}");
    }

    #[test]
    fn bad_urls_are_clear_errors() {
        for (url, needle) in [
            ("s3:///prefix", "no bucket"),
            ("ftp://host/x", "unknown scheme"),
            ("s3://b/p?allow_http=maybe", "true or false"),
            ("s3://b/p?retry_timeout=soon", "seconds"),
            ("s3://b/p?checksum_algorithm=md5", "sha256 or none"),
        ] {
            let error = open(url).err().unwrap().to_string();
            assert!(error.contains(needle), "{url}: {error}");
        }
    }

    #[test]
    fn s3_writes_carry_sha256_checksums_unless_turned_off() {
        use object_store::aws::Checksum;
        let query = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect()
        };
        let url = "s3://b/p";
        assert_eq!(
            s3_checksum(url, &query(&[("checksum_algorithm", "SHA256")])).unwrap(),
            Some(Checksum::SHA256)
        );
        assert_eq!(
            s3_checksum(url, &query(&[("checksum_algorithm", "none")])).unwrap(),
            None
        );
        assert_eq!(
            s3_checksum(url, &query(&[("aws_checksum_algorithm", "none")])).unwrap(),
            None
        );
        if std::env::var_os("AWS_CHECKSUM_ALGORITHM").is_none() {
            assert_eq!(
                s3_checksum(url, &query(&[])).unwrap(),
                Some(Checksum::SHA256)
            );
        }
        assert!(open("s3://b/p?checksum_algorithm=none").is_ok());
    }

    #[test]
    fn profiles_come_from_the_shared_files() {
        let text = "[default]\nregion = us-east-2\n[profile team]\nregion = eu-north-1\n\
                    endpoint_url = http://127.0.0.1:9\n";
        assert_eq!(ini_section(text, "profile team")["region"], "eu-north-1");
        assert_eq!(ini_section(text, "default")["region"], "us-east-2");
        assert!(ini_section(text, "absent").is_empty());
    }
}
