//! `/openapi.json` and `/docs`: the document lists exactly the routes the router serves, every
//! route has an access rule, and every documented operation is really served.

use std::collections::BTreeSet;

use reqwest::Method;

use crate::support::in_process::start;

fn fill(template: &str) -> String {
    template
        .replace("{tenant}", "default_tenant")
        .replace("{database}", "default_database")
        .replace("{collection_id}", "4a1e6a52-0000-4000-8000-000000000000")
        .replace("{collection}", "nope")
        .replace("{crn}", "default_tenant:default_database:nope")
        .replace("{function}", "f")
        .replace("{name}", "n")
}

#[tokio::test]
async fn document_lists_every_served_route() {
    let s = start().await;
    let doc = s.get("/openapi.json").await;
    let doc = doc.ok(200);
    let routes = vectord::api::route_docs();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            if op.get("responses").is_some() {
                documented.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    let served: BTreeSet<(String, String)> = routes
        .iter()
        .map(|r| (r.method.as_str().to_string(), r.path.clone()))
        .collect();
    assert_eq!(documented, served);
    assert!(served.len() >= 35, "{}", served.len());
    for r in &routes {
        assert!(
            vectord::api::auth::rule(&r.method, &r.path).is_some(),
            "no access rule for {} {}",
            r.method,
            r.path
        );
        // The documented method is served on that path (neither "no route" nor 405)...
        let resp = s.req(r.method.clone(), &fill(&r.path), None).await;
        assert_ne!(resp.status.as_u16(), 405, "{} {}", r.method, r.path);
        assert!(
            !resp.text.contains("No route for"),
            "{} {} is not served: {}",
            r.method,
            r.path,
            resp.text
        );
    }
    // ...and no undocumented method is served on a documented path.
    let paths: BTreeSet<&String> = routes.iter().map(|r| &r.path).collect();
    for p in paths {
        for m in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ] {
            if served.contains(&(m.as_str().to_string(), p.clone())) {
                continue;
            }
            let resp = s.req(m.clone(), &fill(p), None).await;
            assert_eq!(
                resp.status.as_u16(),
                405,
                "{m} {p} is served but not documented"
            );
        }
    }
    let page = s.get("/docs").await;
    assert_eq!(page.status.as_u16(), 200);
    assert!(page.text.contains("/openapi.json"));
}
