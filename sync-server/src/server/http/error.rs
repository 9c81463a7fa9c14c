//! The HTTP API's errors: a status and a JSON body `{"code", "message"}`
//! whose code is one of the protocol's (`docs/protocol.md`, Error codes),
//! or `not_found`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use store_core::sync::session::Denied;
use store_core::sync::{ErrorCode, Reject};

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The `WWW-Authenticate` challenge of a 401.
    challenge: Option<&'static str>,
    /// The methods of the `Allow` header of a 405.
    allow: Option<&'static str>,
}

impl HttpError {
    /// An error with the protocol's `code`, at the status that fits it.
    pub(crate) fn of(code: ErrorCode, message: impl Into<String>) -> HttpError {
        HttpError {
            status: status(code),
            code: code.as_str(),
            message: message.into(),
            challenge: (code == ErrorCode::Unauthorized).then_some(r#"Bearer error="invalid_token""#),
            allow: None,
        }
    }

    /// 400 `bad_message`: the request is malformed.
    pub(crate) fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::of(ErrorCode::BadMessage, message)
    }

    /// 404 `not_found`: no such entry, or no such path.
    pub(crate) fn not_found(message: impl Into<String>) -> HttpError {
        HttpError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
            challenge: None,
            allow: None,
        }
    }

    /// 401 `unauthorized` without a token: the challenge names no error
    /// (RFC 6750, section 3).
    pub(crate) fn no_token(message: impl Into<String>) -> HttpError {
        HttpError {
            challenge: Some("Bearer"),
            ..HttpError::of(ErrorCode::Unauthorized, message)
        }
    }

    /// 405 `bad_message`: the path does not take this method.
    pub(crate) fn method_not_allowed(allow: &'static str) -> HttpError {
        HttpError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            allow: Some(allow),
            ..HttpError::bad_request(format!("this path takes {allow}"))
        }
    }

    /// 415 `bad_message`: the body is not of the type the method takes.
    pub(crate) fn media_type(message: impl Into<String>) -> HttpError {
        HttpError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ..HttpError::bad_request(message)
        }
    }

    /// 500 `internal`.
    pub(crate) fn internal(message: impl Into<String>) -> HttpError {
        HttpError::of(ErrorCode::Internal, message)
    }
}

impl From<Reject> for HttpError {
    fn from(reject: Reject) -> HttpError {
        HttpError::of(reject.code, reject.message)
    }
}

impl From<Denied> for HttpError {
    fn from(denied: Denied) -> HttpError {
        HttpError::of(denied.code, denied.message)
    }
}

impl From<store_core::Error> for HttpError {
    fn from(e: store_core::Error) -> HttpError {
        HttpError::of(ErrorCode::of(&e), e.to_string())
    }
}

/// The body of an error.
#[derive(Serialize)]
struct Refusal {
    code: &'static str,
    message: String,
}

/// The status that answers a refusal with the protocol's `code`.
pub(crate) fn status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadMessage
        | ErrorCode::UnknownType
        | ErrorCode::HelloExpected
        | ErrorCode::UnsupportedProtocol
        | ErrorCode::KindRequired
        | ErrorCode::KeyTooLong
        | ErrorCode::InvalidKey => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::KeyNotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::PRECONDITION_FAILED,
        ErrorCode::TooLarge | ErrorCode::TooManyInFlight => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Validation => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = Refusal {
            code: self.code,
            message: self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(challenge) = self.challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
