//! The server's error type and its HTTP status.

use uie_runtime::RuntimeError;

/// Why a request failed (or the server could not start).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The request is malformed or does not fit the model (400); the message names the input.
    #[error("{0}")]
    BadRequest(String),
    /// The request names a model or version this server does not serve (404).
    #[error("{0}")]
    NotFound(String),
    /// The method is not allowed on this path (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body or the batch is above the server's limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// The model rejected the request (400) or failed while running (500).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The server could not bind its address.
    #[error("binding {addr}: {message}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why it failed.
        message: String,
    },
    /// The request could not be read (timeout, client gone, bad framing); see
    /// [`HttpError::status`](crate::http::HttpError::status).
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    /// A socket error while answering.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl ServeError {
    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            ServeError::BadRequest(_) => 400,
            ServeError::NotFound(_) => 404,
            ServeError::MethodNotAllowed(_) => 405,
            ServeError::TooLarge(_) => 413,
            ServeError::Runtime(e) => match e {
                RuntimeError::Load { .. } | RuntimeError::Metadata(_) | RuntimeError::Run(_) => 500,
                _ => 400,
            },
            ServeError::Http(e) => e.status().unwrap_or(400),
            ServeError::Bind { .. } | ServeError::Io(_) => 500,
        }
    }
}
