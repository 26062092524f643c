//! The API client over real HTTP on 127.0.0.1: retries, backoff, Retry-After, what is never
//! retried, errors as diagnostics, bounded concurrency. The faults come from a small axum
//! server inside the test, since a real control plane cannot be made to fail on demand.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use meltano_cloud::api::client::{ApiErrorKind, Client, RetryPolicy};
use meltano_cloud::api::{LockInfo, LockRequest};
use miette::Diagnostic;

const TOKEN: &str = "mct_test_token_value";

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

fn fast_client(url: &str, retries: u32) -> Client {
    Client::builder(url)
        .token(Some(TOKEN))
        .retry(RetryPolicy {
            max_retries: retries,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(5),
        })
        .build()
        .unwrap()
}

fn whoami_json() -> serde_json::Value {
    serde_json::json!({"tenant_resource_key": "acme", "role": "owner", "token_name": null})
}

/// A route that answers `status` for its first `fails` calls, then `ok`.
fn flaky(
    hits: Arc<AtomicUsize>,
    fails: usize,
    status: StatusCode,
    ok: serde_json::Value,
) -> impl Fn(HeaderMap) -> std::future::Ready<Response> + Clone {
    move |headers: HeaderMap| {
        let n = hits.fetch_add(1, Ordering::SeqCst);
        // Every attempt carries the token and the User-Agent.
        assert_eq!(
            headers.get("authorization").unwrap(),
            &format!("Bearer {TOKEN}")
        );
        assert!(
            headers
                .get("user-agent")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("meltano-cloud/")
        );
        let resp = if n < fails {
            (
                status,
                axum::Json(serde_json::json!({"detail": "try later"})),
            )
                .into_response()
        } else {
            axum::Json(ok.clone()).into_response()
        };
        std::future::ready(resp)
    }
}

#[tokio::test]
async fn get_is_retried_on_5xx_until_it_succeeds() {
    let hits = Arc::new(AtomicUsize::new(0));
    let router = Router::new().route(
        "/gitops/v1/whoami",
        get(flaky(
            hits.clone(),
            2,
            StatusCode::SERVICE_UNAVAILABLE,
            whoami_json(),
        )),
    );
    let client = fast_client(&serve(router).await, 4);
    let who = client.whoami().await.unwrap();
    assert_eq!(who.tenant_resource_key, "acme");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert_eq!(client.requests_made(), 3);
}

#[tokio::test]
async fn retries_give_up_with_the_attempt_count() {
    let hits = Arc::new(AtomicUsize::new(0));
    let router = Router::new().route(
        "/gitops/v1/whoami",
        get(flaky(
            hits.clone(),
            100,
            StatusCode::INTERNAL_SERVER_ERROR,
            whoami_json(),
        )),
    );
    let url = serve(router).await;
    let err = fast_client(&url, 2).whoami().await.unwrap_err();
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert_eq!(err.status(), Some(500));
    assert_eq!(err.attempts, 3);
    let text = err.to_string();
    assert!(text.contains("try later"), "{text}");
    assert!(text.contains("after 3 attempts"), "{text}");
    assert_eq!(err.code().unwrap().to_string(), "api::server_error");
    assert!(!text.contains(TOKEN));
}

#[tokio::test]
async fn retry_after_is_honoured_on_429() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let router = Router::new().route(
        "/gitops/v1/whoami",
        get(move || {
            let n = h.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "1")],
                        axum::Json(serde_json::json!({"detail": "slow down"})),
                    )
                        .into_response()
                } else {
                    axum::Json(whoami_json()).into_response()
                }
            }
        }),
    );
    let client = fast_client(&serve(router).await, 3);
    let start = Instant::now();
    client.whoami().await.unwrap();
    // The computed backoff would be at most 50 ms; the server asked for a second.
    assert!(
        start.elapsed() >= Duration::from_millis(950),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_run_post_is_never_repeated_after_a_server_error() {
    let hits = Arc::new(AtomicUsize::new(0));
    let ok = serde_json::json!({"execution_id": "e", "deployment_name": "d", "job_or_schedule_name": "j"});
    let router = Router::new().route(
        "/run/v1/external/{org}/{pid}/{dep}/{job}",
        post(flaky(hits.clone(), 1, StatusCode::BAD_GATEWAY, ok)),
    );
    let client = fast_client(&serve(router).await, 4);
    let err = client.run("acme", "p1", "prod", "daily").await.unwrap_err();
    assert_eq!(err.status(), Some(502));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "a POST must not be sent twice"
    );
    assert_eq!(client.requests_made(), 1);
}

#[tokio::test]
async fn lock_acquisition_is_retried_because_it_carries_its_id() {
    let hits = Arc::new(AtomicUsize::new(0));
    let info = serde_json::json!({
        "lock_id": "L1", "holder": "me", "operation": "apply",
        "acquired_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-01T00:10:00Z"
    });
    let router = Router::new().route(
        "/gitops/v1/{org}/{pid}/lock",
        post(flaky(
            hits.clone(),
            1,
            StatusCode::SERVICE_UNAVAILABLE,
            info,
        )),
    );
    let client = fast_client(&serve(router).await, 4);
    let req = LockRequest {
        lock_id: "L1".into(),
        holder: "me".into(),
        operation: "apply".into(),
        ttl_seconds: 600,
    };
    let lock: LockInfo = client.acquire_lock("acme", "p1", &req).await.unwrap();
    assert_eq!(lock.lock_id, "L1");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn lock_conflicts_carry_the_holder() {
    let router = Router::new().route(
        "/gitops/v1/{org}/{pid}/lock",
        post(|| async {
            (
                StatusCode::CONFLICT,
                axum::Json(serde_json::json!({
                    "detail": "the project is locked",
                    "lock": {"lock_id": "L0", "holder": "ci run 7", "operation": "apply",
                             "acquired_at": "2026-01-01T00:00:00Z",
                             "expires_at": "2026-01-01T00:10:00Z"}
                })),
            )
        }),
    );
    let client = fast_client(&serve(router).await, 4);
    let req = LockRequest {
        lock_id: "L1".into(),
        holder: "me".into(),
        operation: "apply".into(),
        ttl_seconds: 600,
    };
    let err = client.acquire_lock("acme", "p1", &req).await.unwrap_err();
    assert_eq!(err.lock_holder().unwrap().holder, "ci run 7");
    assert_eq!(client.requests_made(), 1, "409 is an answer, not a fault");
    assert!(err.help().unwrap().to_string().contains("force-unlock"));
}

#[tokio::test]
async fn not_found_names_the_object_and_helps() {
    let router = Router::new().route(
        "/deployments/v1/{org}/{pid}/{name}",
        get(|| async {
            (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"detail": "no such deployment"})),
            )
        }),
    );
    let client = fast_client(&serve(router).await, 4);
    let err = client
        .get_deployment("acme", "p1", "prodution")
        .await
        .unwrap_err()
        .with_hint("did you mean `production`?");
    assert_eq!(client.requests_made(), 1);
    assert_eq!(err.code().unwrap().to_string(), "api::not_found");
    assert!(
        err.to_string()
            .starts_with("deployment `prodution` was not found")
    );
    let help = err.help().unwrap().to_string();
    assert!(help.starts_with("did you mean `production`?"), "{help}");
}

#[tokio::test]
async fn unauthorized_and_forbidden_say_what_to_do() {
    let router = Router::new()
        .route(
            "/gitops/v1/whoami",
            get(|| async {
                (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(serde_json::json!({"detail": "invalid token"})),
                )
            }),
        )
        .route(
            "/deployments/v1/{org}/{pid}/{name}",
            axum::routing::delete(|| async {
                (
                    StatusCode::FORBIDDEN,
                    axum::Json(serde_json::json!({"detail": "readers cannot delete"})),
                )
            }),
        );
    let client = fast_client(&serve(router).await, 4);
    let err = client.whoami().await.unwrap_err();
    let help = err.help().unwrap().to_string();
    assert!(help.contains("meltano-cloud login") && help.contains("MELTANO_CLOUD_TOKEN"));
    let err = client
        .delete_deployment("acme", "p", "d")
        .await
        .unwrap_err();
    assert!(err.help().unwrap().to_string().contains("role"));
    assert_eq!(client.requests_made(), 2, "4xx answers are not retried");
}

#[tokio::test]
async fn connection_refused_is_retried_then_names_the_url() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let client = fast_client(&url, 2);
    // Even a POST is retried when the connection could not be made: it never left.
    let err = client.run("acme", "p", "d", "j").await.unwrap_err();
    assert!(matches!(err.kind, ApiErrorKind::Connect { .. }), "{err:?}");
    assert_eq!(err.attempts, 3);
    assert_eq!(client.requests_made(), 3);
    assert_eq!(err.code().unwrap().to_string(), "api::connect");
    let help = err.help().unwrap().to_string();
    assert!(help.contains(&url) && help.contains("running"), "{help}");
}

#[tokio::test]
async fn a_connection_dropped_mid_request_is_retried_for_get_only() {
    // A raw listener that closes the first connection without answering, then serves.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let n = a.fetch_add(1, Ordering::SeqCst);
            let mut buf = vec![0u8; 8192];
            let _ = sock.read(&mut buf).await;
            if n == 0 {
                drop(sock);
                continue;
            }
            let body = whoami_json().to_string();
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    let client = fast_client(&url, 3);
    client.whoami().await.unwrap();
    assert_eq!(client.requests_made(), 2);
}

#[tokio::test]
async fn concurrency_is_bounded_and_order_kept() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (f, p) = (in_flight.clone(), peak.clone());
    let router = Router::new().route(
        "/deployments/v1/{org}/{pid}/{name}",
        get(
            move |axum::extract::Path((_, _, name)): axum::extract::Path<(
                String,
                String,
                String,
            )>| {
                let (f, p) = (f.clone(), p.clone());
                async move {
                    let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    f.fetch_sub(1, Ordering::SeqCst);
                    axum::Json(serde_json::json!({
                        "deployment_name": name, "environment_name": "prod", "git_rev": "main",
                        "git_rev_hash": "abc", "last_deployed_timestamp": "2026-01-01T00:00:00Z"
                    }))
                }
            },
        ),
    );
    let url = serve(router).await;
    let client = Client::builder(&url)
        .token(Some(TOKEN))
        .concurrency(4)
        .build()
        .unwrap();
    let names: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
    let got = client
        .map_bounded(names.iter(), |n| {
            let c = client.clone();
            async move { c.get_deployment("acme", "p", n).await.unwrap() }
        })
        .await;
    let got: Vec<String> = got.into_iter().map(|d| d.deployment_name).collect();
    assert_eq!(got, names);
    let peak = peak.load(Ordering::SeqCst);
    assert!((2..=4).contains(&peak), "peak in flight: {peak}");
    assert_eq!(client.requests_made(), 20);
}

/// Against the real server with injected faults (`--simulate-faults`): idempotent calls
/// get through by retrying, and a POST that met a 503 is not repeated.
#[tokio::test]
async fn a_real_server_with_injected_faults() {
    use crate::support::{ServerOptions, Store, TestRepo, TestServer};
    use meltano_cloud::api::{CreateProject, DeployQuery, DeploymentRequest, PageQuery};

    let repo = TestRepo::new();
    let server = TestServer::start(
        Store::Sqlite,
        ServerOptions::new().args([
            "--simulate-faults",
            "PUT:/schedules/*=0.3@503,GET:/deployments/*=0.3@drop,POST:/projects/*=1@503",
        ]),
    );
    let (org, pid, token) = server.bootstrap(&repo);
    let client = Client::builder(server.url())
        .token(Some(token.clone()))
        .retry(RetryPolicy {
            max_retries: 12,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(1),
        })
        .build()
        .unwrap();
    let body = DeploymentRequest {
        environment_name: "prod".into(),
        git_rev: "main".into(),
        protected: None,
    };
    client
        .deploy(&org, &pid, "production", &body, &DeployQuery::default())
        .await
        .unwrap();

    let calls = 20u64;
    for i in 0..calls {
        let on = i % 2 == 0;
        client
            .set_schedule_enabled(&org, &pid, "production", "hourly-sync", on)
            .await
            .unwrap();
        let page = client
            .list_deployments(&org, &pid, &PageQuery::default())
            .await
            .unwrap();
        assert_eq!(page.results.len(), 1);
    }
    let s = client
        .get_schedule(&org, &pid, "production", "hourly-sync")
        .await
        .unwrap();
    assert!(!s.enabled, "the last call disabled it");
    let made = client.requests_made();
    eprintln!("{made} requests for {} calls", 2 + 2 * calls);
    // 1 deploy + 2 per round + 1 read, plus the retries the faults caused.
    assert!(
        made > 2 + 2 * calls,
        "no fault was injected: {made} requests"
    );

    let before = client.requests_made();
    let err = client
        .create_project(
            &org,
            &CreateProject {
                project_name: "never".into(),
                git_repository: repo.url(),
                project_root_path: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(client.requests_made() - before, 1, "a POST is sent once");
    let logs = server.logs();
    assert!(!logs.contains(&token));
}
