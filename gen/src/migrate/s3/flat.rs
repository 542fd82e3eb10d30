//! A bucket's flat listing through S3 itself: ListObjectsV2 without a delimiter, page by page (continuation
//! token), signed with AWS Signature V4. One request per 1,000 keys instead of rclone's one per folder (issue
//! #16), and every key as S3 holds it, also a key that is another key's folder (`a/b` and `a/b/c`) or ends in
//! `/`. An object whose ETag is no MD5 (a multipart upload's `…-N`) gets the MD5 rclone records in its metadata
//! (`X-Amz-Meta-Md5chksum`) by a HEAD, as `rclone lsjson --hash-type MD5` reads it.

use sha2::{Digest, Sha256};

use super::{Listed, Listing, S3, S3Error};
use crate::migrate::exec::ExecError;

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The job's keys for one endpoint (read from its key file when the step runs, never from a command line).
pub(super) struct Keys {
    pub(super) id: String,
    pub(super) secret: String,
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `s` percent-encoded as SigV4 wants it (unreserved characters kept; `/` kept when `slash`).
pub(super) fn encode(s: &str, slash: bool) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b'/' if slash => "/".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let byte = (b[i] == b'%' && i + 3 <= b.len())
            .then(|| std::str::from_utf8(&b[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match byte {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn xml_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(end) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match c {
            Some(c) => out.push(c),
            None => out.push_str(&tail[..=end]),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

fn field<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(&xml[start..end])
}

/// UTC `YYYYMMDDTHHMMSSZ` of now (days to civil date, Howard Hinnant's algorithm).
fn amz_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// One signed request (path-style: `/bucket/key`), its status, headers and body.
pub(super) fn request(
    s3: &S3,
    keys: &Keys,
    method: &str,
    key: Option<&str>,
    query: &[(&str, &str)],
) -> Result<(u16, ureq::http::HeaderMap, String), S3Error> {
    let endpoint = s3.endpoint.trim_end_matches('/');
    let host = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, h)| h)
        .split('/')
        .next()
        .unwrap_or_default();
    let path = match key {
        Some(k) => format!("/{}/{}", encode(&s3.bucket, false), encode(k, true)),
        None => format!("/{}", encode(&s3.bucket, false)),
    };
    let mut q: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (encode(k, false), encode(v, false)))
        .collect();
    q.sort();
    let query = q
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let date = amz_date();
    let day = &date[..8];
    let scope = format!("{day}/{}/s3/aws4_request", s3.region);
    let canonical = format!(
        "{method}\n{path}\n{query}\nhost:{host}\nx-amz-content-sha256:{EMPTY_SHA256}\nx-amz-date:{date}\n\nhost;x-amz-content-sha256;x-amz-date\n{EMPTY_SHA256}"
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut k = hmac(format!("AWS4{}", keys.secret).as_bytes(), day.as_bytes());
    for part in [s3.region.as_str(), "s3", "aws4_request"] {
        k = hmac(&k, part.as_bytes());
    }
    let signature = hex(&hmac(&k, to_sign.as_bytes()));
    let url = if query.is_empty() {
        format!("{endpoint}{path}")
    } else {
        format!("{endpoint}{path}?{query}")
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(std::time::Duration::from_secs(10)))
        .timeout_global(Some(std::time::Duration::from_secs(120)))
        .build()
        .into();
    let what = format!("{method} {} at {endpoint}", s3.bucket);
    let failed = |detail: String| {
        S3Error::Exec(ExecError::Failed {
            program: "S3".into(),
            what: what.clone(),
            status: "no answer".into(),
            output: format!("    {detail}"),
        })
    };
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(&url)
        .header("host", host)
        .header("x-amz-content-sha256", EMPTY_SHA256)
        .header("x-amz-date", &date)
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}",
                keys.id
            ),
        )
        .body(())
        .map_err(|e| failed(e.to_string()))?;
    let mut response = agent.run(req).map_err(|e| failed(e.to_string()))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = if method == "HEAD" {
        String::new()
    } else {
        response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| failed(e.to_string()))?
    };
    if !(200..300).contains(&status) {
        return Err(S3Error::Exec(ExecError::Failed {
            program: "S3".into(),
            what,
            status: format!("HTTP {status}"),
            output: format!("    {}", body.chars().take(500).collect::<String>()),
        }));
    }
    Ok((status, headers, body))
}

fn base64_hex(s: &str) -> Option<String> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.trim().bytes().take_while(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = bits << 6 | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    (out.len() == 16).then(|| hex(&out))
}

/// Every object of `s3`, `page` keys a request (S3's most is 1,000): key → size and MD5.
pub(super) fn list(s3: &S3, keys: &Keys, page: u32) -> Result<Listing, S3Error> {
    let mut listing = Listing::new();
    let mut token: Option<String> = None;
    let page = page.to_string();
    loop {
        let mut query = vec![
            ("list-type", "2"),
            ("max-keys", page.as_str()),
            ("encoding-type", "url"),
        ];
        if let Some(t) = &token {
            query.push(("continuation-token", t.as_str()));
        }
        let (_, _, xml) = request(s3, keys, "GET", None, &query)?;
        let url_encoded =
            field(&xml, "EncodingType").is_some_and(|e| e.eq_ignore_ascii_case("url"));
        for object in xml.split("<Contents>").skip(1) {
            let raw = xml_text(field(object, "Key").unwrap_or_default());
            let key = if url_encoded {
                percent_decode(&raw)
            } else {
                raw
            };
            let size = field(object, "Size")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let etag = xml_text(field(object, "ETag").unwrap_or_default());
            let etag = etag.trim_matches('"');
            let md5 = if etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit()) {
                Some(etag.to_ascii_lowercase())
            } else {
                let (_, headers, _) = request(s3, keys, "HEAD", Some(&key), &[])?;
                headers
                    .get("x-amz-meta-md5chksum")
                    .and_then(|v| v.to_str().ok())
                    .and_then(base64_hex)
            };
            // An empty key ending in `/` is a folder marker: rclone neither copies nor lists it, and the
            // listing keeps that semantics (a key ending in `/` with bytes is listed).
            if !(key.ends_with('/') && size == 0) {
                listing.insert(
                    key,
                    Listed {
                        size,
                        md5,
                        etag: etag.to_owned(),
                    },
                );
            }
        }
        if field(&xml, "IsTruncated") != Some("true") {
            return Ok(listing);
        }
        token = field(&xml, "NextContinuationToken").map(xml_text);
        if token.is_none() {
            return Ok(listing);
        }
    }
}

/// Deletes the object `key` from `s3` (S3 answers 204 whether or not it was there, so a repeated delete after
/// a killed run is no error).
pub(super) fn delete(s3: &S3, keys: &Keys, key: &str) -> Result<(), S3Error> {
    request(s3, keys, "DELETE", Some(key), &[]).map(drop)
}

/// Whether `s3` holds the object `key` (a HEAD: 404 is no).
pub(super) fn exists(s3: &S3, keys: &Keys, key: &str) -> Result<bool, S3Error> {
    match request(s3, keys, "HEAD", Some(key), &[]) {
        Ok(_) => Ok(true),
        Err(S3Error::Exec(ExecError::Failed { status, .. })) if status == "HTTP 404" => Ok(false),
        Err(e) => Err(e),
    }
}
