//! Test bodies, each run on SQLite and on PostgreSQL.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{DEFAULT_MELTANO_YML, ServerOptions, Store, TestRepo, TestServer, client};

fn start(store: Store) -> TestServer {
    TestServer::start(store, ServerOptions::default())
}

/// A caller: one token against one server.
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(server: &TestServer, token: &str) -> Api {
        Api {
            base: server.url().to_string(),
            http: client(token),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        (status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    async fn revision(&self, org: &str, pid: &str) -> i64 {
        let (s, snap) = self.get(&format!("/gitops/v1/{org}/{pid}/snapshot")).await;
        assert_eq!(s, StatusCode::OK, "{snap}");
        snap["revision"].as_i64().expect("revision")
    }

    /// Follows `next_page_token` to the end; returns every result.
    async fn all_pages(&self, path: &str, page_size: u32) -> (Vec<Value>, usize) {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let mut url = format!("{path}{sep}page_size={page_size}");
            if let Some(t) = &token {
                url.push_str(&format!("&page_token={t}"));
            }
            let (s, page) = self.get(&url).await;
            assert_eq!(s, StatusCode::OK, "{page}");
            pages += 1;
            let results = page["results"].as_array().expect("results").clone();
            assert!(results.len() <= page_size as usize);
            out.extend(results);
            match page["pagination"]["next_page_token"].as_str() {
                Some(t) => {
                    assert_eq!(page["pagination"]["page_size"], page_size);
                    token = Some(t.to_string())
                }
                None => break,
            }
            assert!(pages < 100, "paging does not end");
        }
        (out, pages)
    }
}

fn deploy_body(env: &str, rev: &str) -> Value {
    json!({"environment_name": env, "git_rev": rev})
}

pub async fn deploy_enable_snapshot(store: Store) {
    let repo = TestRepo::new();
    let server = start(store);
    let (org, pid, token) = server.bootstrap(&repo);
    let api = Api::new(&server, &token);

    let (s, d) = api
        .post(
            &format!("/deployments/v1/{org}/{pid}/production"),
            deploy_body("prod", "main"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    assert_eq!(d["git_rev_hash"], repo.head());
    assert_eq!(d["environment_name"], "prod");
    assert_eq!(d["git_rev"], "main");

    let (s, _) = api
        .put(
            &format!("/schedules/v1/{org}/{pid}/production/daily-refresh/enabled"),
            json!(true),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    let (_, snap) = api.get(&format!("/gitops/v1/{org}/{pid}/snapshot")).await;
    assert_eq!(snap["revision"], 2);
    assert_eq!(snap["project"]["project_id"], pid.as_str());
    let schedules = &snap["deployments"][0]["schedules"];
    assert_eq!(schedules[0]["schedule_name"], "daily-refresh");
    assert_eq!(schedules[0]["enabled"], true);
    assert_eq!(schedules[0]["job_name"], "refresh");
    assert_eq!(schedules[1]["schedule_name"], "hourly-sync");
    assert_eq!(schedules[1]["interval"], "0 * * * *");
    assert_eq!(schedules[1]["enabled"], false);
    assert_eq!(snap["lock"], Value::Null);
}

/// Every v1 endpoint and its answers.
pub async fn v1_endpoints(store: Store) {
    let repo = TestRepo::new();
    let server = start(store);
    let (org, pid, token) = server.bootstrap(&repo);
    let api = Api::new(&server, &token);

    // health needs no token
    let health: Value = reqwest::get(format!("{}/api/v1/health", server.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");

    // projects
    let (s, p) = api
        .post(
            &format!("/projects/v1/{org}"),
            json!({"project_name": "second", "git_repository": repo.url(), "project_root_path": "./sub/"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(p["project_root_path"], "sub");
    assert_eq!(p["tenant_resource_key"], org.as_str());
    let (s, e) = api
        .post(
            &format!("/projects/v1/{org}"),
            json!({"project_name": "second", "git_repository": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        e["detail"].as_str().unwrap().contains("already exists"),
        "{e}"
    );
    let (_, list) = api.get(&format!("/projects/v1/{org}")).await;
    let names: Vec<&str> = list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["project_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["jaffle-shop", "second"]);
    assert_eq!(list["pagination"], Value::Null);
    let (_, by_name) = api
        .get(&format!("/projects/v1/{org}?project_name=second"))
        .await;
    assert_eq!(by_name["results"].as_array().unwrap().len(), 1);
    let (_, by_id) = api
        .get(&format!("/projects/v1/{org}?project_id={pid}"))
        .await;
    assert_eq!(by_id["results"][0]["project_name"], "jaffle-shop");

    // deployments
    let dep = format!("/deployments/v1/{org}/{pid}");
    let (s, _) = api.get(&format!("{dep}/staging")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api
        .post(&format!("{dep}/staging"), deploy_body("staging", "main"))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, d) = api.get(&format!("{dep}/staging")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["deployment_name"], "staging");
    assert!(
        d["last_deployed_timestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    // unchanged: 204; force: 200
    let (s, b) = api
        .post(&format!("{dep}/staging"), deploy_body("staging", "main"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (s, _) = api
        .post(
            &format!("{dep}/staging?force=true"),
            deploy_body("staging", "main"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // unknown environment and rev: 422 with a clear detail
    let (s, e) = api
        .post(&format!("{dep}/qa"), deploy_body("qa", "main"))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let detail = e["detail"].as_str().unwrap();
    assert!(
        detail.contains("environment `qa` is not defined in meltano.yml"),
        "{detail}"
    );
    assert!(detail.contains("dev, staging, prod"), "{detail}");
    let (s, e) = api
        .post(&format!("{dep}/qa"), deploy_body("dev", "no-such-branch"))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("`no-such-branch` was not found"),
        "{e}"
    );
    // invalid name
    let (s, _) = api
        .post(&format!("{dep}/Bad_Name"), deploy_body("dev", "main"))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // malformed body
    let (s, e) = api
        .post(&format!("{dep}/qa"), json!({"environment_name": 3}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e["detail"].is_string());
    let (_, list) = api.get(&dep).await;
    assert_eq!(list["results"].as_array().unwrap().len(), 1);

    // schedules
    let sch = format!("/schedules/v1/{org}/{pid}");
    let (_, all) = api.get(&sch).await;
    assert_eq!(all["results"].as_array().unwrap().len(), 2);
    let (s, one) = api.get(&format!("{sch}/staging/hourly-sync")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["enabled"], false);
    let (s, _) = api
        .put(&format!("{sch}/staging/hourly-sync/enabled"), json!(true))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, one) = api.get(&format!("{sch}/staging/hourly-sync")).await;
    assert_eq!(one["enabled"], true);
    let (s, _) = api
        .put(&format!("{sch}/staging/hourly-sync/enabled"), json!(false))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, e) = api
        .put(&format!("{sch}/staging/nope/enabled"), json!(true))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(e["detail"].as_str().unwrap().contains("schedule `nope`"));
    let (s, e) = api
        .put(&format!("{sch}/nope/daily-refresh/enabled"), json!(true))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(e["detail"].as_str().unwrap().contains("deployment `nope`"));
    let (s, _) = api.get(&format!("{sch}/nope")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, by_dep) = api.get(&format!("{sch}/staging")).await;
    assert_eq!(by_dep["results"].as_array().unwrap().len(), 2);
    let (s, _) = api
        .put(&format!("{sch}/staging/hourly-sync/enabled"), json!("yes"))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // secrets
    let sec = format!("/secrets/v1/{org}/{pid}/");
    let (s, _) = api
        .put(
            &sec,
            json!({"name": "TAP_PASSWORD", "value": "s3cret", "fingerprint": "fp-1"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api
        .put(&sec, json!({"name": "BY_HAND", "value": "v"}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api
        .put(&sec, json!({"name": "bad name", "value": "v"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, list) = api.get(&sec).await;
    assert_eq!(
        list["results"],
        json!([{"name": "BY_HAND"}, {"name": "TAP_PASSWORD", "fingerprint": "fp-1"}])
    );
    // the path without the trailing slash works too
    let (s, _) = api.get(&format!("/secrets/v1/{org}/{pid}")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api
        .delete(&format!("/secrets/v1/{org}/{pid}/BY_HAND"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api
        .delete(&format!("/secrets/v1/{org}/{pid}/BY_HAND"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // delete deployment
    let (s, _) = api.delete(&format!("{dep}/staging")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api.delete(&format!("{dep}/staging")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, all) = api.get(&sch).await;
    assert_eq!(all["results"], json!([]));

    // unknown routes and methods answer JSON too
    let (s, e) = api.get("/nope/v1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(e["detail"].is_string());
    let (s, e) = api.call(Method::PATCH, &format!("{dep}/x"), None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert!(e["detail"].is_string());
}

/// Paging envelope across several pages, on every list endpoint.
pub async fn paging(store: Store) {
    let repo = TestRepo::new();
    let server = start(store);
    let (org, pid, token) = server.bootstrap(&repo);
    let api = Api::new(&server, &token);

    for i in 0..7 {
        let (s, _) = api
            .put(
                &format!("/secrets/v1/{org}/{pid}/"),
                json!({"name": format!("S_{i}"), "value": "x"}),
            )
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    let (all, pages) = api.all_pages(&format!("/secrets/v1/{org}/{pid}/"), 3).await;
    assert_eq!(pages, 3);
    let names: Vec<&str> = all.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["S_0", "S_1", "S_2", "S_3", "S_4", "S_5", "S_6"]);

    // exactly one page's worth: no next page
    let (_, pages) = api.all_pages(&format!("/secrets/v1/{org}/{pid}/"), 7).await;
    assert_eq!(pages, 1);

    for d in ["a", "b", "c"] {
        let (s, _) = api
            .post(
                &format!("/deployments/v1/{org}/{pid}/{d}"),
                deploy_body("dev", "main"),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let (deps, pages) = api
        .all_pages(&format!("/deployments/v1/{org}/{pid}"), 2)
        .await;
    assert_eq!(pages, 2);
    assert_eq!(deps.len(), 3);
    // schedules page on (deployment, schedule)
    let (schedules, pages) = api
        .all_pages(&format!("/schedules/v1/{org}/{pid}"), 4)
        .await;
    assert_eq!(pages, 2);
    let keys: BTreeSet<String> = schedules
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s["deployment_name"].as_str().unwrap(),
                s["schedule_name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(keys.len(), 6);
    let (per_dep, _) = api
        .all_pages(&format!("/schedules/v1/{org}/{pid}/b"), 1)
        .await;
    assert_eq!(per_dep.len(), 2);

    for n in 0..3 {
        api.post(
            &format!("/projects/v1/{org}"),
            json!({"project_name": format!("p{n}"), "git_repository": "x"}),
        )
        .await;
    }
    let (projects, pages) = api.all_pages(&format!("/projects/v1/{org}"), 2).await;
    assert_eq!((projects.len(), pages), (4, 2));

    for n in 0..3 {
        let (s, _) = api
            .post(
                &format!("/gitops/v1/{org}/{pid}/audit"),
                json!({"actor": format!("a{n}"), "git_commit": null, "plan_digest": "d", "changes": [], "outcome": "succeeded"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let (audit, pages) = api
        .all_pages(&format!("/gitops/v1/{org}/{pid}/audit"), 2)
        .await;
    assert_eq!(pages, 2);
    let actors: Vec<&str> = audit.iter().map(|a| a["actor"].as_str().unwrap()).collect();
    assert_eq!(actors, vec!["a2", "a1", "a0"], "newest first");

    // limits
    let (s, e) = api
        .get(&format!("/secrets/v1/{org}/{pid}/?page_size=251"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e["detail"].as_str().unwrap().contains("250"));
    let (s, _) = api
        .get(&format!("/secrets/v1/{org}/{pid}/?page_size=250"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api
        .get(&format!("/secrets/v1/{org}/{pid}/?page_token=not-a-token"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

/// Which role may do what: (role, expected status) per request.
pub async fn auth_matrix(store: Store) {
    let repo = TestRepo::new();
    let server = start(store);
    let (org, pid, owner) = server.bootstrap(&repo);
    let maintainer = server.token(&org, "maintainer");
    let reader = server.token(&org, "reader");
    let owner_api = Api::new(&server, &owner);
    let (s, _) = owner_api
        .post(
            &format!("/deployments/v1/{org}/{pid}/prod"),
            deploy_body("prod", "main"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    // (method, path, body, minimum role: 0 reader, 1 maintainer, 2 owner, success status)
    let cases: Vec<(Method, String, Option<Value>, u8, StatusCode)> = vec![
        (
            Method::GET,
            format!("/projects/v1/{org}"),
            None,
            0,
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/deployments/v1/{org}/{pid}"),
            None,
            0,
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/deployments/v1/{org}/{pid}/prod"),
            None,
            0,
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/schedules/v1/{org}/{pid}"),
            None,
            0,
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/schedules/v1/{org}/{pid}/prod"),
            None,
            0,
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/schedules/v1/{org}/{pid}/prod/daily-refresh"),
            None,
            0,
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/secrets/v1/{org}/{pid}/"),
            None,
            0,
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/gitops/v1/{org}/{pid}/snapshot"),
            None,
            0,
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/gitops/v1/{org}/{pid}/audit"),
            None,
            0,
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/gitops/v1/{org}/{pid}/lock"),
            None,
            0,
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/gitops/v1/whoami".to_string(),
            None,
            0,
            StatusCode::OK,
        ),
        (
            Method::POST,
            format!("/deployments/v1/{org}/{pid}/prod?force=true"),
            Some(deploy_body("prod", "main")),
            1,
            StatusCode::OK,
        ),
        (
            Method::PUT,
            format!("/schedules/v1/{org}/{pid}/prod/daily-refresh/enabled"),
            Some(json!(true)),
            1,
            StatusCode::NO_CONTENT,
        ),
        (
            Method::PUT,
            format!("/secrets/v1/{org}/{pid}/"),
            Some(json!({"name": "K", "value": "v"})),
            1,
            StatusCode::NO_CONTENT,
        ),
        (
            Method::POST,
            format!("/gitops/v1/{org}/{pid}/lock"),
            Some(json!({"lock_id": "m", "holder": "h", "operation": "apply", "ttl_seconds": 60})),
            1,
            StatusCode::OK,
        ),
        (
            Method::PUT,
            format!("/gitops/v1/{org}/{pid}/lock/m"),
            Some(json!({"ttl_seconds": 60})),
            1,
            StatusCode::OK,
        ),
        (
            Method::DELETE,
            format!("/gitops/v1/{org}/{pid}/lock/m"),
            None,
            1,
            StatusCode::NO_CONTENT,
        ),
        (
            Method::POST,
            format!("/gitops/v1/{org}/{pid}/audit"),
            Some(
                json!({"actor": "a", "git_commit": null, "plan_digest": "d", "changes": [], "outcome": "succeeded"}),
            ),
            1,
            StatusCode::CREATED,
        ),
        (
            Method::GET,
            format!("/gitops/v1/{org}/tokens"),
            None,
            2,
            StatusCode::OK,
        ),
    ];
    let tokens = [(0u8, &reader), (1, &maintainer), (2, &owner)];
    for (level, token) in tokens {
        let api = Api::new(&server, token);
        for (method, path, body, need, ok) in &cases {
            let (s, b) = api.call(method.clone(), path, body.clone()).await;
            if level >= *need {
                assert_eq!(s, *ok, "role level {level}: {method} {path}: {b}");
            } else {
                assert_eq!(
                    s,
                    StatusCode::FORBIDDEN,
                    "role level {level}: {method} {path}: {b}"
                );
                assert!(b["detail"].as_str().unwrap().contains("role"), "{b}");
            }
        }
        // creations that must not collide between roles
        let (s, _) = api
            .post(
                &format!("/projects/v1/{org}"),
                json!({"project_name": format!("p{level}"), "git_repository": "x"}),
            )
            .await;
        assert_eq!(
            s,
            if level == 2 {
                StatusCode::CREATED
            } else {
                StatusCode::FORBIDDEN
            }
        );
        let (s, _) = api
            .post(
                &format!("/gitops/v1/{org}/tokens"),
                json!({"role": "reader", "name": "r"}),
            )
            .await;
        assert_eq!(
            s,
            if level == 2 {
                StatusCode::CREATED
            } else {
                StatusCode::FORBIDDEN
            }
        );
        let (s, _) = api.delete(&format!("/secrets/v1/{org}/{pid}/K")).await;
        let expected = if level == 0 {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::NO_CONTENT
        };
        assert_eq!(s, expected);
    }
    let (_, me) = Api::new(&server, &maintainer)
        .get("/gitops/v1/whoami")
        .await;
    assert_eq!(
        me,
        json!({"tenant_resource_key": org, "role": "maintainer", "token_name": "maintainer"})
    );

    // 401: no token, unknown token, malformed header, revoked token
    let anon = reqwest::Client::new();
    let r = anon
        .get(format!("{}/projects/v1/{org}", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let (s, _) = Api::new(&server, "mct_0000")
        .get(&format!("/projects/v1/{org}"))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let r = anon
        .get(format!("{}/projects/v1/{org}", server.url()))
        .header("authorization", format!("Basic {owner}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let (_, tokens) = owner_api.get(&format!("/gitops/v1/{org}/tokens")).await;
    let reader_id = tokens["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "reader")
        .unwrap()["token_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !tokens.to_string().contains(&reader),
        "token list shows a token"
    );
    let (s, _) = owner_api
        .delete(&format!("/gitops/v1/{org}/tokens/{reader_id}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = Api::new(&server, &reader)
        .get(&format!("/projects/v1/{org}"))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = owner_api
        .delete(&format!("/gitops/v1/{org}/tokens/{reader_id}"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // a token created through the API works
    let (s, created) = owner_api
        .post(
            &format!("/gitops/v1/{org}/tokens"),
            json!({"role": "maintainer", "name": "ci"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let new_token = created["token"].as_str().unwrap();
    assert!(new_token.starts_with("mct_"));
    let (_, me) = Api::new(&server, new_token).get("/gitops/v1/whoami").await;
    assert_eq!(me["role"], "maintainer");

    let logs = server.logs();
    for t in [&owner, &maintainer, &reader] {
        assert!(
            !logs.contains(t.as_str()),
            "a token appears in the server log"
        );
    }
}

/// Another organization's objects answer 404, never 403.
pub async fn tenant_isolation(store: Store) {
    let repo = TestRepo::new();
    let server = start(store);
    let (org_a, pid_a, owner_a) = server.bootstrap(&repo);
    let (org_b, pid_b, owner_b) = server.bootstrap(&repo);
    assert_ne!(org_a, org_b);
    let a = Api::new(&server, &owner_a);
    let b = Api::new(&server, &owner_b);
    let (s, _) = a
        .post(
            &format!("/deployments/v1/{org_a}/{pid_a}/prod"),
            deploy_body("prod", "main"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    let foreign = [
        (Method::GET, format!("/projects/v1/{org_a}"), None),
        (
            Method::POST,
            format!("/projects/v1/{org_a}"),
            Some(json!({"project_name": "x", "git_repository": "x"})),
        ),
        (
            Method::GET,
            format!("/deployments/v1/{org_a}/{pid_a}"),
            None,
        ),
        (
            Method::GET,
            format!("/deployments/v1/{org_a}/{pid_a}/prod"),
            None,
        ),
        (
            Method::DELETE,
            format!("/deployments/v1/{org_a}/{pid_a}/prod"),
            None,
        ),
        (Method::GET, format!("/schedules/v1/{org_a}/{pid_a}"), None),
        (
            Method::PUT,
            format!("/schedules/v1/{org_a}/{pid_a}/prod/daily-refresh/enabled"),
            Some(json!(true)),
        ),
        (Method::GET, format!("/secrets/v1/{org_a}/{pid_a}/"), None),
        (
            Method::PUT,
            format!("/secrets/v1/{org_a}/{pid_a}/"),
            Some(json!({"name": "X", "value": "y"})),
        ),
        (
            Method::GET,
            format!("/gitops/v1/{org_a}/{pid_a}/snapshot"),
            None,
        ),
        (
            Method::POST,
            format!("/gitops/v1/{org_a}/{pid_a}/lock"),
            Some(json!({"lock_id": "l", "holder": "h", "operation": "o", "ttl_seconds": 5})),
        ),
        (
            Method::GET,
            format!("/gitops/v1/{org_a}/{pid_a}/audit"),
            None,
        ),
        (Method::GET, format!("/gitops/v1/{org_a}/tokens"), None),
        // org B's own path with org A's project id
        (
            Method::GET,
            format!("/deployments/v1/{org_b}/{pid_a}"),
            None,
        ),
        (
            Method::GET,
            format!("/gitops/v1/{org_b}/{pid_a}/snapshot"),
            None,
        ),
        (
            Method::PUT,
            format!("/secrets/v1/{org_b}/{pid_a}/"),
            Some(json!({"name": "X", "value": "y"})),
        ),
    ];
    for (method, path, body) in foreign {
        let (s, e) = b.call(method.clone(), &path, body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {e}");
    }
    // nothing leaked into A
    let (_, snap) = a.get(&format!("/gitops/v1/{org_a}/{pid_a}/snapshot")).await;
    assert_eq!(snap["revision"], 1);
    assert_eq!(snap["secrets"], json!([]));
    assert_eq!(snap["lock"], Value::Null);
    // and B works on its own project
    let (s, _) = b.get(&format!("/gitops/v1/{org_b}/{pid_b}/snapshot")).await;
    assert_eq!(s, StatusCode::OK);
}

/// Lock contention, idempotent retry, renewal, expiry and force-unlock.
pub async fn locks(store: Store) {
    let repo = TestRepo::new();
    let server = start(store);
    let (org, pid, token) = server.bootstrap(&repo);
    let api = Api::new(&server, &token);
    let lock = format!("/gitops/v1/{org}/{pid}/lock");
    let req = |id: &str, ttl: u64| json!({"lock_id": id, "holder": format!("holder-{id}"), "operation": "apply", "ttl_seconds": ttl});

    let (s, l1) = api.post(&lock, req("l1", 60)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(l1["holder"], "holder-l1");
    // the same lock id again: granted (a retried request)
    let (s, again) = api.post(&lock, req("l1", 60)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again["acquired_at"], l1["acquired_at"]);
    // another: 409 with the holder
    let (s, conflict) = api.post(&lock, req("l2", 60)).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(conflict["lock"]["lock_id"], "l1");
    assert_eq!(conflict["lock"]["holder"], "holder-l1");
    assert!(conflict["detail"].as_str().unwrap().contains("holder-l1"));
    let (_, snap) = api.get(&format!("/gitops/v1/{org}/{pid}/snapshot")).await;
    assert_eq!(snap["lock"]["lock_id"], "l1");
    let (_, current) = api.get(&lock).await;
    assert_eq!(current["lock_id"], "l1");

    // release is idempotent; force on an unknown id is 404
    let (s, _) = api.delete(&format!("{lock}/l1")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api.delete(&format!("{lock}/l1")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, e) = api.delete(&format!("{lock}/l1?force=true")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");

    // expiry: a 1 s lock is free after it expires, and its renewal then fails
    let (s, _) = api.post(&lock, req("short", 1)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api.post(&lock, req("l2", 60)).await;
    assert_eq!(s, StatusCode::CONFLICT);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (_, snap) = api.get(&format!("/gitops/v1/{org}/{pid}/snapshot")).await;
    assert_eq!(snap["lock"], Value::Null, "an expired lock is not shown");
    let (s, _) = api.post(&lock, req("l2", 60)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api
        .put(&format!("{lock}/short"), json!({"ttl_seconds": 60}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, renewed) = api
        .put(&format!("{lock}/l2"), json!({"ttl_seconds": 120}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(renewed["expires_at"].as_str().unwrap() > l1["expires_at"].as_str().unwrap());
    // force-unlock by id frees it for others
    let (s, _) = api.delete(&format!("{lock}/l2?force=true")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api.post(&lock, req("l3", 60)).await;
    assert_eq!(s, StatusCode::OK);
    // bad requests
    let (s, _) = api.post(&lock, req("l4", 0)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // concurrent acquirers: exactly one wins
    api.delete(&format!("{lock}/l3")).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let http = client(&token);
        let url = format!("{}{lock}", server.url());
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .json(&req(&format!("c{i}"), 60))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => won += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(won, 1);
}

/// The revision counts changes of deployments, schedules and secrets, nothing else.
pub async fn revisions(store: Store) {
    let repo = TestRepo::new();
    let server = start(store);
    let (org, pid, token) = server.bootstrap(&repo);
    let api = Api::new(&server, &token);
    assert_eq!(api.revision(&org, &pid).await, 0);
    let dep = format!("/deployments/v1/{org}/{pid}/prod");
    api.post(&dep, deploy_body("prod", "main")).await;
    assert_eq!(api.revision(&org, &pid).await, 1);
    // unchanged redeploy (204): no bump
    api.post(&dep, deploy_body("prod", "main")).await;
    assert_eq!(api.revision(&org, &pid).await, 1);
    let en = format!("/schedules/v1/{org}/{pid}/prod/daily-refresh/enabled");
    api.put(&en, json!(true)).await;
    assert_eq!(api.revision(&org, &pid).await, 2);
    // enabling an enabled schedule changes nothing
    api.put(&en, json!(true)).await;
    assert_eq!(api.revision(&org, &pid).await, 2);
    api.put(
        &format!("/secrets/v1/{org}/{pid}/"),
        json!({"name": "A", "value": "1"}),
    )
    .await;
    assert_eq!(api.revision(&org, &pid).await, 3);
    api.delete(&format!("/secrets/v1/{org}/{pid}/A")).await;
    assert_eq!(api.revision(&org, &pid).await, 4);
    // failed mutations do not bump
    api.delete(&format!("/secrets/v1/{org}/{pid}/A")).await;
    api.post(
        &format!("/deployments/v1/{org}/{pid}/x"),
        deploy_body("nope", "main"),
    )
    .await;
    assert_eq!(api.revision(&org, &pid).await, 4);
    // locks and audit records do not bump
    api.post(
        &format!("/gitops/v1/{org}/{pid}/lock"),
        json!({"lock_id": "l", "holder": "h", "operation": "apply", "ttl_seconds": 5}),
    )
    .await;
    api.post(&format!("/gitops/v1/{org}/{pid}/audit"), json!({"actor": "a", "git_commit": null, "plan_digest": "d", "changes": [], "outcome": "succeeded"})).await;
    assert_eq!(api.revision(&org, &pid).await, 4);
    let (s, e) = api
        .post(
            &format!("/gitops/v1/{org}/{pid}/audit"),
            json!({"actor": "a", "git_commit": null, "plan_digest": "d", "changes": [], "outcome": "done"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("succeeded, partial, failed")
    );
    api.delete(&dep).await;
    assert_eq!(api.revision(&org, &pid).await, 5);
}

/// A commit that adds a schedule reaches a deployment when it is updated; enabled flags
/// of schedules that remain are kept; `preserve_git_hash` keeps the deployed commit.
pub async fn deployment_follows_new_commit(store: Store) {
    let repo = TestRepo::new();
    let first = repo.head();
    let server = start(store);
    let (org, pid, token) = server.bootstrap(&repo);
    let api = Api::new(&server, &token);
    let dep = format!("/deployments/v1/{org}/{pid}/prod");
    api.post(&dep, deploy_body("prod", "main")).await;
    api.put(
        &format!("/schedules/v1/{org}/{pid}/prod/daily-refresh/enabled"),
        json!(true),
    )
    .await;

    let yml = DEFAULT_MELTANO_YML.replace(
        "- name: hourly-sync\n  interval: '0 * * * *'\n  job: sync\n",
        "- name: weekly-report\n  interval: '@weekly'\n  job: refresh\n",
    );
    assert_ne!(yml, DEFAULT_MELTANO_YML);
    let second = repo.commit_meltano_yml(&yml);

    // the deployment still shows the old commit's schedules
    let (_, list) = api.get(&format!("/schedules/v1/{org}/{pid}/prod")).await;
    let names: Vec<&str> = list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["schedule_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["daily-refresh", "hourly-sync"]);

    // preserve_git_hash: fields only, the commit stays
    let (s, d) = api
        .post(
            &format!("{dep}?preserve_git_hash=true&force=true"),
            deploy_body("prod", "main"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["git_rev_hash"], first.as_str());

    // an update picks up the new commit
    let (s, d) = api.post(&dep, deploy_body("prod", "main")).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["git_rev_hash"], second.as_str());
    let (_, list) = api.get(&format!("/schedules/v1/{org}/{pid}/prod")).await;
    let got: Vec<(String, bool)> = list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["schedule_name"].as_str().unwrap().to_string(),
                s["enabled"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("daily-refresh".to_string(), true),
            ("weekly-report".to_string(), false)
        ]
    );

    // a sha or a tag works as git_rev too
    repo.git(&["tag", "v1", &first]);
    let (s, d) = api
        .post(
            &format!("/deployments/v1/{org}/{pid}/pinned"),
            deploy_body("dev", "v1"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(d["git_rev_hash"], first.as_str());
    let (s, d) = api
        .post(
            &format!("/deployments/v1/{org}/{pid}/by-sha"),
            deploy_body("dev", &second[..10]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(d["git_rev_hash"], second.as_str());

    // include_paths and a root path inside the repository
    let mono = TestRepo::empty();
    mono.commit_file(
        "analytics/meltano.yml",
        "version: 1\nenvironments:\n- name: prod\ninclude_paths:\n- ./schedules/*.meltano.yml\n",
    );
    mono.commit_file(
        "analytics/schedules/a.meltano.yml",
        "schedules:\n- name: from-include\n  interval: '@hourly'\n  extractor: tap-x\n  loader: target-y\n",
    );
    let (s, p) = api
        .post(
            &format!("/projects/v1/{org}"),
            json!({"project_name": "mono", "git_repository": mono.url(), "project_root_path": "analytics"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let mono_pid = p["project_id"].as_str().unwrap();
    let (s, d) = api
        .post(
            &format!("/deployments/v1/{org}/{mono_pid}/prod"),
            deploy_body("prod", "main"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    let (_, list) = api
        .get(&format!("/schedules/v1/{org}/{mono_pid}/prod"))
        .await;
    assert_eq!(list["results"][0]["schedule_name"], "from-include");
    assert_eq!(list["results"][0]["interval"], "@hourly");
}

/// A secret value never reaches the database, the logs or any answer in plaintext.
pub async fn secrets_encrypted_at_rest(store: Store) {
    const PLANTED: &str = "planted-value-7f3a9c1e";
    let repo = TestRepo::new();
    let server = start(store);
    let (org, pid, token) = server.bootstrap(&repo);
    let api = Api::new(&server, &token);
    let (s, _) = api
        .put(
            &format!("/secrets/v1/{org}/{pid}/"),
            json!({"name": "TAP_PASSWORD", "value": PLANTED}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, snap) = api.get(&format!("/gitops/v1/{org}/{pid}/snapshot")).await;
    assert!(!snap.to_string().contains(PLANTED));
    let (_, list) = api.get(&format!("/secrets/v1/{org}/{pid}/")).await;
    assert!(!list.to_string().contains(PLANTED));

    match store {
        Store::Sqlite => {
            let db = server.db.sqlite_path().unwrap();
            let mut bytes = Vec::new();
            for suffix in ["", "-wal", "-shm"] {
                let mut p = db.clone().into_os_string();
                p.push(suffix);
                if let Ok(b) = std::fs::read(&p) {
                    bytes.extend(b);
                }
            }
            assert!(
                bytes
                    .windows(b"TAP_PASSWORD".len())
                    .any(|w| w == b"TAP_PASSWORD"),
                "the name is stored"
            );
            assert!(
                !bytes
                    .windows(PLANTED.len())
                    .any(|w| w == PLANTED.as_bytes()),
                "plaintext in the SQLite file"
            );
            let key = std::fs::read_to_string(format!("{}.key", db.display())).unwrap();
            assert_eq!(key.trim().len(), 64);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(format!("{}.key", db.display()))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600);
            }
        }
        Store::Postgres => {
            let rows = server.db.pg_rows("SELECT name, ciphertext FROM secrets");
            assert_eq!(rows.len(), 1);
            let ct = rows[0][1].clone().unwrap();
            assert!(ct.starts_with("v1:"));
            assert!(!ct.contains(PLANTED));
            let dump = server
                .db
                .pg_rows("SELECT string_agg(t::text, ' ') FROM secrets t");
            assert!(!format!("{dump:?}").contains(PLANTED));
        }
    }
    assert!(
        !server.logs().contains(PLANTED),
        "the value is in the server log"
    );
}

/// SIGTERM stops the server cleanly; a restart keeps the state.
pub async fn restart_keeps_state(store: Store) {
    let repo = TestRepo::new();
    let mut server = start(store);
    let (org, pid, token) = server.bootstrap(&repo);
    let api = Api::new(&server, &token);
    api.put(
        &format!("/secrets/v1/{org}/{pid}/"),
        json!({"name": "A", "value": "1"}),
    )
    .await;
    assert!(server.stop(), "graceful shutdown exits 0");
    assert!(server.logs().contains("control plane stopped"));
    server.restart();
    let api = Api::new(&server, &token);
    let (_, snap) = api.get(&format!("/gitops/v1/{org}/{pid}/snapshot")).await;
    assert_eq!(snap["revision"], 1);
    assert_eq!(snap["secrets"][0]["name"], "A");
}

/// `admin seed` fills a project in one transaction (one revision).
pub async fn seed_and_snapshot(store: Store) {
    let repo = TestRepo::new();
    let server = start(store);
    let (org, pid, token) = server.bootstrap(&repo);
    server.admin(&[
        "seed",
        "--org",
        &org,
        "--project",
        "jaffle-shop",
        "--deployments",
        "12",
        "--schedules",
        "7",
        "--secrets",
        "30",
    ]);
    let api = Api::new(&server, &token);
    let (_, snap) = api.get(&format!("/gitops/v1/{org}/{pid}/snapshot")).await;
    assert_eq!(snap["revision"], 1);
    let deps = snap["deployments"].as_array().unwrap();
    assert_eq!(deps.len(), 12);
    assert!(
        deps.iter()
            .all(|d| d["schedules"].as_array().unwrap().len() == 7)
    );
    assert_eq!(snap["secrets"].as_array().unwrap().len(), 30);
    // seeding again collides with the generated names and changes nothing
    let out = server.admin_output(&[
        "seed",
        "--org",
        &org,
        "--project",
        &pid,
        "--deployments",
        "1",
    ]);
    assert!(!out.status.success());
    assert_eq!(api.revision(&org, &pid).await, 1);
}

/// `--simulate-latency` and `--simulate-faults` make the server slow and flaky on purpose.
pub async fn simulated_latency_and_faults(store: Store) {
    let repo = TestRepo::new();
    let server = TestServer::start(
        store,
        ServerOptions::new().args([
            "--simulate-latency",
            "120ms",
            "--simulate-faults",
            "PUT:/schedules/*=1@503,DELETE:/secrets/*=1@drop",
        ]),
    );
    let (org, pid, token) = server.bootstrap(&repo);
    let api = Api::new(&server, &token);
    let started = std::time::Instant::now();
    let (s, _) = api
        .post(
            &format!("/deployments/v1/{org}/{pid}/prod"),
            deploy_body("prod", "main"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(
        started.elapsed() >= Duration::from_millis(120),
        "latency is added"
    );

    // 503 without doing anything
    let (s, e) = api
        .put(
            &format!("/schedules/v1/{org}/{pid}/prod/daily-refresh/enabled"),
            json!(true),
        )
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(e["detail"], "simulated fault");
    let (_, one) = api
        .get(&format!("/schedules/v1/{org}/{pid}/prod/daily-refresh"))
        .await;
    assert_eq!(one["enabled"], false);

    // dropped connection after the request was done: the caller sees an error, the change happened
    api.put(
        &format!("/secrets/v1/{org}/{pid}/"),
        json!({"name": "A", "value": "1"}),
    )
    .await;
    let result = client(&token)
        .delete(format!("{}/secrets/v1/{org}/{pid}/A", server.url()))
        .send()
        .await;
    let failed = match result {
        Err(_) => true,
        Ok(resp) => resp.bytes().await.is_err(),
    };
    assert!(failed, "the answer must be lost");
    let (_, list) = api.get(&format!("/secrets/v1/{org}/{pid}/")).await;
    assert_eq!(list["results"], json!([]));
    assert!(server.logs().contains("simulated fault"));
}

/// 200 concurrent clients read snapshots and write for a bounded time: only designed
/// contention answers (409 on the lock) fail, and the revision equals the number of
/// successful mutations.
pub async fn load_200_clients(store: Store) {
    let seconds: u64 = std::env::var("MELTANO_CLOUD_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    const CLIENTS: usize = 200;
    let repo = TestRepo::new();
    let server = start(store);
    let (org, pid, token) = server.bootstrap(&repo);
    // 10 deployments x 20 schedules: every client owns one schedule and flips it, so each
    // of its writes is a real change.
    server.admin(&[
        "seed",
        "--org",
        &org,
        "--project",
        &pid,
        "--deployments",
        "10",
        "--schedules",
        "20",
        "--secrets",
        "50",
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let http = client(&token);
        let base = server.url().to_string();
        let (org, pid) = (org.clone(), pid.clone());
        tasks.push(tokio::spawn(async move {
            let mut mutations = 0u64;
            let mut reads = 0u64;
            let mut conflicts = 0u64;
            let mut enabled = false;
            let dep = format!("deploy-{:04}", i / 20);
            let sch = format!("schedule-{:03}", i % 20);
            let mut n = 0u64;
            while std::time::Instant::now() < deadline {
                n += 1;
                let status = match n % 4 {
                    0 | 2 => {
                        reads += 1;
                        let r = http.get(format!("{base}/gitops/v1/{org}/{pid}/snapshot")).send().await.unwrap();
                        let status = r.status();
                        let body: Value = r.json().await.unwrap();
                        assert!(body["revision"].as_i64().unwrap() >= 1);
                        status
                    }
                    1 => {
                        enabled = !enabled;
                        let r = http
                            .put(format!("{base}/schedules/v1/{org}/{pid}/{dep}/{sch}/enabled"))
                            .json(&enabled)
                            .send()
                            .await
                            .unwrap();
                        if r.status().is_success() {
                            mutations += 1;
                        }
                        r.status()
                    }
                    _ if i % 10 == 0 => {
                        let r = http
                            .post(format!("{base}/gitops/v1/{org}/{pid}/lock"))
                            .json(&json!({"lock_id": format!("c{i}-{n}"), "holder": format!("client {i}"), "operation": "load", "ttl_seconds": 1}))
                            .send()
                            .await
                            .unwrap();
                        if r.status() == StatusCode::OK {
                            http.delete(format!("{base}/gitops/v1/{org}/{pid}/lock/c{i}-{n}")).send().await.unwrap();
                        } else if r.status() == StatusCode::CONFLICT {
                            conflicts += 1;
                            continue;
                        }
                        r.status()
                    }
                    _ => {
                        let r = http
                            .put(format!("{base}/secrets/v1/{org}/{pid}/"))
                            .json(&json!({"name": format!("LOAD_{i}"), "value": format!("v{n}")}))
                            .send()
                            .await
                            .unwrap();
                        if r.status().is_success() {
                            mutations += 1;
                        }
                        r.status()
                    }
                };
                assert!(status.is_success(), "client {i}: unexpected {status}");
            }
            (mutations, reads, conflicts)
        }));
    }
    let (mut mutations, mut reads, mut conflicts) = (0, 0, 0);
    for t in tasks {
        let (m, r, c) = t.await.expect("client task");
        mutations += m;
        reads += r;
        conflicts += c;
    }
    let api = Api::new(&server, &token);
    let revision = api.revision(&org, &pid).await;
    println!(
        "{store:?}: {CLIENTS} clients, {seconds} s: {reads} snapshot reads, {mutations} mutations, {conflicts} lock conflicts, {:.0} requests/s",
        (reads + mutations + conflicts) as f64 / seconds as f64
    );
    assert!(mutations > 0 && reads > 0);
    assert_eq!(
        revision,
        1 + mutations as i64,
        "revision counts every mutation exactly once"
    );
}

/// A snapshot served from one replica's cache reflects a change made through another.
pub async fn snapshot_current_across_replicas(store: Store) {
    let repo = TestRepo::new();
    let a = start(store);
    let (org, pid, token) = a.bootstrap(&repo);
    let b = a.replica(ServerOptions::default());
    let api_a = Api::new(&a, &token);
    let api_b = Api::new(&b, &token);
    api_a
        .post(
            &format!("/deployments/v1/{org}/{pid}/prod"),
            deploy_body("prod", "main"),
        )
        .await;
    let (_, first) = api_a.get(&format!("/gitops/v1/{org}/{pid}/snapshot")).await;
    let (_, again) = api_a.get(&format!("/gitops/v1/{org}/{pid}/snapshot")).await;
    assert_eq!(first, again);
    let (s, _) = api_b
        .put(
            &format!("/schedules/v1/{org}/{pid}/prod/hourly-sync/enabled"),
            json!(true),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    api_b
        .post(
            &format!("/gitops/v1/{org}/{pid}/lock"),
            json!({"lock_id": "b", "holder": "replica b", "operation": "apply", "ttl_seconds": 60}),
        )
        .await;
    let (_, after) = api_a.get(&format!("/gitops/v1/{org}/{pid}/snapshot")).await;
    assert_eq!(after["revision"], 2);
    assert_eq!(after["deployments"][0]["schedules"][1]["enabled"], true);
    assert_eq!(after["lock"]["holder"], "replica b");
    let typed: meltano_cloud::api::Snapshot = serde_json::from_value(after).unwrap();
    assert_eq!(typed.deployments[0].schedules.len(), 2);
}

/// `protected` is recorded on the deployment: set and cleared by deploy requests, kept when
/// absent, part of the "nothing changed" comparison, returned everywhere, and it makes
/// `DELETE` answer 409 until cleared. Survives a restart (it is in the database).
pub async fn protected_deployments(store: Store) {
    let repo = TestRepo::new();
    let mut server = start(store);
    let (org, pid, token) = server.bootstrap(&repo);
    let api = Api::new(&server, &token);
    let path = format!("/deployments/v1/{org}/{pid}/production");

    // A new deployment is unprotected unless asked.
    let (s, d) = api.post(&path, deploy_body("prod", "main")).await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    assert_eq!(d["protected"], false, "{d}");

    // Setting the flag alone is a change; repeating it is not.
    let rev = api.revision(&org, &pid).await;
    let mut body = deploy_body("prod", "main");
    body["protected"] = json!(true);
    let (s, d) = api.post(&path, body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["protected"], true, "{d}");
    assert_eq!(api.revision(&org, &pid).await, rev + 1);
    let (s, _) = api.post(&path, body).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // Absent keeps the current value.
    let (s, _) = api.post(&path, deploy_body("prod", "main")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    let (s, d) = api.get(&path).await;
    assert_eq!((s, &d["protected"]), (StatusCode::OK, &json!(true)), "{d}");
    let (_, list) = api.get(&format!("/deployments/v1/{org}/{pid}")).await;
    assert_eq!(list["results"][0]["protected"], true, "{list}");
    let (_, snap) = api.get(&format!("/gitops/v1/{org}/{pid}/snapshot")).await;
    let snap_text = snap.to_string();
    assert!(snap_text.contains("\"protected\":true"), "{snap_text}");

    // Delete is refused with how to unprotect, and the deployment stays.
    let (s, e) = api.delete(&path).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    let detail = e["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("is protected"), "{detail}");
    assert!(detail.contains("protected: false"), "{detail}");
    let (s, _) = api.get(&path).await;
    assert_eq!(s, StatusCode::OK);

    // The flag is stored, not cached.
    server.restart();
    let api = Api::new(&server, &token);
    let (s, d) = api.get(&path).await;
    assert_eq!((s, &d["protected"]), (StatusCode::OK, &json!(true)), "{d}");
    let (s, _) = api.delete(&path).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Clearing it (keeping the deployed commit) allows the delete.
    let mut body = deploy_body("prod", "main");
    body["protected"] = json!(false);
    let (s, d) = api
        .post(&format!("{path}?preserve_git_hash=true"), body)
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["protected"], false, "{d}");
    let (s, e) = api.delete(&path).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{e}");
    let (s, _) = api.get(&path).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
