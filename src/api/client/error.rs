//! The one error type of every API call: which request failed, how, and what to do about it.

use std::fmt;

use miette::Diagnostic;

use crate::api::types::LockInfo;

/// The request an error belongs to. Holds no query string, header or body, so it can never
/// carry a token or a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Full URL without query string.
    pub url: String,
    /// What the call was for, in words: `get deployment `prod``.
    pub action: String,
    /// The object the call names, for "was not found" messages: `deployment `prod``.
    pub subject: Option<String>,
}

/// How a call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiErrorKind {
    /// The server answered with a non-2xx status.
    Status {
        status: u16,
        detail: String,
        /// On a 409 lock conflict: who holds the lock.
        lock: Option<Box<LockInfo>>,
    },
    /// No TCP connection could be made (refused, DNS, unreachable).
    Connect { message: String },
    /// The server did not answer in time.
    Timeout,
    /// The answer did not have the expected shape.
    Decode { message: String },
    /// Any other transport failure (connection reset mid-answer, TLS, ...).
    Transport { message: String },
    /// The request could not be built (bad base URL).
    InvalidUrl { message: String },
}

/// An API call that failed, as a diagnostic with a help line per cause.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub request: Box<RequestInfo>,
    pub kind: ApiErrorKind,
    /// How many attempts were made (more than one when retried).
    pub attempts: u32,
    /// Extra help added by the caller, e.g. "did you mean `production`?".
    pub hint: Option<String>,
}

impl ApiError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            ApiErrorKind::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's `detail`, when it answered with an error body.
    pub fn detail(&self) -> Option<&str> {
        match &self.kind {
            ApiErrorKind::Status { detail, .. } => Some(detail),
            _ => None,
        }
    }

    /// The current holder, when a lock request was refused because the lock is held.
    pub fn lock_holder(&self) -> Option<&LockInfo> {
        match &self.kind {
            ApiErrorKind::Status { lock, .. } => lock.as_deref(),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// True when the control plane could not be reached at all.
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, ApiErrorKind::Connect { .. })
    }

    /// Adds a line of help shown before the generic one.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Names the object the request was about, for a better "not found" message.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.request.subject = Some(subject.into());
        self
    }

    fn base_url(&self) -> &str {
        // The scheme://host:port part, for "is the server running at ..." help.
        let url = &self.request.url;
        let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
        match url[after_scheme..].find('/') {
            Some(i) => &url[..after_scheme + i],
            None => url,
        }
    }

    fn generic_help(&self) -> Option<String> {
        match &self.kind {
            ApiErrorKind::Status { status, .. } => match status {
                401 => Some(
                    "the token was refused: log in again with `meltano-cloud login`, or check \
                     MELTANO_CLOUD_TOKEN / --token"
                        .into(),
                ),
                403 => Some(
                    "your role in this organization does not allow this; ask an owner of the \
                     organization for the maintainer or owner role"
                        .into(),
                ),
                404 => Some(match &self.request.subject {
                    Some(subject) => format!(
                        "{subject} does not exist in this organization or project; check the \
                         name, or list what exists with the matching `list` command"
                    ),
                    None => "check the names given; list what exists with the matching `list` \
                             command"
                        .into(),
                }),
                409 => Some(if self.lock_holder().is_some() {
                    "another operation holds the project lock; wait for it to finish, or \
                     remove a stuck lock with `meltano-cloud force-unlock LOCK_ID`"
                        .into()
                } else {
                    conflict_help(self.detail().unwrap_or_default()).into()
                }),
                422 | 400 => Some(invalid_help(self.detail().unwrap_or_default())),
                429 => {
                    Some("the control plane is rate limiting requests; retry in a moment".into())
                }
                s if *s >= 500 => Some(format!(
                    "the control plane at {} failed while handling the request; retry, and check \
                     its logs if it persists",
                    self.base_url()
                )),
                _ => None,
            },
            ApiErrorKind::Connect { .. } => Some(format!(
                "is the control plane running at {}? Start one with `meltano-cloud server`, \
                 point --api-url / MELTANO_CLOUD_API_URL at it, or use `--api-url local`",
                self.base_url()
            )),
            ApiErrorKind::Timeout => Some(format!(
                "the control plane at {} did not answer in time; check that it is healthy and \
                 retry",
                self.base_url()
            )),
            ApiErrorKind::Decode { .. } => Some(format!(
                "the answer of {} is not what this version of meltano-cloud expects; is it a \
                 Meltano Cloud control plane of a compatible version?",
                self.base_url()
            )),
            ApiErrorKind::Transport { .. } => {
                Some("the connection failed part-way; retry in a moment".into())
            }
            ApiErrorKind::InvalidUrl { .. } => Some(
                "check --api-url / MELTANO_CLOUD_API_URL: it must look like https://host[:port]"
                    .into(),
            ),
        }
    }
}

impl ApiError {
    /// Path and query-less target of the request, e.g. `GET /deployments/v1/acme/01J.../prod`
    /// (the base URL is shown once, by the control-plane line every command prints).
    fn request_line(&self) -> String {
        let path = self
            .request
            .url
            .strip_prefix(self.base_url())
            .filter(|p| !p.is_empty())
            .unwrap_or(&self.request.url);
        format!("{} {path}", self.request.method)
    }
}

/// True when `detail` only repeats "<kind> `<name>` not found" of `subject`.
fn repeats_subject(detail: &str, subject: &str) -> bool {
    let named = match subject.match_indices('`').nth(1) {
        Some((i, _)) => &subject[..=i],
        None => subject,
    };
    detail.starts_with(named) && detail.contains("not found") && detail.len() < named.len() + 60
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let req = &self.request;
        match &self.kind {
            ApiErrorKind::Status { status, detail, .. } => {
                if *status == 404 {
                    if let Some(subject) = &req.subject {
                        if repeats_subject(detail, subject) {
                            write!(f, "{subject} was not found")?;
                        } else {
                            write!(f, "{subject} was not found: {detail}")?;
                        }
                        return write!(f, " (HTTP 404 from {})", self.request_line());
                    }
                }
                write!(
                    f,
                    "failed to {}: {detail} (HTTP {status} from {})",
                    req.action,
                    self.request_line()
                )
            }
            ApiErrorKind::Connect { message } => write!(
                f,
                "failed to {}: cannot connect to {} ({message})",
                req.action,
                self.base_url()
            ),
            ApiErrorKind::Timeout => write!(
                f,
                "failed to {}: {} {} timed out",
                req.action, req.method, req.url
            ),
            ApiErrorKind::Decode { message } => write!(
                f,
                "failed to {}: unexpected answer from {} {}: {message}",
                req.action, req.method, req.url
            ),
            ApiErrorKind::Transport { message } => write!(
                f,
                "failed to {}: {} {} failed: {message}",
                req.action, req.method, req.url
            ),
            ApiErrorKind::InvalidUrl { message } => {
                write!(f, "failed to {}: invalid URL: {message}", req.action)
            }
        }?;
        if self.attempts > 1 {
            write!(f, " after {} attempts", self.attempts)?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl Diagnostic for ApiError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        let code = match &self.kind {
            ApiErrorKind::Status { status, .. } => match status {
                400 => "api::bad_request",
                401 => "api::unauthorized",
                403 => "api::forbidden",
                404 => "api::not_found",
                409 => "api::conflict",
                422 => "api::invalid",
                429 => "api::rate_limited",
                s if *s >= 500 => "api::server_error",
                _ => "api::status",
            },
            ApiErrorKind::Connect { .. } => "api::connect",
            ApiErrorKind::Timeout => "api::timeout",
            ApiErrorKind::Decode { .. } => "api::decode",
            ApiErrorKind::Transport { .. } => "api::transport",
            ApiErrorKind::InvalidUrl { .. } => "api::invalid_url",
        };
        Some(Box::new(code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        // A caller's hint about a name ("did you mean") says more than the generic line.
        let specific = matches!(self.status(), Some(400 | 404 | 409 | 422));
        let generic = if self.hint.is_some() && specific {
            None
        } else {
            self.generic_help()
        };
        let help = match (&self.hint, generic) {
            (Some(hint), Some(generic)) => format!("{hint}\n{generic}"),
            (Some(hint), None) => hint.clone(),
            (None, Some(generic)) => generic,
            (None, None) => return None,
        };
        Some(Box::new(help))
    }
}

/// Help for a 400/422: when the detail names a value (in backticks) and lists the allowed
/// ones (`(defined: a, b)`), suggest the closest; otherwise say to correct the named value.
fn invalid_help(detail: &str) -> String {
    let generic = "correct the value the message names and retry".to_string();
    let mut ticks = detail.splitn(3, '`');
    let given = match (ticks.next(), ticks.next(), ticks.next()) {
        (Some(_), Some(name), Some(_)) if !name.is_empty() => name,
        _ => return generic,
    };
    let Some(start) = detail.find("(defined: ") else {
        return generic;
    };
    let rest = &detail[start + "(defined: ".len()..];
    let Some(end) = rest.find(')') else {
        return generic;
    };
    let allowed: Vec<&str> = rest[..end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let closest = allowed
        .iter()
        .map(|c| (strsim::jaro_winkler(given, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c);
    match closest {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!("use one of: {}", allowed.join(", ")),
    }
}

/// Short alias used by every client method.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::invalid_help;

    #[test]
    fn invalid_values_get_a_suggestion() {
        let detail = "environment `production` is not defined in meltano.yml at commit \
                      e3980fc9a62f (defined: dev, prod)";
        assert_eq!(invalid_help(detail), "did you mean `prod`?");
        let detail = "environment `nowhere` is not defined in meltano.yml at commit e3980fc9a62f \
                      (defined: dev, staging, prod)";
        assert_eq!(invalid_help(detail), "use one of: dev, staging, prod");
        assert_eq!(
            invalid_help("ttl_seconds must be between 1 and 86400"),
            "correct the value the message names and retry"
        );
    }
}

/// Help for a 409 other than a lock conflict, chosen by what the server says is in the way.
fn conflict_help(detail: &str) -> &'static str {
    if detail.contains("is protected") {
        "protection guards a deployment from deletion; set `protected: false` for it in \
         cloud.yml and run `meltano-cloud apply` first"
    } else if detail.contains("already ended") {
        "the execution is not running any more, so there is nothing to stop; see its result \
         with `meltano-cloud history`"
    } else {
        "the object already exists or changed meanwhile; list the current state and retry"
    }
}

#[cfg(test)]
mod conflict_help_tests {
    use super::conflict_help;

    #[test]
    fn names_the_way_out_of_each_conflict() {
        assert!(
            conflict_help("deployment `production` is protected and cannot be deleted")
                .contains("protected: false")
        );
        assert!(conflict_help("execution `ab12` already ended (FAILED)").contains("history"));
        assert!(conflict_help("project `x` exists").contains("list the current state"));
    }
}
