//! An OpenAI-compatible `/v1/embeddings` server for the tests, on 127.0.0.1:0: deterministic
//! vectors (identical text → identical unit vector), scripted faults (429 with Retry-After,
//! 500, slow answers, malformed JSON, wrong counts, 401, 400), and a log of what it received.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// One scripted answer, used instead of a normal one for the next request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with these (header, value) pairs, e.g. `("retry-after", "1")`.
    RateLimited(Vec<(&'static str, String)>),
    /// 500 with a plain-text body.
    ServerError,
    /// Sleeps this long, then answers normally.
    Slow(Duration),
    /// 200 with a body that is not JSON.
    Malformed,
    /// 200 with one embedding too few.
    WrongCount,
    /// 401 whose message quotes the key it got, as some providers do.
    Unauthorized,
    /// 400 with an OpenAI-style error.
    BadRequest(&'static str),
}

/// What the server saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub model: String,
    pub dimensions: Option<u64>,
    pub inputs: Vec<String>,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Shared {
    faults: Mutex<VecDeque<Fault>>,
    /// A fault answered to every request when the queue is empty.
    always: Mutex<Option<Fault>>,
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Delay of every normal answer (to make batches overlap).
    delay: Mutex<Duration>,
}

/// A running fake; its task ends with the test runtime.
#[derive(Clone)]
pub struct FakeOpenAi {
    pub base_url: String,
    shared: Arc<Shared>,
}

/// The deterministic vector of `text`: `dims` values from an xorshift stream seeded by the
/// text's FNV-1a hash, normalised to unit length.
pub fn vector(text: &str, dims: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            ((h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Native sizes the fake gives models when no `dimensions` is sent.
fn native(model: &str) -> usize {
    match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => 1536,
        "text-embedding-3-large" => 3072,
        _ => 8,
    }
}

impl FakeOpenAi {
    pub async fn start() -> FakeOpenAi {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/embeddings", post(embeddings))
            .with_state(Arc::clone(&shared));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeOpenAi {
            base_url: format!("http://{addr}/v1"),
            shared,
        }
    }

    /// Queues faults for the next requests, in order.
    pub fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.faults.lock().extend(faults);
    }

    /// Answers every request with `fault` (when nothing is queued).
    pub fn always(&self, fault: Option<Fault>) {
        *self.shared.always.lock() = fault;
    }

    /// Delays every normal answer.
    pub fn delay(&self, d: Duration) {
        *self.shared.delay.lock() = d;
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().clone()
    }

    /// Most requests that were being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }
}

struct InFlight<'a>(&'a Shared);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn embeddings(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let now = sh.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    sh.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _guard = InFlight(&sh);
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let dimensions = body["dimensions"].as_u64();
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => vec![],
    };
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    sh.seen.lock().push(Seen {
        at: Instant::now(),
        model: model.clone(),
        dimensions,
        inputs: inputs.clone(),
        authorization: authorization.clone(),
    });
    let fault = sh
        .faults
        .lock()
        .pop_front()
        .or_else(|| sh.always.lock().clone());
    let dims = dimensions.map_or_else(|| native(&model), |d| d as usize);
    let mut n = inputs.len();
    match fault {
        Some(Fault::RateLimited(hs)) => {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "param": null, "code": "rate_limit_exceeded"}})),
            )
                .into_response();
            for (k, v) in hs {
                r.headers_mut().insert(k, v.parse().unwrap());
            }
            return r;
        }
        Some(Fault::ServerError) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded").into_response()
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        Some(Fault::Malformed) => {
            return (StatusCode::OK, [("content-type", "application/json")], "{\"data\": [").into_response()
        }
        Some(Fault::WrongCount) => n = n.saturating_sub(1),
        Some(Fault::Unauthorized) => {
            let msg = format!("Incorrect API key provided: {}", authorization.unwrap_or_default());
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": {"message": msg, "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})),
            )
                .into_response();
        }
        Some(Fault::BadRequest(msg)) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"message": msg, "type": "invalid_request_error", "param": "input", "code": null}})),
            )
                .into_response()
        }
        None => {}
    }
    let delay = *sh.delay.lock();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let data: Vec<Value> = inputs
        .iter()
        .take(n)
        .enumerate()
        // Reversed on purpose: clients must order by `index`, not by position.
        .rev()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector(t, dims)}))
        .collect();
    Json(json!({"object": "list", "model": model, "data": data,
        "usage": {"prompt_tokens": 1, "total_tokens": 1}}))
    .into_response()
}
