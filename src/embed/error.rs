//! Why text could not be embedded. Each variant says whose fault it was, so the HTTP layer can
//! answer 400 for the caller's mistakes and 502/503/504 for the provider's.

use std::time::Duration;

/// An embedding failure. Nothing is written when a write's embedding fails.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmbedError {
    /// The server has no embedder configured (no base URL and no API key).
    #[error(
        "server-side embedding is not configured: send `embeddings` (or `query_embeddings`), or \
         start vectord with --embed-base-url and/or an API key (VECTORD_EMBED_API_KEY or OPENAI_API_KEY)"
    )]
    NotConfigured,
    /// The collection's embedding function runs in the client (or is unknown), so the server
    /// must not substitute another model.
    #[error(
        "collection's embedding function {0} is computed by the client; vectord embeds text only \
         for collections with the `openai` embedding function or none; send embeddings instead"
    )]
    ClientSideFunction(String),
    /// The collection's `embedding_function` configuration is malformed or not allowed.
    #[error("collection's embedding function configuration is not usable: {0}")]
    BadFunctionConfig(String),
    /// The model named by the collection is not on the server's allow-list.
    #[error("embedding model {model:?} is not allowed on this server; allowed: {allowed}")]
    ModelNotAllowed {
        /// The model the collection named.
        model: String,
        /// The allowed models, comma-separated.
        allowed: String,
    },
    /// A text that must be embedded is empty (the API rejects empty inputs).
    #[error("{what} at index {index} is empty; it cannot be embedded")]
    EmptyText {
        /// `document` or `query text`.
        what: &'static str,
        /// Position in the request.
        index: usize,
    },
    /// The provider rejected the input (HTTP 400/404/413/422: too long, unknown model, bad
    /// dimensions); the caller can change it.
    #[error("the embedding provider rejected the request ({status}): {message}")]
    Rejected {
        /// The provider's HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// The provider refused the server's credentials or permissions (401/403): an operator
    /// problem, not the caller's.
    #[error("the embedding provider refused the server's credentials ({status}): {message}")]
    Unauthorized {
        /// The provider's HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// Still rate limited (429) after every retry, or asked to wait longer than allowed.
    #[error("the embedding provider is rate limiting requests ({message}); retry later")]
    RateLimited {
        /// What the provider said, and how long it asked to wait.
        message: String,
        /// The provider's `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
    /// A 5xx or a connection failure that retries did not cure.
    #[error("the embedding provider failed: {0}")]
    Upstream(String),
    /// No complete response within the timeout, after every retry.
    #[error("the embedding provider did not answer within {0:?}")]
    Timeout(Duration),
    /// A 2xx response that is not a valid embeddings response, or vectors that do not fit the
    /// request (count, dimension, non-finite values).
    #[error("the embedding provider returned an invalid response: {0}")]
    BadResponse(String),
    /// The HTTP client could not be built.
    #[error("cannot set up the embedding client: {0}")]
    Setup(String),
}

impl EmbedError {
    /// True when the caller can fix the request (maps to a 400).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            EmbedError::NotConfigured
                | EmbedError::ClientSideFunction(_)
                | EmbedError::BadFunctionConfig(_)
                | EmbedError::ModelNotAllowed { .. }
                | EmbedError::EmptyText { .. }
                | EmbedError::Rejected { .. }
        )
    }
}
