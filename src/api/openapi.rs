//! The OpenAPI document (`GET /openapi.json`, utoipa's model) and a small docs page (`GET /docs`).
//!
//! The document is generated from the same route list the router is built from
//! ([`super::RouteDoc`]), so it cannot miss a route: every path, method, path parameter, whether
//! it takes a JSON body, its success status, Chroma's error body, and which routes need a token.
//! Bodies are described as JSON objects; chroma-api.md is the field-level contract.

use std::sync::OnceLock;

use axum::http::{header, Method};
use axum::response::{Html, IntoResponse, Response};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Required, ResponseBuilder,
};

use super::auth::Need;
use super::RouteDoc;

fn http_method(m: &Method) -> Option<HttpMethod> {
    Some(match *m {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        _ => return None,
    })
}

/// `{name}` segments of a route template.
pub fn path_params(template: &str) -> Vec<&str> {
    template
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

fn json_object(description: &str) -> ContentBuilder {
    ContentBuilder::new().schema(Some(
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(description)),
    ))
}

fn error_body() -> ContentBuilder {
    ContentBuilder::new().schema(Some(
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("error", ObjectBuilder::new().schema_type(Type::String))
            .property("message", ObjectBuilder::new().schema_type(Type::String))
            .required("error")
            .required("message"),
    ))
}

/// Builds the document for `routes`.
pub fn document(routes: &[RouteDoc]) -> OpenApi {
    let mut paths = PathsBuilder::new().build();
    for r in routes {
        let Some(method) = http_method(&r.method) else {
            continue;
        };
        let mut op = OperationBuilder::new()
            .summary(Some(r.summary))
            .operation_id(Some(format!(
                "{}_{}",
                r.method.as_str().to_lowercase(),
                r.path
                    .trim_start_matches('/')
                    .replace(['/', '{', '}', '-'], "_")
            )))
            .tag(r.tag);
        for p in path_params(&r.path) {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(p)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
        if matches!(r.method, Method::POST | Method::PUT | Method::PATCH) {
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .content("application/json", json_object("See chroma-api.md").build())
                    .build(),
            ));
        }
        let ok = if r.path.ends_with("/add") {
            "201"
        } else {
            "200"
        };
        op = op
            .response(
                ok,
                ResponseBuilder::new()
                    .description("Success")
                    .content("application/json", json_object("Response body").build()),
            )
            .response(
                "default",
                ResponseBuilder::new()
                    .description("Chroma's error body: 400 invalid argument, 401 AuthError, 403 AuthorizationError, 404 NotFoundError, 409 exists, 413, 422 wrong shape, 500")
                    .content("application/json", error_body().build()),
            );
        if !matches!(r.need, Need::Open) {
            op = op.description(Some(format!(
                "Needs a token when auth is on ({:?} access).",
                r.need
            )));
        }
        paths.add_path_operation(&r.path, vec![method], op.build());
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("vectord")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Chroma's HTTP API (v2). Pre-1.0 clients' /api/v1 routes are served by translation \
                     to these routes. Auth: Authorization: Bearer, X-Chroma-Token or basic.",
                )),
        )
        .paths(paths)
        .build()
}

/// `GET /openapi.json`.
pub async fn openapi_json() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let body = DOC.get_or_init(|| {
        document(&super::route_docs())
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"InternalError\",\"message\":\"{e}\"}}"))
    });
    ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
}

/// `GET /docs`: a self-contained page (no external assets: the servers have no internet) that
/// lists the operations of `/openapi.json`.
pub async fn docs_page() -> Html<&'static str> {
    Html(DOCS_HTML)
}

const DOCS_HTML: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vectord API</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:70em}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
code{font-size:13px}.m{font-weight:bold;text-transform:uppercase;width:5em}
</style></head>
<body><h1>vectord API</h1>
<p>Chroma-compatible HTTP API. Machine-readable: <a href="/openapi.json">/openapi.json</a>.</p>
<table id="ops"><thead><tr><th>method</th><th>path</th><th>summary</th><th>tag</th></tr></thead><tbody></tbody></table>
<script>
fetch('/openapi.json').then(r=>r.json()).then(doc=>{
  const tb=document.querySelector('#ops tbody');
  for(const [path,item] of Object.entries(doc.paths)){
    for(const [m,op] of Object.entries(item)){
      if(typeof op!=='object'||!op.responses)continue;
      const tr=document.createElement('tr');
      for(const [cls,txt] of [['m',m],['',path],['',(op.summary||'')+(op.description?' — '+op.description:'')],['',(op.tags||[]).join(',')]]){
        const td=document.createElement('td');td.className=cls;
        if(cls===''&&txt===path){const c=document.createElement('code');c.textContent=txt;td.appendChild(c);}else td.textContent=txt;
        tr.appendChild(td);
      }
      tb.appendChild(tr);
    }
  }
});
</script></body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_of_templates() {
        assert_eq!(
            path_params("/api/v2/tenants/{tenant}/databases/{database}"),
            vec!["tenant", "database"]
        );
        assert!(path_params("/api/v2/heartbeat").is_empty());
    }
}
