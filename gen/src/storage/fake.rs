//! An in-memory stand-in for Garage's admin API v2, for unit tests of `apply` without Garage: it keeps a
//! layout (current, staged, version), keys and buckets, answers as Garage 2.5.0 does for the endpoints `apply`
//! uses (404/409 included; Apply with nothing staged still makes a new version), and counts the POSTs.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::apply::{Role, RoleChange};
use super::client::{Admin, ApiError};

/// A bucket: (id, website access, key → [read, write, owner]).
pub(crate) type FakeBucket = (String, bool, BTreeMap<String, [bool; 3]>);

/// The stand-in's state; fields are public to the tests that arrange and inspect it.
#[derive(Default)]
pub(crate) struct FakeGarage {
    pub(crate) up: Vec<String>,
    pub(crate) version: u64,
    pub(crate) roles: BTreeMap<String, Role>,
    pub(crate) zone_redundancy: Value,
    pub(crate) staged: BTreeMap<String, RoleChange>,
    pub(crate) staged_zone_redundancy: Option<Value>,
    /// id → (secret, name)
    pub(crate) keys: BTreeMap<String, (String, String)>,
    /// alias → (id, website, key → [read, write, owner])
    pub(crate) buckets: BTreeMap<String, FakeBucket>,
    pub(crate) posts: Vec<String>,
    /// Every GET, by endpoint (each costs Garage an argon2 verification of the token).
    pub(crate) gets: Vec<String>,
    /// Answer `ListBucketsInfo` with 400, as Garage 2.0 (which lacks it) does.
    pub(crate) no_bucket_listing: bool,
}

fn status(endpoint: &str, status: u16, code: &str) -> ApiError {
    ApiError::Status {
        endpoint: endpoint.into(),
        status,
        code: code.into(),
        message: code.into(),
    }
}

fn role_json(r: &Role) -> Value {
    json!({ "id": r.id, "zone": r.zone, "capacity": r.capacity, "tags": r.tags })
}

impl FakeGarage {
    pub(crate) fn new(up: &[String]) -> Self {
        FakeGarage {
            up: up.to_vec(),
            zone_redundancy: json!("maximum"),
            ..Default::default()
        }
    }

    fn bucket_json(&self, alias: &str) -> Value {
        let (id, website, keys) = &self.buckets[alias];
        json!({
            "id": id, "globalAliases": [alias], "websiteAccess": website,
            "websiteConfig": if *website { json!({ "indexDocument": "index.html", "errorDocument": null }) } else { Value::Null },
            "keys": keys.iter().map(|(k, p)| json!({
                "accessKeyId": k, "name": self.keys.get(k).map_or("", |v| v.1.as_str()),
                "permissions": { "read": p[0], "write": p[1], "owner": p[2] }, "bucketLocalAliases": [],
            })).collect::<Vec<_>>(),
        })
    }

    fn alias_of(&self, id: &str) -> Option<String> {
        self.buckets
            .iter()
            .find(|(_, b)| b.0 == id)
            .map(|(a, _)| a.clone())
    }
}

impl Admin for FakeGarage {
    fn get(&mut self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value, ApiError> {
        let q = |name: &str| {
            query
                .iter()
                .find(|(k, _)| *k == name)
                .map_or("", |(_, v)| *v)
        };
        self.gets.push(endpoint.to_owned());
        let page = |ids: Vec<String>| -> Vec<String> {
            let limit: usize = q("limit").parse().unwrap_or(usize::MAX);
            ids.into_iter()
                .filter(|i| i.as_str() >= q("offset"))
                .take(limit)
                .collect()
        };
        match endpoint {
            "ListKeys" => Ok(Value::Array(
                page(self.keys.keys().cloned().collect())
                    .iter()
                    .map(|id| json!({ "id": id, "name": self.keys[id].1, "expired": false }))
                    .collect(),
            )),
            "ListBucketsInfo" if !self.no_bucket_listing => {
                let by_id: BTreeMap<&str, &str> = self
                    .buckets
                    .iter()
                    .map(|(alias, b)| (b.0.as_str(), alias.as_str()))
                    .collect();
                let ids = page(by_id.keys().map(|i| i.to_string()).collect());
                Ok(Value::Array(
                    ids.iter()
                        .map(|id| self.bucket_json(by_id[id.as_str()]))
                        .collect(),
                ))
            }
            "GetClusterStatus" => Ok(json!({
                "layoutVersion": self.version,
                "nodes": self.up.iter().map(|id| json!({ "id": id, "isUp": true })).collect::<Vec<_>>(),
            })),
            "GetClusterLayout" => Ok(json!({
                "version": self.version,
                "roles": self.roles.values().map(role_json).collect::<Vec<_>>(),
                "parameters": { "zoneRedundancy": self.zone_redundancy },
                "partitionSize": 1024,
                "stagedRoleChanges": self.staged.values().map(|c| match c {
                    RoleChange::Set(r) => role_json(r),
                    RoleChange::Remove(id) => json!({ "id": id, "remove": true }),
                }).collect::<Vec<_>>(),
                "stagedParameters": self.staged_zone_redundancy.as_ref().map(|z| json!({ "zoneRedundancy": z })),
            })),
            "GetClusterHealth" => Ok(json!({
                "status": if self.version > 0 { "healthy" } else { "unavailable" },
            })),
            "GetKeyInfo" => match self.keys.get(q("id")) {
                Some((secret, name)) => Ok(json!({
                    "accessKeyId": q("id"), "name": name,
                    "secretAccessKey": (q("showSecretKey") == "true").then_some(secret),
                })),
                None => Err(status(endpoint, 404, "NoSuchAccessKey")),
            },
            "GetBucketInfo" => {
                if self.buckets.contains_key(q("globalAlias")) {
                    Ok(self.bucket_json(q("globalAlias")))
                } else {
                    Err(status(endpoint, 404, "NoSuchBucket"))
                }
            }
            _ => Err(status(endpoint, 400, "unknown endpoint")),
        }
    }

    fn post(
        &mut self,
        endpoint: &str,
        query: &[(&str, &str)],
        body: &Value,
    ) -> Result<Value, ApiError> {
        self.posts.push(endpoint.to_owned());
        let id = query
            .iter()
            .find(|(k, _)| *k == "id")
            .map_or("", |(_, v)| *v);
        match endpoint {
            "RevertClusterLayout" => {
                self.staged.clear();
                self.staged_zone_redundancy = None;
            }
            "UpdateClusterLayout" => {
                for c in body["roles"].as_array().into_iter().flatten() {
                    let id = c["id"].as_str().unwrap().to_owned();
                    let change = if c["remove"] == true {
                        RoleChange::Remove(id.clone())
                    } else {
                        RoleChange::Set(serde_json::from_value(c.clone()).unwrap())
                    };
                    self.staged.insert(id, change);
                }
                if let Some(z) = body["parameters"].get("zoneRedundancy") {
                    self.staged_zone_redundancy = Some(z.clone());
                }
            }
            "ApplyClusterLayout" => {
                if body["version"] != self.version + 1 {
                    return Err(status(endpoint, 500, "InternalError"));
                }
                for (id, c) in std::mem::take(&mut self.staged) {
                    match c {
                        RoleChange::Set(r) => {
                            self.roles.insert(id, r);
                        }
                        RoleChange::Remove(_) => {
                            self.roles.remove(&id);
                        }
                    }
                }
                if let Some(z) = self.staged_zone_redundancy.take() {
                    self.zone_redundancy = z;
                }
                // As Garage: a new version even when nothing was staged.
                self.version += 1;
            }
            "ImportKey" => {
                let id = body["accessKeyId"].as_str().unwrap().to_owned();
                if self.keys.contains_key(&id) {
                    return Err(status(endpoint, 409, "KeyAlreadyExists"));
                }
                let secret = body["secretAccessKey"].as_str().unwrap().to_owned();
                let name = body["name"].as_str().unwrap_or("").to_owned();
                self.keys.insert(id, (secret, name));
            }
            "UpdateKey" => {
                let name = body["name"].as_str().unwrap().to_owned();
                self.keys.get_mut(id).unwrap().1 = name;
            }
            "CreateBucket" => {
                let alias = body["globalAlias"].as_str().unwrap().to_owned();
                if self.buckets.contains_key(&alias) {
                    return Err(status(endpoint, 409, "BucketAlreadyExists"));
                }
                let bid = format!("{:064x}", self.buckets.len() + 1);
                self.buckets
                    .insert(alias.clone(), (bid, false, BTreeMap::new()));
                return Ok(self.bucket_json(&alias));
            }
            "UpdateBucket" => {
                let alias = self.alias_of(id).unwrap();
                self.buckets.get_mut(&alias).unwrap().1 = body["websiteAccess"]["enabled"] == true;
            }
            "AllowBucketKey" | "DenyBucketKey" => {
                let alias = self.alias_of(body["bucketId"].as_str().unwrap()).unwrap();
                let key = body["accessKeyId"].as_str().unwrap().to_owned();
                let p = &body["permissions"];
                let entry = self
                    .buckets
                    .get_mut(&alias)
                    .unwrap()
                    .2
                    .entry(key)
                    .or_default();
                for (i, f) in ["read", "write", "owner"].iter().enumerate() {
                    if p[*f] == true {
                        entry[i] = endpoint == "AllowBucketKey";
                    }
                }
            }
            _ => return Err(status(endpoint, 400, "unknown endpoint")),
        }
        Ok(json!({}))
    }
}

/// A handle on one stand-in shared by several clients, for `apply_with`'s parallel jobs.
#[derive(Clone)]
pub(crate) struct Shared(pub(crate) std::sync::Arc<std::sync::Mutex<FakeGarage>>);

impl Admin for Shared {
    fn get(&mut self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value, ApiError> {
        self.0.lock().unwrap().get(endpoint, query)
    }

    fn post(
        &mut self,
        endpoint: &str,
        query: &[(&str, &str)],
        body: &Value,
    ) -> Result<Value, ApiError> {
        self.0.lock().unwrap().post(endpoint, query, body)
    }
}
