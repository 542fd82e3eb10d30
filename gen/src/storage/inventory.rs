//! What the cluster holds, read in bulk before `apply` changes anything: every key's id and name
//! (`ListKeys`) and every bucket's website access and key permissions (`ListBucketsInfo`), a page of a
//! thousand at a time.
//!
//! Why in bulk: Garage verifies the admin token of every authenticated admin call against an argon2 hash
//! (`garage_api_admin` 2.5.0, `api_server.rs`, `verify_authorization`), about 0.1 s of a core per call on a
//! busy machine, whatever the call does. A lookup per bucket and per key made a no-op run over 4,000 pairs
//! take over ten minutes; a few pages take seconds. Knowing what exists also means nothing known to be missing
//! is looked up. `ListBucketsInfo` is newer than Garage 2.0 (not in v2.0.0's router): where Garage does not
//! know it, buckets are left [`BucketState::Unknown`] and looked up one by one, as before.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::client::{Admin, ApiError};

/// How many entries a page asks for: Garage's own default page of `ListBucketsInfo`.
pub(crate) const PAGE: usize = 1000;

/// A bucket as the bulk read found it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BucketState {
    /// It exists: Garage's `GetBucketInfo` answer for it (the form `ListBucketsInfo` lists).
    Known(Value),
    /// No bucket has this global alias.
    Missing,
    /// This Garage cannot list bucket details: look it up.
    Unknown,
}

/// The keys and buckets of the cluster.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Inventory {
    /// Key id → the key's name.
    pub(crate) keys: BTreeMap<String, String>,
    /// Global alias → the bucket's info; `None` when this Garage cannot list bucket details.
    pub(crate) buckets: Option<BTreeMap<String, Value>>,
}

impl Inventory {
    /// What the inventory says of the bucket with this global alias.
    pub(crate) fn bucket(&self, alias: &str) -> BucketState {
        match &self.buckets {
            None => BucketState::Unknown,
            Some(b) => b
                .get(alias)
                .cloned()
                .map_or(BucketState::Missing, BucketState::Known),
        }
    }
}

/// Reads every page of a listing endpoint. Garage's `offset` is the id of the first entry to return (the
/// last one of the previous page, so it comes again and is skipped); a page shorter than asked, or one that
/// brings nothing new (a Garage that ignores `offset` and `limit` answers everything each time), ends it.
fn pages(
    admin: &mut dyn Admin,
    endpoint: &str,
    id_of: fn(&Value) -> Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    let limit = PAGE.to_string();
    let mut all: Vec<Value> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut offset: Option<String> = None;
    loop {
        let mut query = vec![("limit", limit.as_str())];
        if let Some(o) = &offset {
            query.push(("offset", o.as_str()));
        }
        let answer = admin.get(endpoint, &query)?;
        let Value::Array(page) = answer else {
            return Err(ApiError::BadAnswer {
                endpoint: endpoint.to_owned(),
                detail: "expected a JSON list".into(),
            });
        };
        let full = page.len() >= PAGE;
        let mut fresh = 0;
        for item in page {
            let Some(id) = id_of(&item).map(str::to_owned) else {
                return Err(ApiError::BadAnswer {
                    endpoint: endpoint.to_owned(),
                    detail: format!("an entry without an id: {item}"),
                });
            };
            if !seen.insert(id.clone()) {
                continue;
            }
            fresh += 1;
            offset = Some(id);
            all.push(item);
        }
        if !full || fresh == 0 {
            return Ok(all);
        }
    }
}

/// Whether Garage answered "no such endpoint" (a Garage 2.x older than the endpoint).
fn unsupported(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::Status {
            status: 400 | 404,
            ..
        }
    )
}

/// Reads the inventory: one `ListKeys` page and one `ListBucketsInfo` page per thousand entries.
pub(crate) fn read(admin: &mut dyn Admin) -> Result<Inventory, ApiError> {
    let keys = pages(admin, "ListKeys", |k| k["id"].as_str())?
        .into_iter()
        .filter_map(|k| {
            Some((
                k["id"].as_str()?.to_owned(),
                k["name"].as_str().unwrap_or("").to_owned(),
            ))
        })
        .collect();
    let buckets = match pages(admin, "ListBucketsInfo", |b| b["id"].as_str()) {
        Ok(list) => Some(
            list.into_iter()
                .flat_map(|b| {
                    let aliases: Vec<String> = b["globalAliases"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.as_str().map(str::to_owned))
                        .collect();
                    aliases.into_iter().map(move |a| (a, b.clone()))
                })
                .collect(),
        ),
        Err(e) if unsupported(&e) => None,
        Err(e) => return Err(e),
    };
    Ok(Inventory { keys, buckets })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A listing of `n` entries served `limit` at a time from `offset` (inclusive), as Garage does.
    struct Pager {
        ids: Vec<String>,
        calls: usize,
        ignore_offset: bool,
    }

    impl Admin for Pager {
        fn get(&mut self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value, ApiError> {
            self.calls += 1;
            let q = |k: &str| query.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
            if endpoint == "ListBucketsInfo" {
                return Err(ApiError::Status {
                    endpoint: endpoint.into(),
                    status: 400,
                    code: "InvalidRequest".into(),
                    message: "unknown API endpoint".into(),
                });
            }
            let limit: usize = q("limit").unwrap().parse().unwrap();
            let start = match q("offset") {
                Some(o) if !self.ignore_offset => {
                    self.ids.iter().position(|i| i.as_str() >= o).unwrap()
                }
                _ => 0,
            };
            Ok(Value::Array(
                self.ids[start..]
                    .iter()
                    .take(limit)
                    .map(|i| json!({ "id": i, "name": format!("n{i}") }))
                    .collect(),
            ))
        }
        fn post(&mut self, _: &str, _: &[(&str, &str)], _: &Value) -> Result<Value, ApiError> {
            unreachable!("reading posts nothing")
        }
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("GK{i:024x}")).collect()
    }

    /// Every entry once, over page boundaries (the offset entry comes twice and is kept once), in
    /// `ceil((n + pages - 1) / PAGE)`-ish calls; and a Garage without `ListBucketsInfo` leaves buckets unknown.
    #[test]
    fn pages_cover_everything_once() {
        for n in [0, 1, PAGE - 1, PAGE, PAGE + 1, 2 * PAGE + 7] {
            let mut p = Pager {
                ids: ids(n),
                calls: 0,
                ignore_offset: false,
            };
            let inv = read(&mut p).unwrap();
            assert_eq!(inv.keys.len(), n, "n = {n}");
            assert_eq!(inv.keys.keys().cloned().collect::<Vec<_>>(), ids(n));
            assert!(p.calls <= n / (PAGE - 1) + 2, "n = {n}: {} calls", p.calls);
            assert_eq!(inv.bucket("x"), BucketState::Unknown);
        }
    }

    /// A Garage that ignores `offset` would serve the first page forever: the listing stops.
    #[test]
    fn a_garage_ignoring_offset_ends_the_listing() {
        let mut p = Pager {
            ids: ids(PAGE + 5),
            calls: 0,
            ignore_offset: true,
        };
        let inv = read(&mut p).unwrap();
        assert_eq!(inv.keys.len(), PAGE);
        assert!(p.calls <= 3);
    }
}
