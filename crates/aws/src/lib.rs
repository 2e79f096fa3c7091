//! AWS adapters: the engine's ports on real AWS (or anything that speaks its APIs, such
//! as LocalStack or moto).
//!
//! **API boundary:** this is the only crate that sees aws-sdk types. Everything leaves
//! it as engine and core types; errors become [`ApiError`] with an [`ErrorKind`].
//!
//! - [`AwsCloud`]: EC2, classic and v2 load balancers, the SSM override-file probe and
//!   SNS, for one region and (optionally) one assumed role; clients built once.
//! - [`dynamo`]: the DynamoDB store, reading the original tool's tables as they are.
//! - [`pricing`]: on-demand prices from the Price List API.
//! - [`calls`]: the list of API actions the adapters call, for the IAM policy.

pub mod calls;
pub mod dynamo;
mod ec2;
mod elb;
pub mod pricing;
pub mod rds;
pub mod scheduler;
pub mod sfn;
mod sns;
pub mod ssm;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use ec2_scheduler_engine::ports::{ApiError, ErrorKind, Meter};

pub use calls::{CallCounter, Counting};

impl Meter for AwsCloud {
    fn requests(&self) -> BTreeMap<String, u64> {
        self.counter.snapshot()
    }
}

/// The session name under which a workload's role is assumed to run it.
pub const SESSION: &str = "ec2-scheduler";

/// The session name under which the serverless API assumes a workload's role: the
/// role (deploy/serverless/cross-account-role.yaml) lets its observer assume it only
/// under this name, and refuses that session every change.
pub const OBSERVER_SESSION: &str = "ec2-scheduler-observe";

/// How to reach AWS.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    /// Region of the workload (or of the DynamoDB tables).
    pub region: Option<String>,
    /// Endpoint for every service (e.g. a local emulator). `AWS_ENDPOINT_URL` in the
    /// environment is honoured as well.
    pub endpoint_url: Option<String>,
    /// Role to assume, with its external id.
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    /// The session name of the assumed role; `None`: [`SESSION`].
    pub session_name: Option<String>,
    /// Attempts per call inside the SDK (retries of throttling and 5xx); `None`: the
    /// SDK's default.
    pub max_attempts: Option<u32>,
}

/// Loads the standard AWS configuration chain (environment, profiles, SSO, instance
/// and container roles), then assumes the role when one is given.
pub async fn sdk_config(c: &Connect) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = &c.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(u) = &c.endpoint_url {
        loader = loader.endpoint_url(u.clone());
    }
    if let Some(n) = c.max_attempts {
        loader =
            loader.retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(n));
    }
    let base = loader.load().await;
    let Some(role) = &c.role_arn else {
        return base;
    };
    let mut provider = aws_config::sts::AssumeRoleProvider::builder(role.clone())
        .session_name(c.session_name.as_deref().unwrap_or(SESSION))
        .configure(&base);
    if let Some(e) = &c.external_id {
        provider = provider.external_id(e.clone());
    }
    let provider = provider.build().await;
    let mut builder = base.to_builder();
    builder.set_credentials_provider(Some(
        aws_credential_types::provider::SharedCredentialsProvider::new(provider),
    ));
    builder.build()
}

/// The clients of one region and identity.
pub struct AwsCloud {
    ec2: aws_sdk_ec2::Client,
    elb: aws_sdk_elasticloadbalancing::Client,
    elbv2: aws_sdk_elasticloadbalancingv2::Client,
    ssm: aws_sdk_ssm::Client,
    sns: aws_sdk_sns::Client,
    sts: aws_sdk_sts::Client,
    rds: aws_sdk_rds::Client,
    prices: pricing::PriceList,
    region: String,
    /// SNS topic ARNs by name, resolved once.
    topics: Mutex<BTreeMap<String, String>>,
    /// Every request sent, by action.
    pub counter: Arc<CallCounter>,
    /// Seconds an override-file command may run on the instance.
    pub probe_timeout_secs: i32,
    /// The SSM document of the override-file probe ([`ssm::document_name`]).
    pub override_document: String,
    /// Results per DescribeInstances page (5 to 1,000).
    pub page_size: i32,
}

impl AwsCloud {
    /// Clients for the configuration's region and credentials.
    pub fn new(config: &SdkConfig) -> Self {
        Self::with_counter(config, Arc::default())
    }

    /// Clients whose requests are counted by `counter` (which a store may share).
    pub fn with_counter(config: &SdkConfig, counter: Arc<CallCounter>) -> Self {
        let counting = Counting(counter.clone());
        macro_rules! client {
            ($sdk:ident) => {
                $sdk::Client::from_conf(
                    $sdk::config::Builder::from(config)
                        .interceptor(counting.clone())
                        .build(),
                )
            };
        }
        AwsCloud {
            ec2: client!(aws_sdk_ec2),
            elb: client!(aws_sdk_elasticloadbalancing),
            elbv2: client!(aws_sdk_elasticloadbalancingv2),
            ssm: client!(aws_sdk_ssm),
            sns: client!(aws_sdk_sns),
            sts: client!(aws_sdk_sts),
            rds: client!(aws_sdk_rds),
            prices: pricing::PriceList::new(config, counter.clone()),
            region: config.region().map(|r| r.to_string()).unwrap_or_default(),
            topics: Mutex::new(BTreeMap::new()),
            counter,
            probe_timeout_secs: 60,
            override_document: ssm::document_name(),
            page_size: 1000,
        }
    }

    /// The region these clients talk to.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Hourly on-demand prices in USD of `types` in this region, from the Price List
    /// API (see [`pricing`]).
    ///
    /// # Errors
    /// The API's errors.
    pub async fn on_demand_prices(
        &self,
        types: &[String],
    ) -> Result<BTreeMap<String, f64>, ApiError> {
        self.prices.on_demand(&self.region, types).await
    }
}

/// Instance ids named in a message (`i-` followed by at least 8 hex digits).
pub(crate) fn instance_ids_in(message: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = message.as_bytes();
    let mut i = 0;
    while i + 2 < b.len() {
        let starts =
            b[i] == b'i' && b[i + 1] == b'-' && (i == 0 || !b[i - 1].is_ascii_alphanumeric());
        if starts {
            let mut j = i + 2;
            while j < b.len() && b[j].is_ascii_hexdigit() {
                j += 1;
            }
            // Real ids have 8 or 17 hex digits.
            if j - i - 2 >= 8 {
                out.push(message[i..j].to_string());
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Turns an SDK error into an [`ApiError`] for `action` (e.g. `ec2:StopInstances`).
pub(crate) fn api_error<E>(
    action: &str,
    e: &aws_sdk_ec2::error::SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_ec2::error::SdkError;
    let (code, message) = match e {
        SdkError::ServiceError(_) => (
            e.code().unwrap_or("Unknown").to_string(),
            e.message().unwrap_or("").to_string(),
        ),
        SdkError::TimeoutError(_) => ("Timeout".to_string(), "the request timed out".to_string()),
        other => ("Transport".to_string(), chain(other)),
    };
    let status = e.raw_response().map(|r| r.status().as_u16());
    let server = status.is_some_and(|s| s >= 500)
        || matches!(
            e,
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        );
    let kind = classify(&code, server);
    let message = if kind == ErrorKind::AccessDenied {
        format!("{message} (the credentials need the IAM permission {action}; see docs/iam.md)")
    } else {
        message
    };
    ApiError {
        kind,
        action: action.to_string(),
        instances: instance_ids_in(&message),
        code,
        message,
    }
}

/// A request that could not be built (a required field missing): a defect here.
pub(crate) fn build_error(action: &str, e: &dyn std::error::Error) -> ApiError {
    ApiError {
        kind: ErrorKind::Other,
        action: action.to_string(),
        code: "BuildError".to_string(),
        message: e.to_string(),
        instances: Vec::new(),
    }
}

/// An error and its sources, joined with ": ".
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// The error kind of an AWS error code.
pub fn classify(code: &str, server_side: bool) -> ErrorKind {
    match code {
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "TooManyRequestsException"
        | "ThrottledException"
        | "RequestThrottled" => ErrorKind::Throttled,
        "IncorrectInstanceState"
        | "IncorrectState"
        | "InvalidInstanceState"
        | "InvalidDBInstanceState"
        | "InvalidDBInstanceStateFault"
        | "InvalidDBClusterStateFault" => ErrorKind::IncorrectState,
        "DBInstanceNotFound" | "DBInstanceNotFoundFault" | "DBClusterNotFoundFault" => {
            ErrorKind::NotFound
        }
        "InvalidInstanceID.NotFound"
        | "InvalidInstanceID.Malformed"
        | "InvalidInstanceID"
        | "InvalidInstance" => ErrorKind::NotFound,
        "InsufficientInstanceCapacity" | "InsufficientCapacity" => ErrorKind::InsufficientCapacity,
        "UnsupportedOperation"
        | "UnsupportedHibernationConfiguration"
        | "InvalidParameterCombination"
        | "UnsupportedInstanceAttribute" => ErrorKind::Unsupported,
        "UnauthorizedOperation"
        | "AccessDenied"
        | "AccessDeniedException"
        | "AuthorizationError" => ErrorKind::AccessDenied,
        "InternalError" | "InternalFailure" | "ServiceUnavailable" | "Unavailable" => {
            ErrorKind::Server
        }
        _ if server_side => ErrorKind::Server,
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_found_in_messages() {
        assert_eq!(
            instance_ids_in(
                "The instance 'i-0abc1234' is not in a state from which it can be started; also i-9f."
            ),
            ["i-0abc1234"]
        );
        assert_eq!(
            instance_ids_in("The instance IDs 'i-1a2b3c4d5e6f7a8b9, i-3c4d5e6f' do not exist"),
            ["i-1a2b3c4d5e6f7a8b9", "i-3c4d5e6f"]
        );
        assert!(instance_ids_in("multi-instance, ami-123").is_empty());
    }

    fn service_error(code: &str, message: &str, status: u16) -> ApiError {
        use aws_sdk_ec2::operation::stop_instances::StopInstancesError;
        use aws_smithy_runtime_api::http::{Response, StatusCode};
        use aws_smithy_types::body::SdkBody;
        let meta = aws_smithy_types::error::ErrorMetadata::builder()
            .code(code)
            .message(message)
            .build();
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        let e = aws_sdk_ec2::error::SdkError::service_error(StopInstancesError::generic(meta), raw);
        api_error("ec2:StopInstances", &e)
    }

    #[test]
    fn service_errors_become_api_errors() {
        let e = service_error(
            "UnauthorizedOperation",
            "You are not authorized to perform this operation.",
            403,
        );
        assert_eq!(e.kind, ErrorKind::AccessDenied);
        assert!(
            e.message
                .contains("need the IAM permission ec2:StopInstances"),
            "{}",
            e.message
        );
        let e = service_error(
            "IncorrectInstanceState",
            "The instance 'i-0123456789abcdef0' is not in a state from which it can be stopped.",
            400,
        );
        assert_eq!(
            (e.kind, e.instances.as_slice()),
            (
                ErrorKind::IncorrectState,
                ["i-0123456789abcdef0".to_string()].as_slice()
            )
        );
        assert!(!e.retryable());
        let e = service_error("SomethingNew", "oops", 503);
        assert_eq!(e.kind, ErrorKind::Server);
        assert!(e.retryable());
        assert_eq!(
            service_error("RequestLimitExceeded", "Request limit exceeded.", 503).kind,
            ErrorKind::Throttled
        );
    }

    #[test]
    fn error_codes_are_classified() {
        assert_eq!(
            classify("RequestLimitExceeded", false),
            ErrorKind::Throttled
        );
        assert_eq!(
            classify("IncorrectInstanceState", false),
            ErrorKind::IncorrectState
        );
        assert_eq!(
            classify("InvalidInstanceID.NotFound", false),
            ErrorKind::NotFound
        );
        assert_eq!(
            classify("InsufficientInstanceCapacity", false),
            ErrorKind::InsufficientCapacity
        );
        assert_eq!(
            classify("UnsupportedOperation", false),
            ErrorKind::Unsupported
        );
        assert_eq!(
            classify("UnauthorizedOperation", false),
            ErrorKind::AccessDenied
        );
        assert_eq!(classify("Whatever", true), ErrorKind::Server);
        assert_eq!(classify("Whatever", false), ErrorKind::Other);
    }
}
