//! The typed HTTP client of the control plane: one method per endpoint of the Meltano
//! Cloud API v1 and of the GitOps extensions.
//!
//! Every call goes through [`Client::execute`], which adds the bearer token and the
//! `User-Agent`, bounds the number of requests in flight, counts requests, and retries
//! with exponential backoff and jitter where a retry cannot do harm:
//! - a connection that could not be made (the request never left) is retried for any call;
//! - 429, 5xx, timeouts and connections dropped mid-answer are retried only for calls that
//!   are idempotent (GET, PUT, DELETE, and POSTs whose effect is the same when repeated,
//!   marked explicitly); `Retry-After` is honoured.
//!
//! Errors are [`ApiError`]s: a miette diagnostic naming the request and what to do.

mod error;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

pub use error::{ApiError, ApiErrorKind, ApiResult, RequestInfo};

use crate::api::types::*;

/// `User-Agent` of every request.
pub const USER_AGENT_VALUE: &str = concat!("meltano-cloud/", env!("CARGO_PKG_VERSION"));

/// Requests in flight at once, by default.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// How failed calls are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retrying).
    pub max_retries: u32,
    /// Delay before the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// Upper bound of one computed delay.
    pub max_delay: Duration,
    /// Upper bound of a server's `Retry-After`, so a bad header cannot hang the client.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// Delay before retry number `retry` (1-based): exponential, with "equal jitter" so
    /// that many clients failing together do not retry in lockstep.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_retry_after);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max_delay);
        let half = exp / 2;
        let jitter = rand::thread_rng().gen_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter)
    }
}

/// Whether a call may be sent again after a failure that may have reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Repeating the call has the same effect as sending it once.
    Idempotent,
    /// Only retried when the connection could not be made (the request never left).
    ConnectOnly,
}

/// Builds a [`Client`].
#[derive(Clone)]
pub struct ClientBuilder {
    base_url: String,
    token: Option<Zeroizing<String>>,
    connect_timeout: Duration,
    timeout: Duration,
    retry: RetryPolicy,
    concurrency: usize,
    trace: bool,
}

impl ClientBuilder {
    /// Print one line per HTTP request on stderr (method, path, status, time); never
    /// headers, query strings or bodies.
    pub fn trace(mut self, on: bool) -> Self {
        self.trace = on;
        self
    }
    pub fn token(mut self, token: Option<impl Into<String>>) -> Self {
        self.token = token.map(|t| Zeroizing::new(t.into()));
        self
    }
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Timeout of one whole request (deploys resolve git, so keep it generous).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
    /// Requests in flight at once (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    pub fn build(self) -> ApiResult<Client> {
        let invalid = |message: String| ApiError {
            request: Box::new(RequestInfo {
                method: String::new(),
                url: self.base_url.clone(),
                action: "set up the API client".into(),
                subject: None,
            }),
            kind: ApiErrorKind::InvalidUrl { message },
            attempts: 0,
            hint: None,
        };
        let base = Url::parse(self.base_url.trim())
            .map_err(|e| invalid(format!("`{}`: {e}", self.base_url)))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "`{}` is not an http(s) URL",
                self.base_url
            )));
        }
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, "application/json".parse().expect("static header"));
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT_VALUE)
            .default_headers(headers)
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .build()
            .map_err(|e| invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                token: self.token,
                retry: self.retry,
                concurrency: self.concurrency,
                limiter: Semaphore::new(self.concurrency),
                requests: AtomicU64::new(0),
                trace: self.trace,
            }),
        })
    }
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    token: Option<Zeroizing<String>>,
    retry: RetryPolicy,
    concurrency: usize,
    limiter: Semaphore,
    requests: AtomicU64,
    trace: bool,
}

/// A cheap-to-clone handle on one control plane, with one token.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base.as_str())
            .field(
                "token",
                &self.inner.token.as_ref().map(|_| "(sensitive value)"),
            )
            .field("concurrency", &self.inner.concurrency)
            .finish()
    }
}

/// The items of one or more pages, and whether the server has more.
#[derive(Debug, Clone, PartialEq)]
pub struct Paged<T> {
    pub items: Vec<T>,
    /// True when the limit stopped the listing before the last page.
    pub more: bool,
}

/// One call, before it is sent.
struct Call {
    method: Method,
    segments: Vec<String>,
    trailing_slash: bool,
    query: Vec<(&'static str, String)>,
    /// Serialized once; zeroized on drop because secret values travel in bodies.
    body: Option<Zeroizing<Vec<u8>>>,
    retry: Retry,
    action: String,
    subject: Option<String>,
}

impl Call {
    fn new(method: Method, segments: &[&str], action: impl Into<String>) -> Self {
        let retry = if method == Method::POST || method == Method::PATCH {
            Retry::ConnectOnly
        } else {
            Retry::Idempotent
        };
        Call {
            method,
            segments: segments.iter().map(|s| s.to_string()).collect(),
            trailing_slash: false,
            query: Vec::new(),
            body: None,
            retry,
            action: action.into(),
            subject: None,
        }
    }
    fn get(segments: &[&str], action: impl Into<String>) -> Self {
        Call::new(Method::GET, segments, action)
    }
    fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }
    fn trailing_slash(mut self) -> Self {
        self.trailing_slash = true;
        self
    }
    fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }
    fn query(mut self, key: &'static str, value: Option<impl ToString>) -> Self {
        if let Some(v) = value {
            self.query.push((key, v.to_string()));
        }
        self
    }
    fn page(self, page: &PageQuery) -> Self {
        self.query("page_size", page.page_size)
            .query("page_token", page.page_token.as_ref())
    }
    fn json<B: Serialize + ?Sized>(mut self, body: &B) -> Self {
        // Serializing our own wire types cannot fail (string keys, no non-finite floats).
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.body = Some(Zeroizing::new(bytes));
        self
    }
}

fn innermost_message(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

impl Client {
    /// A builder with the defaults: 10 s connect timeout, 120 s request timeout, 4 retries,
    /// [`DEFAULT_CONCURRENCY`] requests in flight.
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            token: None,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            concurrency: DEFAULT_CONCURRENCY,
            trace: false,
        }
    }

    /// A client with the defaults.
    pub fn new(base_url: impl Into<String>, token: Option<String>) -> ApiResult<Client> {
        Client::builder(base_url).token(token).build()
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.inner.base.as_str().trim_end_matches('/')
    }

    /// Whether a token is sent.
    pub fn has_token(&self) -> bool {
        self.inner.token.is_some()
    }

    /// HTTP requests sent so far by this client and its clones (each retry counts).
    pub fn requests_made(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Requests this client keeps in flight at most.
    pub fn concurrency(&self) -> usize {
        self.inner.concurrency
    }

    /// Runs `f` over `items` with at most [`Client::concurrency`] calls at once; the
    /// results come back in the order of `items`.
    pub async fn map_bounded<I, F, Fut, T>(&self, items: I, f: F) -> Vec<T>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future<Output = T>,
    {
        map_bounded(self.inner.concurrency, items, f).await
    }

    fn url(&self, call: &Call) -> Result<Url, String> {
        let mut url = self.inner.base.clone();
        {
            let mut segs = url
                .path_segments_mut()
                .map_err(|_| "the base URL cannot take a path".to_string())?;
            segs.pop_if_empty();
            segs.extend(call.segments.iter());
            if call.trailing_slash {
                segs.push("");
            }
        }
        Ok(url)
    }

    /// Sends a call with retries; returns the status and body of a 2xx answer.
    async fn execute(&self, call: Call) -> ApiResult<(StatusCode, Vec<u8>)> {
        let mut info = RequestInfo {
            method: call.method.to_string(),
            url: String::new(),
            action: call.action.clone(),
            subject: call.subject.clone(),
        };
        let mut url = match self.url(&call) {
            Ok(url) => url,
            Err(message) => {
                info.url = self.base_url().to_string();
                return Err(ApiError {
                    request: Box::new(info),
                    kind: ApiErrorKind::InvalidUrl { message },
                    attempts: 0,
                    hint: None,
                });
            }
        };
        info.url = url.to_string();
        if !call.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &call.query {
                pairs.append_pair(k, v);
            }
        }
        let policy = self.inner.retry;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let may_retry = attempt <= policy.max_retries;
            let started = std::time::Instant::now();
            let outcome = {
                let _permit = self.inner.limiter.acquire().await;
                self.inner.requests.fetch_add(1, Ordering::Relaxed);
                let mut rb = self.inner.http.request(call.method.clone(), url.clone());
                if let Some(token) = &self.inner.token {
                    // bearer_auth marks the header sensitive, so it never shows in debug output.
                    rb = rb.bearer_auth(token.as_str());
                }
                if let Some(body) = &call.body {
                    rb = rb
                        .header(CONTENT_TYPE, "application/json")
                        .body(body.to_vec());
                }
                match rb.send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        let retry_after = parse_retry_after(resp.headers());
                        match resp.bytes().await {
                            Ok(bytes) => Ok((status, retry_after, bytes.to_vec())),
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            };
            if self.inner.trace {
                let result = match &outcome {
                    Ok((status, _, _)) => status.as_u16().to_string(),
                    Err(e) if e.is_connect() => "connection failed".to_string(),
                    Err(e) if e.is_timeout() => "timed out".to_string(),
                    Err(_) => "transport error".to_string(),
                };
                eprintln!(
                    "http: {} {} -> {result} in {} ms (attempt {attempt})",
                    call.method,
                    info.url,
                    started.elapsed().as_millis()
                );
            }
            match outcome {
                Ok((status, _, bytes)) if status.is_success() => return Ok((status, bytes)),
                Ok((status, retry_after, bytes)) => {
                    let retryable = (status == StatusCode::TOO_MANY_REQUESTS
                        || status.is_server_error())
                        && call.retry == Retry::Idempotent;
                    if retryable && may_retry {
                        tokio::time::sleep(policy.delay(attempt, retry_after)).await;
                        continue;
                    }
                    return Err(status_error(info, status, &bytes, attempt));
                }
                Err(e) => {
                    let message = innermost_message(&e);
                    let (kind, retryable) = if e.is_connect() {
                        (ApiErrorKind::Connect { message }, true)
                    } else if e.is_timeout() {
                        (ApiErrorKind::Timeout, call.retry == Retry::Idempotent)
                    } else {
                        (
                            ApiErrorKind::Transport { message },
                            call.retry == Retry::Idempotent,
                        )
                    };
                    if retryable && may_retry {
                        tokio::time::sleep(policy.delay(attempt, None)).await;
                        continue;
                    }
                    return Err(ApiError {
                        request: Box::new(info),
                        kind,
                        attempts: attempt,
                        hint: None,
                    });
                }
            }
        }
    }

    async fn send<T: DeserializeOwned>(&self, call: Call) -> ApiResult<T> {
        match self.send_opt(call).await? {
            (Some(v), _) => Ok(v),
            (None, info) => Err(ApiError {
                request: Box::new(info),
                kind: ApiErrorKind::Decode {
                    message: "empty answer where a JSON body was expected".into(),
                },
                attempts: 1,
                hint: None,
            }),
        }
    }

    /// Like `send`, but an empty answer (204) is `None`.
    async fn send_opt<T: DeserializeOwned>(
        &self,
        call: Call,
    ) -> ApiResult<(Option<T>, RequestInfo)> {
        let info = RequestInfo {
            method: call.method.to_string(),
            url: self
                .url(&call)
                .map(|u| u.to_string())
                .unwrap_or_else(|_| self.base_url().to_string()),
            action: call.action.clone(),
            subject: call.subject.clone(),
        };
        let (status, bytes) = self.execute(call).await?;
        if status == StatusCode::NO_CONTENT || bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok((None, info));
        }
        match serde_json::from_slice(&bytes) {
            Ok(v) => Ok((Some(v), info)),
            Err(e) => Err(ApiError {
                request: Box::new(info),
                kind: ApiErrorKind::Decode {
                    message: e.to_string(),
                },
                attempts: 1,
                hint: None,
            }),
        }
    }

    async fn send_unit(&self, call: Call) -> ApiResult<()> {
        self.execute(call).await.map(|_| ())
    }

    // ------------------------------------------------------------ service

    /// `GET /api/v1/health`.
    pub async fn health(&self) -> ApiResult<Health> {
        self.send(Call::get(
            &["api", "v1", "health"],
            "check the control plane's health",
        ))
        .await
    }

    /// `GET /gitops/v1/whoami`: the organization and role of the token.
    pub async fn whoami(&self) -> ApiResult<WhoAmI> {
        self.send(Call::get(&["gitops", "v1", "whoami"], "identify the token"))
            .await
    }

    // ------------------------------------------------------------ projects

    /// `GET /projects/v1/{org}`: one page of projects.
    pub async fn list_projects(&self, org: &str, query: &ProjectQuery) -> ApiResult<Page<Project>> {
        let call = Call::get(&["projects", "v1", org], "list projects")
            .subject(format!("organization `{org}`"))
            .query("project_id", query.project_id.as_ref())
            .query("project_name", query.project_name.as_ref())
            .query("page_size", query.page_size)
            .query("page_token", query.page_token.as_ref());
        self.send(call).await
    }

    /// Every project of `org`, up to `limit`.
    pub async fn all_projects(&self, org: &str, limit: Option<usize>) -> ApiResult<Paged<Project>> {
        collect_pages(limit, |page| {
            let q = ProjectQuery {
                page_size: page.page_size,
                page_token: page.page_token,
                ..ProjectQuery::default()
            };
            async move { self.list_projects(org, &q).await }
        })
        .await
    }

    /// The project with this name, or else this id; `None` when neither exists.
    pub async fn find_project(&self, org: &str, name_or_id: &str) -> ApiResult<Option<Project>> {
        let by_name = ProjectQuery {
            project_name: Some(name_or_id.to_string()),
            ..ProjectQuery::default()
        };
        let page = self.list_projects(org, &by_name).await?;
        if let Some(p) = page
            .results
            .into_iter()
            .find(|p| p.project_name == name_or_id)
        {
            return Ok(Some(p));
        }
        let by_id = ProjectQuery {
            project_id: Some(name_or_id.to_string()),
            ..ProjectQuery::default()
        };
        let page = self.list_projects(org, &by_id).await?;
        Ok(page
            .results
            .into_iter()
            .find(|p| p.project_id == name_or_id))
    }

    /// `POST /projects/v1/{org}` (409 when the name exists).
    pub async fn create_project(&self, org: &str, body: &CreateProject) -> ApiResult<Project> {
        let call = Call::new(
            Method::POST,
            &["projects", "v1", org],
            format!("create project `{}`", body.project_name),
        )
        .json(body);
        self.send(call).await
    }

    // ------------------------------------------------------------ deployments

    /// `GET /deployments/v1/{org}/{pid}`: one page.
    pub async fn list_deployments(
        &self,
        org: &str,
        pid: &str,
        page: &PageQuery,
    ) -> ApiResult<Page<Deployment>> {
        let call = Call::get(&["deployments", "v1", org, pid], "list deployments")
            .subject(format!("project `{pid}`"))
            .page(page);
        self.send(call).await
    }

    /// Every deployment of the project, up to `limit`.
    pub async fn all_deployments(
        &self,
        org: &str,
        pid: &str,
        limit: Option<usize>,
    ) -> ApiResult<Paged<Deployment>> {
        collect_pages(limit, |page| async move {
            self.list_deployments(org, pid, &page).await
        })
        .await
    }

    /// `GET /deployments/v1/{org}/{pid}/{name}`.
    pub async fn get_deployment(&self, org: &str, pid: &str, name: &str) -> ApiResult<Deployment> {
        let call = Call::get(
            &["deployments", "v1", org, pid, name],
            format!("get deployment `{name}`"),
        )
        .subject(format!("deployment `{name}`"));
        self.send(call).await
    }

    /// `POST /deployments/v1/{org}/{pid}/{name}`: creates or updates the deployment and
    /// deploys the latest commit of its rev. `None` when nothing changed (204).
    ///
    /// Retried like an idempotent call: the request states the whole desired deployment,
    /// so sending it twice leaves the same state as sending it once.
    pub async fn deploy(
        &self,
        org: &str,
        pid: &str,
        name: &str,
        body: &DeploymentRequest,
        query: &DeployQuery,
    ) -> ApiResult<Option<Deployment>> {
        let call = Call::new(
            Method::POST,
            &["deployments", "v1", org, pid, name],
            format!("deploy `{name}`"),
        )
        .retry(Retry::Idempotent)
        .query("force", query.force)
        .query("preserve_git_hash", query.preserve_git_hash)
        .json(body);
        Ok(self.send_opt(call).await?.0)
    }

    /// `DELETE /deployments/v1/{org}/{pid}/{name}`.
    pub async fn delete_deployment(&self, org: &str, pid: &str, name: &str) -> ApiResult<()> {
        let call = Call::new(
            Method::DELETE,
            &["deployments", "v1", org, pid, name],
            format!("delete deployment `{name}`"),
        )
        .subject(format!("deployment `{name}`"));
        self.send_unit(call).await
    }

    // ------------------------------------------------------------ schedules

    /// `GET /schedules/v1/{org}/{pid}[/{deployment}]`: one page.
    pub async fn list_schedules(
        &self,
        org: &str,
        pid: &str,
        deployment: Option<&str>,
        page: &PageQuery,
    ) -> ApiResult<Page<Schedule>> {
        let mut segs = vec!["schedules", "v1", org, pid];
        let subject = match deployment {
            Some(d) => {
                segs.push(d);
                format!("deployment `{d}`")
            }
            None => format!("project `{pid}`"),
        };
        let call = Call::get(&segs, "list schedules")
            .subject(subject)
            .page(page);
        self.send(call).await
    }

    /// Every schedule (of one deployment, or of all), up to `limit`.
    pub async fn all_schedules(
        &self,
        org: &str,
        pid: &str,
        deployment: Option<&str>,
        limit: Option<usize>,
    ) -> ApiResult<Paged<Schedule>> {
        collect_pages(limit, |page| async move {
            self.list_schedules(org, pid, deployment, &page).await
        })
        .await
    }

    /// `GET /schedules/v1/{org}/{pid}/{deployment}/{schedule}`.
    pub async fn get_schedule(
        &self,
        org: &str,
        pid: &str,
        deployment: &str,
        schedule: &str,
    ) -> ApiResult<Schedule> {
        let call = Call::get(
            &["schedules", "v1", org, pid, deployment, schedule],
            format!("get schedule `{schedule}` of deployment `{deployment}`"),
        )
        .subject(format!(
            "schedule `{schedule}` on deployment `{deployment}`"
        ));
        self.send(call).await
    }

    /// `PUT /schedules/v1/{org}/{pid}/{deployment}/{schedule}/enabled`.
    pub async fn set_schedule_enabled(
        &self,
        org: &str,
        pid: &str,
        deployment: &str,
        schedule: &str,
        enabled: bool,
    ) -> ApiResult<()> {
        let verb = if enabled { "enable" } else { "disable" };
        let call = Call::new(
            Method::PUT,
            &["schedules", "v1", org, pid, deployment, schedule, "enabled"],
            format!("{verb} schedule `{schedule}` on deployment `{deployment}`"),
        )
        .subject(format!(
            "schedule `{schedule}` on deployment `{deployment}`"
        ))
        .json(&enabled);
        self.send_unit(call).await
    }

    // ------------------------------------------------------------ secrets

    /// `GET /secrets/v1/{org}/{pid}/`: one page of names (and fingerprints).
    pub async fn list_secrets(
        &self,
        org: &str,
        pid: &str,
        page: &PageQuery,
    ) -> ApiResult<Page<SecretInfo>> {
        let call = Call::get(&["secrets", "v1", org, pid], "list secrets")
            .subject(format!("project `{pid}`"))
            .trailing_slash()
            .page(page);
        self.send(call).await
    }

    /// Every secret name, up to `limit`.
    pub async fn all_secrets(
        &self,
        org: &str,
        pid: &str,
        limit: Option<usize>,
    ) -> ApiResult<Paged<SecretInfo>> {
        collect_pages(limit, |page| async move {
            self.list_secrets(org, pid, &page).await
        })
        .await
    }

    /// `PUT /secrets/v1/{org}/{pid}/`. The value travels only in the body.
    pub async fn set_secret(&self, org: &str, pid: &str, body: &SetSecret) -> ApiResult<()> {
        let call = Call::new(
            Method::PUT,
            &["secrets", "v1", org, pid],
            format!("set secret `{}`", body.name),
        )
        .trailing_slash()
        .json(body);
        self.send_unit(call).await
    }

    /// `DELETE /secrets/v1/{org}/{pid}/{name}`.
    pub async fn delete_secret(&self, org: &str, pid: &str, name: &str) -> ApiResult<()> {
        let call = Call::new(
            Method::DELETE,
            &["secrets", "v1", org, pid, name],
            format!("delete secret `{name}`"),
        )
        .subject(format!("secret `{name}`"));
        self.send_unit(call).await
    }

    // ------------------------------------------------------------ executions

    /// `POST /run/v1/external/{org}/{pid}/{deployment}/{job_or_schedule}`. Never retried
    /// once sent: a repeat would start a second run.
    pub async fn run(
        &self,
        org: &str,
        pid: &str,
        deployment: &str,
        job_or_schedule: &str,
    ) -> ApiResult<RunResponse> {
        let call = Call::new(
            Method::POST,
            &[
                "run",
                "v1",
                "external",
                org,
                pid,
                deployment,
                job_or_schedule,
            ],
            format!("run `{job_or_schedule}` on deployment `{deployment}`"),
        )
        .subject(format!("deployment `{deployment}`"));
        self.send(call).await
    }

    /// `GET /jobs/v1/{org}/{pid}`: one page of executions, newest first.
    pub async fn history(
        &self,
        org: &str,
        pid: &str,
        query: &HistoryQuery,
    ) -> ApiResult<Page<Execution>> {
        let call = Call::get(&["jobs", "v1", org, pid], "list executions")
            .subject(format!("project `{pid}`"))
            .query("schedule", query.schedule.as_ref())
            .query("deployment", query.deployment.as_ref())
            .query("result", query.result.as_ref())
            .query("start_time", query.start_time.as_ref())
            .query("page_size", query.page_size)
            .query("page_token", query.page_token.as_ref());
        self.send(call).await
    }

    /// Executions matching `query`, up to `limit`.
    pub async fn all_history(
        &self,
        org: &str,
        pid: &str,
        query: &HistoryQuery,
        limit: Option<usize>,
    ) -> ApiResult<Paged<Execution>> {
        collect_pages(limit, |page| {
            let q = HistoryQuery {
                page_size: page.page_size,
                page_token: page.page_token,
                ..query.clone()
            };
            async move { self.history(org, pid, &q).await }
        })
        .await
    }

    /// `DELETE /jobs/v1/{org}/{pid}/{execution_id}`: stops a running execution.
    pub async fn stop(&self, org: &str, pid: &str, execution_id: &str) -> ApiResult<StopResponse> {
        let call = Call::new(
            Method::DELETE,
            &["jobs", "v1", org, pid, execution_id],
            format!("stop execution `{execution_id}`"),
        )
        .subject(format!("execution `{execution_id}`"));
        self.send(call).await
    }

    /// `GET /logs/v1/{org}/{pid}/tail/{execution_id}`: one page of log lines.
    pub async fn logs(
        &self,
        org: &str,
        pid: &str,
        execution_id: &str,
        page_token: Option<&str>,
    ) -> ApiResult<Page<LogLine>> {
        let call = Call::get(
            &["logs", "v1", org, pid, "tail", execution_id],
            format!("read the logs of execution `{execution_id}`"),
        )
        .subject(format!("execution `{execution_id}`"))
        .query("page_token", page_token);
        self.send(call).await
    }

    // ------------------------------------------------------------ GitOps

    /// `GET /gitops/v1/{org}/{pid}/snapshot`: the whole state of a project in one call.
    pub async fn snapshot(&self, org: &str, pid: &str) -> ApiResult<Snapshot> {
        let call = Call::get(
            &["gitops", "v1", org, pid, "snapshot"],
            "read the project's state",
        )
        .subject(format!("project `{pid}`"));
        self.send(call).await
    }

    /// `POST /gitops/v1/{org}/{pid}/lock`. On 409 the error carries the holder
    /// ([`ApiError::lock_holder`]).
    ///
    /// Retried like an idempotent call: the lock id is chosen by the client, so a repeat
    /// of a request whose answer was lost finds the lock already ours.
    pub async fn acquire_lock(
        &self,
        org: &str,
        pid: &str,
        body: &LockRequest,
    ) -> ApiResult<LockInfo> {
        let call = Call::new(
            Method::POST,
            &["gitops", "v1", org, pid, "lock"],
            "acquire the project lock",
        )
        .retry(Retry::Idempotent)
        .json(body);
        self.send(call).await
    }

    /// `PUT /gitops/v1/{org}/{pid}/lock/{lock_id}`: extends a held lock.
    pub async fn renew_lock(
        &self,
        org: &str,
        pid: &str,
        lock_id: &str,
        body: &LockRenewal,
    ) -> ApiResult<Option<LockInfo>> {
        let call = Call::new(
            Method::PUT,
            &["gitops", "v1", org, pid, "lock", lock_id],
            format!("renew lock `{lock_id}`"),
        )
        .subject(format!("lock `{lock_id}`"))
        .json(body);
        Ok(self.send_opt(call).await?.0)
    }

    /// `DELETE /gitops/v1/{org}/{pid}/lock/{lock_id}`: releases our lock.
    pub async fn release_lock(&self, org: &str, pid: &str, lock_id: &str) -> ApiResult<()> {
        let call = Call::new(
            Method::DELETE,
            &["gitops", "v1", org, pid, "lock", lock_id],
            format!("release lock `{lock_id}`"),
        )
        .subject(format!("lock `{lock_id}`"));
        self.send_unit(call).await
    }

    /// `DELETE /gitops/v1/{org}/{pid}/lock/{lock_id}?force=true`: removes a lock held by
    /// someone else.
    pub async fn force_unlock(&self, org: &str, pid: &str, lock_id: &str) -> ApiResult<()> {
        let call = Call::new(
            Method::DELETE,
            &["gitops", "v1", org, pid, "lock", lock_id],
            format!("force-unlock lock `{lock_id}`"),
        )
        .subject(format!("lock `{lock_id}`"))
        .query("force", Some(true));
        self.send_unit(call).await
    }

    /// `POST /gitops/v1/{org}/{pid}/audit`. Not retried once sent (it would record twice).
    pub async fn add_audit(
        &self,
        org: &str,
        pid: &str,
        record: &NewAuditRecord,
    ) -> ApiResult<AuditRecord> {
        let call = Call::new(
            Method::POST,
            &["gitops", "v1", org, pid, "audit"],
            "record the apply in the audit log",
        )
        .json(record);
        self.send(call).await
    }

    /// `GET /gitops/v1/{org}/{pid}/audit`: one page of audit records.
    pub async fn list_audit(
        &self,
        org: &str,
        pid: &str,
        page: &PageQuery,
    ) -> ApiResult<Page<AuditRecord>> {
        let call = Call::get(&["gitops", "v1", org, pid, "audit"], "list audit records")
            .subject(format!("project `{pid}`"))
            .page(page);
        self.send::<ListOrPage<AuditRecord>>(call)
            .await
            .map(ListOrPage::into_page)
    }

    /// `POST /gitops/v1/{org}/tokens`: the answer holds the only copy of the new token.
    pub async fn create_token(&self, org: &str, body: &CreateToken) -> ApiResult<CreatedToken> {
        let call = Call::new(
            Method::POST,
            &["gitops", "v1", org, "tokens"],
            "create a token",
        )
        .json(body);
        self.send(call).await
    }

    /// `GET /gitops/v1/{org}/tokens`.
    pub async fn list_tokens(&self, org: &str, page: &PageQuery) -> ApiResult<Page<TokenInfo>> {
        let call = Call::get(&["gitops", "v1", org, "tokens"], "list tokens")
            .subject(format!("organization `{org}`"))
            .page(page);
        self.send::<ListOrPage<TokenInfo>>(call)
            .await
            .map(ListOrPage::into_page)
    }

    /// `DELETE /gitops/v1/{org}/tokens/{token_id}`.
    pub async fn revoke_token(&self, org: &str, token_id: &str) -> ApiResult<()> {
        let call = Call::new(
            Method::DELETE,
            &["gitops", "v1", org, "tokens", token_id],
            format!("revoke token `{token_id}`"),
        )
        .subject(format!("token `{token_id}`"));
        self.send_unit(call).await
    }
}

/// Accepts a bare list where a page is expected, for routes that do not page.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum ListOrPage<T> {
    Page(Page<T>),
    List(Vec<T>),
}

impl<T> ListOrPage<T> {
    fn into_page(self) -> Page<T> {
        match self {
            ListOrPage::Page(p) => p,
            ListOrPage::List(results) => Page {
                results,
                pagination: None,
            },
        }
    }
}

fn status_error(info: RequestInfo, status: StatusCode, body: &[u8], attempts: u32) -> ApiError {
    let (detail, lock) = match serde_json::from_slice::<LockConflict>(body) {
        Ok(conflict) => (conflict.detail, Some(Box::new(conflict.lock))),
        Err(_) => match serde_json::from_slice::<ErrorBody>(body) {
            Ok(err) => (err.detail, None),
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let detail = if text.is_empty() {
                    status
                        .canonical_reason()
                        .unwrap_or("no detail given")
                        .to_string()
                } else {
                    text.chars().take(300).collect()
                };
                (detail, None)
            }
        },
    };
    ApiError {
        request: Box::new(info),
        kind: ApiErrorKind::Status {
            status: status.as_u16(),
            detail,
            lock,
        },
        attempts,
        hint: None,
    }
}

/// Follows `next_page_token` until `limit` items (or the last page); `more` tells whether
/// the server had more than were fetched.
pub async fn collect_pages<T, F, Fut>(limit: Option<usize>, mut fetch: F) -> ApiResult<Paged<T>>
where
    F: FnMut(PageQuery) -> Fut,
    Fut: Future<Output = ApiResult<Page<T>>>,
{
    let mut items: Vec<T> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let remaining = limit.map(|l| l.saturating_sub(items.len()));
        let page_size = match remaining {
            Some(r) => (r as u32).clamp(1, MAX_PAGE_SIZE),
            None => MAX_PAGE_SIZE,
        };
        let page = fetch(PageQuery {
            page_size: Some(page_size),
            page_token: token.take(),
        })
        .await?;
        items.extend(page.results);
        let next = page
            .pagination
            .and_then(|p| p.next_page_token)
            .filter(|t| !t.is_empty());
        if let Some(l) = limit {
            if items.len() > l {
                items.truncate(l);
                return Ok(Paged { items, more: true });
            }
            if items.len() == l {
                return Ok(Paged {
                    items,
                    more: next.is_some(),
                });
            }
        }
        match next {
            Some(t) => token = Some(t),
            None => return Ok(Paged { items, more: false }),
        }
    }
}

/// Runs `f` over `items` with at most `limit` futures at once; results keep the order of
/// `items`.
pub async fn map_bounded<I, F, Fut, T>(limit: usize, items: I, f: F) -> Vec<T>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = T>,
{
    futures::stream::iter(items)
        .map(f)
        .buffered(limit.max(1))
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_bounded() {
        let p = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_retry_after: Duration::from_secs(3),
        };
        for _ in 0..50 {
            let d1 = p.delay(1, None);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = p.delay(3, None);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            let d9 = p.delay(9, None);
            assert!(d9 >= Duration::from_millis(500) && d9 <= Duration::from_millis(1000));
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(99))),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(parse_retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&h), None);
    }

    #[tokio::test]
    async fn pages_stop_at_the_limit_and_report_more() {
        let all: Vec<u32> = (0..25).collect();
        let fetch = |q: PageQuery| {
            let all = all.clone();
            async move {
                let start: usize = q.page_token.map(|t| t.parse().unwrap()).unwrap_or(0);
                let end = (start + q.page_size.unwrap() as usize).min(all.len());
                Ok(Page {
                    results: all[start..end].to_vec(),
                    pagination: Some(Pagination {
                        next_page_token: (end < all.len()).then(|| end.to_string()),
                        page_size: q.page_size.unwrap(),
                    }),
                })
            }
        };
        let got = collect_pages(Some(10), fetch).await.unwrap();
        assert_eq!(got.items, (0..10).collect::<Vec<_>>());
        assert!(got.more);
        let got = collect_pages(Some(25), fetch).await.unwrap();
        assert_eq!(got.items.len(), 25);
        assert!(!got.more);
        let got = collect_pages(None, fetch).await.unwrap();
        assert_eq!(got.items.len(), 25);
        assert!(!got.more);
    }

    #[test]
    fn urls_escape_segments_and_keep_a_base_path() {
        let c = Client::new("http://127.0.0.1:9/prefix/", Some("t".into())).unwrap();
        let call = Call::get(&["deployments", "v1", "acme", "p 1", "a/b"], "x");
        assert_eq!(
            c.url(&call).unwrap().as_str(),
            "http://127.0.0.1:9/prefix/deployments/v1/acme/p%201/a%2Fb"
        );
        let call = Call::get(&["secrets", "v1", "o", "p"], "x").trailing_slash();
        assert_eq!(
            c.url(&call).unwrap().as_str(),
            "http://127.0.0.1:9/prefix/secrets/v1/o/p/"
        );
        assert!(!format!("{c:?}").contains("\"t\""));
    }

    #[test]
    fn bad_base_urls_are_diagnostics() {
        let err = Client::new("ftp://x", None).unwrap_err();
        assert!(matches!(err.kind, ApiErrorKind::InvalidUrl { .. }));
        let err = Client::new("not a url", None).unwrap_err();
        assert!(err.to_string().contains("invalid URL"));
    }
}
