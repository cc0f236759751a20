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
//! Secrets never leave this module in text: a store's [`Store::url`] keeps only scheme,
//! bucket, prefix and endpoint host, and errors show the URL through [`redact_url`], the
//! one redaction of the whole program (docs/architecture.md §10): it removes user info,
//! bare query tokens and secret-looking parameter values from any text, URL or not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::error::{Error, Result};
use crate::store::Store;

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

/// Parameter names whose values are secrets: names containing one of the markers (after
/// percent-decoding, case-insensitively), or equal to one of [`SECRET_NAMES`].
const SECRET_MARKERS: [&str; 8] = [
    "secret",
    "token",
    "pass",
    "key",
    "signature",
    "credential",
    "auth",
    "sas",
];

/// Secret parameter names too short to look for inside other names.
const SECRET_NAMES: [&str; 3] = ["sig", "pw", "pwd"];

/// What stands in for a removed secret.
const REDACTED: &str = "***";

/// How deeply URLs may nest in one another (or `=` in values) before the rest of a token
/// is removed whole: bounds the recursion on hostile text.
const MAX_NESTING: u32 = 16;

/// `text` with every credential-looking part replaced by `***`: the one redaction that every
/// URL, endpoint and error message passes on its way to a terminal, a log or a record
/// (docs/architecture.md §10).
///
/// `text` may be a URL, a string meant as one that does not parse (a bad port, an invalid
/// IPv6 host, a missing scheme), or a message embedding any number of them, such as
/// object_store's errors, which quote the request URL with the endpoint's user info and
/// query. It works on the text alone and never fails:
///
/// - **user info**: in `scheme://`, everything up to the last `@` of the authority (a
///   password may hold `/`, `?` or `#` when nobody encoded it); without a scheme,
///   `name:password@` before a host;
/// - an authority that is neither a host, a numeric port nor an IPv6 literal (`AKID:SECRET`
///   where the `@` was forgotten);
/// - in query strings and fragments, parts that are not `key=value` (a bare token), and
///   the values of `key=value` parameters anywhere in the text whose key names a secret
///   (`secret`, `token`, `password`, `key`, `signature`, `credential`, `sig`, ...);
///   other values are kept, redacted in turn (an `endpoint=` value is a URL itself),
///   percent-decoded first when the encoded form hides a URL.
///
/// It errs on the side of removing too much: a path holding `@` may lose its host. Digests
/// (`key=blake3:…` in logs) are names, not secrets, and stay.
pub fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut token_start = None;
    for (index, character) in text.char_indices() {
        if ends_token(character) {
            if let Some(start) = token_start.take() {
                out.push_str(&redact_token(&text[start..index], 0));
            }
            out.push(character);
        } else if token_start.is_none() {
            token_start = Some(index);
        }
    }
    if let Some(start) = token_start {
        out.push_str(&redact_token(&text[start..], 0));
    }
    out
}

/// Characters that end a URL inside a message: spaces and quotes.
fn ends_token(character: char) -> bool {
    character.is_whitespace() || matches!(character, '"' | '\'' | '`' | '<' | '>')
}

/// Characters of a URL scheme (`s3`, `http`, `git+ssh`).
fn is_scheme_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.')
}

/// Where the scheme ending just before byte `end` of `text` starts.
fn scheme_start(text: &str, end: usize) -> usize {
    let bytes = text.as_bytes();
    let mut start = end;
    while start > 0 && is_scheme_char(bytes[start - 1]) {
        start -= 1;
    }
    start
}

/// One run of text without spaces or quotes: URLs (possibly several, possibly nested in
/// query values) or plain text.
fn redact_token(token: &str, depth: u32) -> String {
    if depth > MAX_NESTING {
        return REDACTED.to_string();
    }
    let Some(separator) = token.find("://") else {
        return redact_plain(token, depth);
    };
    let start = scheme_start(token, separator);
    let head = &token[..start];
    // `token=https://...`: the whole URL is the secret.
    if let Some(key) = head.strip_suffix('=') {
        let key = key.rsplit(['&', '?', '=']).next().unwrap_or_default();
        if is_secret_key(key) {
            return format!("{}{REDACTED}", redact_plain(head, depth + 1));
        }
    }
    let mut out = redact_plain(head, depth + 1);
    out.push_str(&token[start..separator + 3]);
    let mut rest = &token[separator + 3..];
    // User info ends at the last `@` before a nested URL (an `endpoint=` value) begins.
    let limit = rest
        .find("://")
        .map(|nested| scheme_start(rest, nested))
        .unwrap_or(rest.len());
    if let Some(at) = rest[..limit].rfind('@') {
        out.push_str(REDACTED);
        out.push('@');
        rest = &rest[at + 1..];
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if is_plain_authority(authority) {
        out.push_str(authority);
    } else {
        out.push_str(REDACTED);
    }
    rest = &rest[authority_end..];
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    out.push_str(&redact_token(&rest[..path_end], depth + 1));
    rest = &rest[path_end..];
    if let Some(first) = rest.chars().next() {
        // A query (or fragment), to the end of the token: nested URLs' queries included.
        out.push(first);
        let parts: Vec<String> = rest[1..]
            .split('&')
            .map(|part| redact_parameter(part, depth + 1))
            .collect();
        out.push_str(&parts.join("&"));
    }
    out
}

/// Whether an authority (after any user info) is a host, a host and a numeric port, or an
/// IPv6 literal, rather than something that may be a credential.
fn is_plain_authority(authority: &str) -> bool {
    let port = match authority.strip_prefix('[') {
        Some(inner) => {
            let Some((address, after)) = inner.split_once(']') else {
                return false;
            };
            if !address
                .chars()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.' | '%'))
            {
                return false;
            }
            match after.strip_prefix(':') {
                Some(port) => port,
                None => return after.is_empty(),
            }
        }
        None => match authority.split_once(':') {
            Some((_, port)) => port,
            None => return true,
        },
    };
    port.bytes().all(|byte| byte.is_ascii_digit())
}

/// One `key=value` (or bare) part of a query string or fragment.
fn redact_parameter(part: &str, depth: u32) -> String {
    match part.split_once('=') {
        Some((key, value)) => redact_pair(key, value, depth),
        None if part.is_empty() => String::new(),
        None => REDACTED.to_string(),
    }
}

/// `key=value`: the value removed when the key names a secret, else redacted in turn.
fn redact_pair(key: &str, value: &str, depth: u32) -> String {
    if is_secret_key(key) && !value.starts_with("blake3:") {
        return format!("{key}={REDACTED}");
    }
    let decoded = percent_decode(value);
    let value = if decoded != value {
        // An encoded URL (`endpoint=http%3A%2F%2Fme%3Apw%40host`) hides its user info.
        let redacted = redact_token(&decoded, depth + 1);
        if redacted == decoded {
            value.to_string()
        } else {
            redacted
        }
    } else {
        redact_token(value, depth + 1)
    };
    format!("{key}={value}")
}

/// Text without `://`: `key=value` parameters joined by `&`, or `name:password@host`.
fn redact_plain(text: &str, depth: u32) -> String {
    if !text.contains(['=', '@']) {
        return text.to_string();
    }
    text.split('&')
        .map(|part| match part.split_once('=') {
            Some((key, value)) => redact_pair(key, value, depth),
            None => redact_user_info(part),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `name:password@host` (no scheme) with the user info removed; `name@host` stays, as it
/// may be a mail address.
fn redact_user_info(text: &str) -> String {
    let Some(at) = text.rfind('@') else {
        return text.to_string();
    };
    let start = if text.starts_with("//") { 2 } else { 0 };
    if text[start..at].contains(':') {
        format!("{}{REDACTED}@{}", &text[..start], &text[at + 1..])
    } else {
        text.to_string()
    }
}

/// `%XX` escapes decoded (invalid UTF-8 replaced), for checking what encoded text says.
fn percent_decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_string();
    }
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |offset: usize| {
            bytes
                .get(index + offset)
                .and_then(|byte| (*byte as char).to_digit(16))
        };
        match (bytes[index], hex(1), hex(2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                index += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn is_secret_key(key: &str) -> bool {
    let key = percent_decode(key).to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|marker| key.contains(marker))
        || SECRET_NAMES.contains(&key.trim_start_matches(['-', '_', '?', '&', '(']))
}

fn url_error(text: &str, reason: impl Into<String>) -> Error {
    Error::Url {
        url: redact_url(text),
        // object_store's builders quote the endpoint in their messages.
        reason: redact_url(&reason.into()),
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

/// Checks that `location` is a folder or a URL that parses, without opening anything (for
/// argument parsing). A folder that looks like a URL with user info and no scheme
/// (`AKID:SECRET@bucket/prefix`) is refused rather than created: it is a typo, and its name
/// would be shown. Errors show `location` redacted.
pub fn validate(location: &str) -> Result<()> {
    if location.starts_with("file://") {
        return Ok(());
    }
    if !is_url(location) {
        if redact_url(location) != location {
            return Err(url_error(
                location,
                "it looks like a URL with credentials but no scheme: name a folder, or a URL \
                 such as `s3://bucket/prefix` (credentials belong in the environment or \
                 ~/.aws, not in the URL)",
            ));
        }
        return Ok(());
    }
    url::Url::parse(location).map_err(|error| url_error(location, error.to_string()))?;
    Ok(())
}

/// Opens the store at `location`: a folder (created if needed), or an object store URL.
pub fn open(location: &str) -> Result<Store> {
    validate(location)?;
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
    fn redaction_handles_what_does_not_parse() {
        for text in [
            "s3://AKIAEXAMPLE:wJalrSECRET@bucket:99999/p",
            "s3://AKIAEXAMPLE:wJalrSECRET@[::zz]/p",
            "AKIAEXAMPLE:wJalrSECRET@bucket/p",
            "://AKIAEXAMPLE:wJalrSECRET@bucket/p",
            "//AKIAEXAMPLE:wJalrSECRET@bucket/p",
            "s3:/AKIAEXAMPLE:wJalrSECRET@bucket/p",
            "s3://AKIAEXAMPLE:wJalr/SECRET?#@bucket/p",
            "s3://AKIAEXAMPLE:wJalrSECRET/p",
            "s3://[AKIAEXAMPLE:wJalrSECRET]/p",
            "invalid value `s3://AKIAEXAMPLE:wJalrSECRET@bucket:99999/p` for `--remote`",
        ] {
            let redacted = redact_url(text);
            for secret in ["AKIAEXAMPLE", "wJalr", "SECRET"] {
                assert!(!redacted.contains(secret), "{text} -> {redacted}");
            }
        }
        assert_eq!(
            redact_url("s3://AKID:SECRET@bucket:99999/p?region=x"),
            "s3://***@bucket:99999/p?region=x"
        );
        // Not an IPv6 address, so possibly a credential: hidden too.
        assert_eq!(redact_url("s3://AKID:SECRET@[::zz]/p"), "s3://***@***/p");
        assert_eq!(redact_url("s3://[::1]/p"), "s3://[::1]/p");
        assert_eq!(redact_url("s3://bucket/p"), "s3://bucket/p");
        assert_eq!(redact_url("http://[::1]:9000/x"), "http://[::1]:9000/x");
        assert_eq!(redact_url("/tmp/store"), "/tmp/store");
        assert_eq!(redact_url("me@example.com"), "me@example.com");
    }

    #[test]
    fn redaction_cleans_error_messages() {
        // object_store's messages quote the request URL built from the endpoint.
        let message = "Store backend error at `ac/ee0f`: Generic S3 error: Error performing GET \
                       http://minio:pw@127.0.0.1:1/bkt/p/ac/ee0f in 402µs - HTTP error; GET \
                       http://127.0.0.1:1/?token=QSECRET/bkt/p/ac/ee0f and \
                       (http://127.0.0.1:1/?BARESECRET/bkt) AWS_SECRET_ACCESS_KEY=ENVSECRET \
                       lost the lease key=blake3:ee0f";
        let redacted = redact_url(message);
        for secret in ["pw", "QSECRET", "BARESECRET", "ENVSECRET"] {
            assert!(!redacted.contains(secret), "{redacted}");
        }
        for kept in [
            "Store backend error at `ac/ee0f`:",
            "http://***@127.0.0.1:1/bkt/p/ac/ee0f in 402µs",
            "http://127.0.0.1:1/?token=***",
            "key=blake3:ee0f",
        ] {
            assert!(redacted.contains(kept), "{kept}: {redacted}");
        }
        // An endpoint percent-encoded inside a store URL's query.
        let encoded = "s3://b/p?endpoint=http%3A%2F%2Fminio%3Apw%40127.0.0.1%3A1&region=x";
        let redacted = redact_url(encoded);
        assert!(!redacted.contains("pw"), "{redacted}");
        assert!(redacted.contains("region=x"), "{redacted}");
        // Hostile nesting is cut off, not recursed into without bound.
        let deep = "s3://b/?endpoint=".repeat(10_000) + "http://u:pw@h";
        assert!(!redact_url(&deep).contains("pw"));
        let deep = "a=".repeat(100_000) + "u:pw@h";
        assert!(!redact_url(&deep).contains("pw"));
    }

    #[test]
    fn folders_that_look_like_credentials_are_refused() {
        for location in ["AKID:SECRETVALUE@bucket/p", "://AKID:SECRETVALUE@bucket/p"] {
            let error = open(location).err().unwrap().to_string();
            assert!(error.contains("no scheme"), "{error}");
            assert!(!error.contains("SECRETVALUE"), "{error}");
        }
        let error = validate("s3://AKID:SECRETVALUE@bucket:99999/p")
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("invalid port"), "{error}");
        assert!(!error.contains("SECRETVALUE"), "{error}");
        assert!(validate("s3://bucket/p?region=x").is_ok());
        assert!(validate("relative/folder").is_ok());
    }

    /// Many generated URL-ish strings, each hiding one secret where a credential goes
    /// (user info, a secret query value, a bare query token, an endpoint's user info or
    /// query, percent-encoded, no scheme, an authority with a password and no `@`), with bad
    /// ports, IPv6 hosts, missing parts and surrounding message text: the redacted text
    /// never holds the secret.
    #[test]
    fn fuzzed_urls_never_show_their_secret() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x7265_6461_6374);
        fn pick<'a>(rng: &mut impl Rng, items: &[&'a str]) -> &'a str {
            items[rng.random_range(0..items.len())]
        }
        fn word(rng: &mut impl Rng, alphabet: &[u8], length: std::ops::Range<usize>) -> String {
            let length = rng.random_range(length);
            (0..length)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
                .collect()
        }
        const PLAIN: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~";
        const SECRET_EXTRA: &[u8] = b"+/:;,!$*()%=&?#@";
        let schemes = [
            "s3", "s3a", "gs", "az", "http", "https", "memory", "ftp", "S3", "",
        ];
        let hosts = [
            "bucket",
            "bucket:99999",
            "bucket:9000",
            "bucket:",
            "[::zz]",
            "[::1]:9000",
            "[::1",
            "[fe80::1%25eth0]",
            "127.0.0.1:1",
            "host:port",
            "",
            "bücket",
        ];
        let secret_keys = [
            "secret_access_key",
            "aws_secret_access_key",
            "token",
            "aws_session_token",
            "X-Amz-Signature",
            "X-Amz-Credential",
            "sig",
            "password",
            "access_key_id",
            "sas_token",
            "secret%5Faccess%5Fkey",
        ];
        let started = std::time::Instant::now();
        for case in 0..100_000u32 {
            let shape = rng.random_range(0..9);
            // Where the secret sits decides which characters it may hold: a value ends at
            // `&`, a bare token at `=` too, a port-like password at `/`.
            let mut alphabet = PLAIN.to_vec();
            match shape {
                0 | 5 => alphabet.extend_from_slice(SECRET_EXTRA),
                1 | 3 | 6 => alphabet.extend_from_slice(b"+/:;,!$*()%=?#@"),
                2 => alphabet.extend_from_slice(b"+/:;,!$*()%"),
                _ => alphabet.extend_from_slice(b"+:;,!$*()"),
            }
            let secret = format!("Zq{}", word(&mut rng, &alphabet, 4..16)).replace("://", ":");
            let scheme = pick(&mut rng, &schemes);
            let host = pick(&mut rng, &hosts);
            let user = word(&mut rng, PLAIN, 0..8);
            let path = match rng.random_range(0..4) {
                0 => String::new(),
                1 => "/".into(),
                _ => format!(
                    "/{}/{}",
                    word(&mut rng, PLAIN, 1..6),
                    word(&mut rng, PLAIN, 0..6)
                ),
            };
            let options = [
                "",
                "region=eu-west-1",
                "allow_http=true",
                "retries=0&timeout=1",
            ];
            let option = pick(&mut rng, &options);
            let key = pick(&mut rng, &secret_keys);
            let endpoint_host = pick(&mut rng, &hosts);
            let url = match shape {
                // User info, with or without a user.
                0 => format!("{scheme}://{user}:{secret}@{host}{path}?{option}"),
                1 => format!("{scheme}://{secret}@{host}{path}"),
                // A secret query value.
                2 => format!("{scheme}://{host}{path}?{option}&{key}={secret}&{option}"),
                // An endpoint with user info, plain or percent-encoded.
                3 => format!(
                    "{scheme}://{host}{path}?endpoint=http://{user}:{secret}@{endpoint_host}&{option}"
                ),
                4 => {
                    let endpoint = format!("http://{user}:{secret}@{endpoint_host}/");
                    let encoded: String = endpoint
                        .bytes()
                        .map(|byte| match byte {
                            b':' | b'/' | b'@' | b'?' | b'=' | b'&' => format!("%{byte:02X}"),
                            _ => (byte as char).to_string(),
                        })
                        .collect();
                    format!("{scheme}://{host}{path}?{option}&endpoint={encoded}")
                }
                // An endpoint with a secret query, keyed or bare.
                5 => format!(
                    "{scheme}://{host}{path}?endpoint=http://{endpoint_host}/?{key}={secret}&{option}"
                ),
                6 => format!("http://{endpoint_host}/?{}/bkt/p", secret.replace(['=', '&'], "")),
                // No scheme at all.
                7 => format!("{user}:{secret}@{host}{path}"),
                // A password where the port goes (the `@` forgotten).
                _ => format!("{scheme}://{user}:{}{path}", secret.replace(['/', '?', '#', '@'], "")),
            };
            let secret = match shape {
                6 => secret.replace(['=', '&'], ""),
                8 => secret.replace(['/', '?', '#', '@'], ""),
                _ => secret,
            };
            let text = match rng.random_range(0..4) {
                0 => url,
                1 => format!("invalid value '{url}' for '--remote <URL>'"),
                2 => format!("Error performing GET {url} in 3ms - HTTP error (`{url}`)"),
                _ => format!("error=({url}): x"),
            };
            let redacted = redact_url(&text);
            assert!(
                !redacted.contains(&secret),
                "case {case}: `{secret}` survives in\n{text}\n-> {redacted}"
            );
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "100,000 redactions took {:?}",
            started.elapsed()
        );
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
