//! The OpenAPI document describes every route, and every route does what its security
//! requirement says: 401 without credentials, 403 for a user on admin routes.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestDb, TestServer, code};

/// The role an operation requires (its security scope), or `None` when public.
fn required_role(op: &Value) -> Option<String> {
    let reqs = op["security"]
        .as_array()
        .expect("every operation declares its security");
    let scopes: Vec<String> = reqs
        .iter()
        .flat_map(|r| r.as_object().unwrap().values())
        .flat_map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
        })
        .collect();
    if scopes.is_empty() {
        return None;
    }
    Some(if scopes.iter().any(|s| s == "admin") {
        "admin".into()
    } else {
        scopes[0].clone()
    })
}

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "2001" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_route_declares_and_enforces_who_may_call_it() {
    let server = TestServer::start(TestDb::sqlite().await).await;
    let anonymous = server.client();
    let (status, doc) = anonymous.get("/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let admin = server.admin().await;
    let user = server.user(&admin, "2001").await;
    // A second user whose data the first must not reach.
    let (status, _) = admin
        .post(
            "/api/extensions",
            json!({"number": "2002", "name": "Other"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        "/api/auth/login",
        "/api/extensions",
        "/api/extensions/{number}",
        "/api/extensions/import",
        "/healthz",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(expected),
            "{expected} missing from the OpenAPI document"
        );
    }
    let mut checked = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let url = concrete(path);
            let body =
                matches!(method, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
            match required_role(op).as_deref() {
                None => {
                    let (status, _) = anonymous.send(method.clone(), &url, body.clone()).await;
                    assert_ne!(
                        status,
                        StatusCode::UNAUTHORIZED,
                        "{method} {path} is documented public but wants credentials"
                    );
                }
                Some(role) => {
                    let (status, err) = anonymous.send(method.clone(), &url, body.clone()).await;
                    assert_eq!(
                        status,
                        StatusCode::UNAUTHORIZED,
                        "{method} {path} without credentials: {err}"
                    );
                    assert_eq!(code(&err), "unauthenticated");
                    if role == "admin" {
                        let (status, err) = user.send(method.clone(), &url, body.clone()).await;
                        assert_eq!(
                            status,
                            StatusCode::FORBIDDEN,
                            "{method} {path} as a user: {err}"
                        );
                        assert_eq!(code(&err), "admin_required");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 12, "only {checked} protected operations found");
    server.stop().await;
}
