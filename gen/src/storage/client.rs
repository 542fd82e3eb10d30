//! A small blocking client of Garage's admin API v2 (`http://<admin.api_bind_addr>/v2/<Endpoint>`, JSON, a
//! bearer token).
//!
//! Why our own thin layer over `ureq`: `apply` needs exactly a dozen endpoints, Garage's error bodies
//! (`{"code", "message"}`) turned into messages for people, a clear line between "Garage is unreachable"
//! (exit status 3) and "Garage refused" (1), and a count of the calls that change something, which is how a
//! second run is proven to be a no-op. The [`Admin`] trait lets the unit tests drive `apply` without Garage.

use std::time::Duration;

use serde_json::Value;

/// What a call to the admin API can end with besides an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// No HTTP answer: refused connection, timeout, unresolvable host.
    Unreachable {
        /// The URL called.
        url: String,
        /// Why, as the HTTP library says it.
        detail: String,
    },
    /// Garage answered with an error status.
    Status {
        /// The endpoint called (`GetBucketInfo`).
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// Garage's error code (`NoSuchBucket`), or empty.
        code: String,
        /// Garage's message, or the body.
        message: String,
    },
    /// Garage answered 2xx with a body that is not the JSON expected.
    BadAnswer {
        /// The endpoint called.
        endpoint: String,
        /// What did not parse.
        detail: String,
    },
}

impl ApiError {
    /// Whether this is Garage's "no such bucket / key" (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Status { status: 404, .. })
    }

    /// Whether this is Garage's "already exists" (HTTP 409).
    pub fn is_conflict(&self) -> bool {
        matches!(self, ApiError::Status { status: 409, .. })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Unreachable { url, detail } => {
                write!(f, "Garage's admin API at {url} is unreachable: {detail}")
            }
            ApiError::Status {
                endpoint,
                status,
                code,
                message,
            } => {
                write!(f, "Garage refused {endpoint} (HTTP {status}")?;
                if !code.is_empty() {
                    write!(f, ", {code}")?;
                }
                write!(f, "): {}", message.trim())
            }
            ApiError::BadAnswer { endpoint, detail } => {
                write!(
                    f,
                    "Garage's answer to {endpoint} is not what fedigen expects: {detail}"
                )
            }
        }
    }
}

/// The admin API as `apply` uses it: GETs that read, POSTs that change.
pub trait Admin {
    /// `GET /v2/<endpoint>?<query>`.
    fn get(&mut self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value, ApiError>;
    /// `POST /v2/<endpoint>?<query>` with a JSON body: every call that may change the cluster goes here.
    fn post(
        &mut self,
        endpoint: &str,
        query: &[(&str, &str)],
        body: &Value,
    ) -> Result<Value, ApiError>;
}

/// A borrowed client is a client: `apply_with` takes boxed clients, and the caller keeps the owned ones to
/// read their counts afterwards.
impl<A: Admin + ?Sized> Admin for &mut A {
    fn get(&mut self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value, ApiError> {
        (**self).get(endpoint, query)
    }

    fn post(
        &mut self,
        endpoint: &str,
        query: &[(&str, &str)],
        body: &Value,
    ) -> Result<Value, ApiError> {
        (**self).post(endpoint, query, body)
    }
}

/// The real client: HTTP to one Garage node's admin port.
pub struct HttpAdmin {
    agent: ureq::Agent,
    base: String,
    token: String,
    /// How many POSTs were sent (each may change the cluster).
    pub posts: usize,
}

impl HttpAdmin {
    /// A client of the admin API at `base` (`http://127.0.0.1:3903`) with the bearer `token`.
    pub fn new(base: &str, token: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        HttpAdmin {
            agent,
            base: base.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
            posts: 0,
        }
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/v2/{endpoint}", self.base)
    }

    fn answer(
        &self,
        endpoint: &str,
        url: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, ApiError> {
        let mut response = result.map_err(|e| ApiError::Unreachable {
            url: url.to_owned(),
            detail: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| ApiError::Unreachable {
                url: url.to_owned(),
                detail: e.to_string(),
            })?;
        if (200..300).contains(&status) {
            if body.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&body).map_err(|e| ApiError::BadAnswer {
                endpoint: endpoint.to_owned(),
                detail: e.to_string(),
            });
        }
        let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let text = |field: &str| parsed[field].as_str().map(str::to_owned);
        Err(ApiError::Status {
            endpoint: endpoint.to_owned(),
            status,
            code: text("code").unwrap_or_default(),
            message: text("message").unwrap_or(body),
        })
    }
}

impl Admin for HttpAdmin {
    fn get(&mut self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value, ApiError> {
        let url = self.url(endpoint);
        let mut request = self
            .agent
            .get(&url)
            .header("Authorization", &format!("Bearer {}", self.token));
        for (k, v) in query {
            request = request.query(*k, *v);
        }
        let result = request.call();
        self.answer(endpoint, &url, result)
    }

    fn post(
        &mut self,
        endpoint: &str,
        query: &[(&str, &str)],
        body: &Value,
    ) -> Result<Value, ApiError> {
        self.posts += 1;
        let url = self.url(endpoint);
        let mut request = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token));
        for (k, v) in query {
            request = request.query(*k, *v);
        }
        let result = request.send_json(body);
        self.answer(endpoint, &url, result)
    }
}
