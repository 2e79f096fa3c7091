//! Errors as RFC 9457 problem documents (`application/problem+json`), one stable
//! `type` per kind of error.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ec2_scheduler_app::access::Refused;
use ec2_scheduler_app::{Error, Kind};
use serde::Serialize;
use utoipa::ToSchema;

/// The kinds of problem, each with its `type` URI and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    Invalid,
    NotFound,
    Conflict,
    Locked,
    PreconditionFailed,
    /// The request is well formed but cannot be applied as asked (an idempotency
    /// key reused for another request).
    Unprocessable,
    Unauthenticated,
    Forbidden,
    Upstream,
    Internal,
}

impl ProblemKind {
    pub fn slug(self) -> &'static str {
        match self {
            ProblemKind::Invalid => "invalid",
            ProblemKind::NotFound => "not-found",
            ProblemKind::Conflict => "conflict",
            ProblemKind::Locked => "locked",
            ProblemKind::PreconditionFailed => "precondition-failed",
            ProblemKind::Unprocessable => "unprocessable",
            ProblemKind::Unauthenticated => "unauthenticated",
            ProblemKind::Forbidden => "forbidden",
            ProblemKind::Upstream => "upstream",
            ProblemKind::Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ProblemKind::Invalid => StatusCode::BAD_REQUEST,
            ProblemKind::NotFound => StatusCode::NOT_FOUND,
            ProblemKind::Conflict | ProblemKind::Locked => StatusCode::CONFLICT,
            ProblemKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ProblemKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ProblemKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ProblemKind::Forbidden => StatusCode::FORBIDDEN,
            ProblemKind::Upstream => StatusCode::BAD_GATEWAY,
            ProblemKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn title(self) -> &'static str {
        match self {
            ProblemKind::Invalid => "The request is not valid",
            ProblemKind::NotFound => "Not found",
            ProblemKind::Conflict => "Conflict with the current state",
            ProblemKind::Locked => "The workload is busy with another run",
            ProblemKind::PreconditionFailed => "The resource changed since it was read",
            ProblemKind::Unprocessable => "The request cannot be applied as asked",
            ProblemKind::Unauthenticated => "Credentials are missing or not valid",
            ProblemKind::Forbidden => "The caller's role does not allow this",
            ProblemKind::Upstream => "AWS or the store failed",
            ProblemKind::Internal => "Internal error",
        }
    }
}

/// An error answer: a boxed [`ProblemDocument`].
#[derive(Debug, Clone)]
pub struct Problem(Box<ProblemDocument>);

impl std::ops::Deref for Problem {
    type Target = ProblemDocument;
    fn deref(&self) -> &ProblemDocument {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut ProblemDocument {
        &mut self.0
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemDocument {
    /// `urn:ec2-scheduler:problem:<kind>`, stable for each kind of error.
    #[serde(rename = "type")]
    pub kind_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Field-level problems of a document, when there are several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// The run that holds the workload (for `locked`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip)]
    kind: Option<ProblemKind>,
}

impl Problem {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Problem {
        Problem(Box::new(ProblemDocument {
            kind_uri: format!("urn:ec2-scheduler:problem:{}", kind.slug()),
            title: kind.title().to_string(),
            status: kind.status().as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            run_id: None,
            kind: Some(kind),
        }))
    }

    pub fn kind(&self) -> Option<ProblemKind> {
        self.kind
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Problem {
        let kind = match (&e, e.kind()) {
            (Error::Busy(_), _) => ProblemKind::Locked,
            (_, Kind::Invalid) => ProblemKind::Invalid,
            (_, Kind::NotFound) => ProblemKind::NotFound,
            (_, Kind::Conflict) => ProblemKind::Conflict,
            (_, Kind::Forbidden | Kind::Upstream) => ProblemKind::Upstream,
            (_, Kind::Internal) => ProblemKind::Internal,
        };
        let mut p = Problem::new(kind, e.to_string());
        if let Error::Busy(lock) = &e {
            p.run_id = Some(lock.run_id.clone());
        }
        if let Error::Config(d) = &e {
            p.errors = d.errors().map(|x| x.to_string()).collect();
            p.detail = format!("{} error(s) in the document", p.errors.len());
        }
        p
    }
}

impl From<Refused> for Problem {
    fn from(r: Refused) -> Problem {
        Problem::new(ProblemKind::Unauthenticated, r.to_string())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let unauthenticated = self.kind == Some(ProblemKind::Unauthenticated);
        let body = serde_json::to_vec(&*self.0).unwrap_or_default();
        let mut r = (status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if unauthenticated {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ec2-scheduler\""),
            );
        }
        r
    }
}
