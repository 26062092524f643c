//! Test knobs that make 127.0.0.1 behave like a slow or flaky network: added latency per
//! request (`--simulate-latency 50ms`) and injected faults on chosen routes
//! (`--simulate-faults 'PUT:/schedules/*=0.2'`). Off unless asked for.
//!
//! A fault rule is `[METHOD:]PATH_GLOB=RATE[@KIND]`, several separated by commas. The glob's
//! `*` also matches `/`. KIND is `503` (answer 503 without doing anything), `drop` (do the
//! request, then drop the connection before the answer: the caller cannot know it
//! happened) or, by default, either one at random.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;

use super::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    Unavailable,
    Drop,
    Either,
}

#[derive(Debug, Clone)]
pub struct FaultRule {
    pub method: Option<Method>,
    pub pattern: String,
    matcher: globset::GlobMatcher,
    pub rate: f64,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, Default)]
pub struct Simulation {
    pub latency: Option<Duration>,
    pub faults: Vec<FaultRule>,
}

impl Simulation {
    pub fn is_active(&self) -> bool {
        self.latency.is_some() || !self.faults.is_empty()
    }
}

/// Parses `50ms`, `1s`, `250us`, `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| t.split_at(i))
        .unwrap_or((t, "ms"));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration `{text}`: expected e.g. 50ms or 1s"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "us" | "µs" => n / 1_000_000.0,
        "m" => n * 60.0,
        _ => {
            return Err(format!(
                "invalid duration unit in `{text}`: use us, ms, s or m"
            ));
        }
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `PUT:/schedules/*=0.2,DELETE:/secrets/*=0.5@drop`.
pub fn parse_faults(text: &str) -> Result<Vec<FaultRule>, String> {
    let mut rules = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (target, rate) = part.rsplit_once('=').ok_or_else(|| {
            format!("fault rule `{part}` needs `=RATE`, e.g. PUT:/schedules/*=0.2")
        })?;
        let (rate, kind) = match rate.split_once('@') {
            Some((r, "503")) => (r, FaultKind::Unavailable),
            Some((r, "drop")) => (r, FaultKind::Drop),
            Some((_, k)) => {
                return Err(format!(
                    "unknown fault kind `{k}` in `{part}`: use 503 or drop"
                ));
            }
            None => (rate, FaultKind::Either),
        };
        let rate: f64 = rate
            .trim()
            .parse()
            .ok()
            .filter(|r: &f64| (0.0..=1.0).contains(r))
            .ok_or_else(|| format!("fault rate in `{part}` must be a number from 0 to 1"))?;
        let (method, pattern) = match target.split_once(':') {
            Some((m, p)) if !m.starts_with('/') => {
                let method = if m == "*" {
                    None
                } else {
                    Some(
                        Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                            .map_err(|_| format!("invalid method `{m}` in `{part}`"))?,
                    )
                };
                (method, p)
            }
            _ => (None, target),
        };
        let matcher = globset::Glob::new(pattern)
            .map_err(|e| format!("invalid path pattern `{pattern}`: {e}"))?
            .compile_matcher();
        rules.push(FaultRule {
            method,
            pattern: pattern.to_string(),
            matcher,
            rate,
            kind,
        });
    }
    Ok(rules)
}

/// Applies latency and faults around each request.
pub async fn middleware(State(sim): State<Arc<Simulation>>, req: Request, next: Next) -> Response {
    if !sim.is_active() {
        return next.run(req).await;
    }
    if let Some(latency) = sim.latency {
        tokio::time::sleep(latency).await;
    }
    let path = req.uri().path().to_string();
    let fault = sim.faults.iter().find_map(|rule| {
        let method_ok = rule.method.as_ref().is_none_or(|m| m == req.method());
        if method_ok && rule.matcher.is_match(&path) && rand::thread_rng().gen_bool(rule.rate) {
            Some(match rule.kind {
                FaultKind::Either if rand::thread_rng().gen_bool(0.5) => FaultKind::Unavailable,
                FaultKind::Either => FaultKind::Drop,
                k => k,
            })
        } else {
            None
        }
    });
    match fault {
        None => next.run(req).await,
        Some(FaultKind::Unavailable) | Some(FaultKind::Either) => {
            tracing::warn!(%path, "simulated fault: 503");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "simulated fault").into_response()
        }
        Some(FaultKind::Drop) => {
            let done = next.run(req).await;
            tracing::warn!(
                %path,
                status = done.status().as_u16(),
                "simulated fault: connection dropped after the request was done"
            );
            // A body that fails before its first byte makes the server abort the connection.
            let body = Body::from_stream(futures::stream::once(async {
                Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other("simulated drop"))
            }));
            Response::builder()
                .status(StatusCode::OK)
                .body(body)
                .unwrap_or_else(|_| StatusCode::SERVICE_UNAVAILABLE.into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules() {
        let r = parse_faults("PUT:/schedules/*=0.2, /secrets/*=1@drop").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].method, Some(Method::PUT));
        assert!(r[0].matcher.is_match("/schedules/v1/o/p/d/s/enabled"));
        assert_eq!(r[1].kind, FaultKind::Drop);
        assert!(parse_faults("PUT:/x=2").is_err());
        assert!(parse_faults("PUT:/x").is_err());
        assert_eq!(parse_duration("50ms").unwrap(), Duration::from_millis(50));
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert!(parse_duration("5h").is_err());
    }
}
