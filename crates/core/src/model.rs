//! The validated workload model.
//!
//! Input formats (the original tool's DynamoDB items, its Loader YAML, our own YAML)
//! are decoded elsewhere into these types. The types carry the guarantees that the
//! planner relies on: tag keys and values are never empty (an empty one would match
//! every instance), tier names are unique within a workload, fleet subsets are in range.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Errors raised when building model values from unchecked parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// A name, tag key or tag value was empty or only white space.
    #[error("must not be empty")]
    Empty,
    /// A fleet subset was not `N%` with 0 <= N <= 100 or a non-negative whole number.
    #[error(
        "invalid fleet subset {0:?}: expected a percentage from 0% to 100% (e.g. \"50%\") or a whole number of instances from 0 to 1000000 (e.g. \"2\")"
    )]
    FleetSubset(String),
    /// Two tiers of one workload share a name (tier tag value).
    #[error("tier {0:?} is defined more than once")]
    DuplicateTier(String),
    /// A profile sets neither an instance type nor a fleet subset.
    #[error("a profile must set an instance type, a fleet subset, or both")]
    EmptyProfile,
}

macro_rules! non_empty_string {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks that `value` is not empty or only white space.
            ///
            /// # Errors
            /// [`ModelError::Empty`] when it is.
            pub fn new(value: impl Into<String>) -> Result<Self, ModelError> {
                let value = value.into();
                if value.trim().is_empty() {
                    Err(ModelError::Empty)
                } else {
                    Ok(Self(value))
                }
            }

            /// The value as given.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ModelError;
            fn try_from(value: String) -> Result<Self, ModelError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

non_empty_string!(
    /// A non-empty name: workload name, tier name (the tier tag value), profile name,
    /// tag key or tag value.
    Name
);
non_empty_string!(
    /// A non-empty EC2 instance type such as `t3.medium`.
    InstanceType
);

/// A tag key with its value, both non-empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: Name,
    pub value: Name,
}

/// The orchestration the user asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Start,
    Stop,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Start => "start",
            Action::Stop => "stop",
        })
    }
}

impl FromStr for Action {
    type Err = String;
    /// Case-insensitive, as the original's `-a Start|Stop`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "start" => Ok(Action::Start),
            "stop" => Ok(Action::Stop),
            _ => Err(format!("unknown action {s:?}: expected start or stop")),
        }
    }
}

/// What the engine does when a tier fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Stop at the failed tier and report (default).
    #[default]
    Abort,
    /// Report the failure and go on with the later tiers.
    Continue,
    /// Undo what this run did to the tiers it already actioned, in reverse order.
    Rollback,
}

impl FailurePolicy {
    /// The spelling used in every input format.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Abort => "abort",
            FailurePolicy::Continue => "continue",
            FailurePolicy::Rollback => "rollback",
        }
    }
}

impl FromStr for FailurePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "abort" => Ok(FailurePolicy::Abort),
            "continue" => Ok(FailurePolicy::Continue),
            "rollback" => Ok(FailurePolicy::Rollback),
            _ => Err(format!(
                "unknown failure policy {s:?}: expected abort, continue or rollback"
            )),
        }
    }
}

/// Role to assume for a workload in another account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrossAccount {
    pub role_arn: Name,
    pub external_id: Option<String>,
}

/// The S3 location the original tool used for SSM output. ec2-scheduler reads SSM
/// output from the command invocation and does not need it; it is kept so that
/// export does not lose it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsmOutput {
    pub bucket: String,
    pub key_prefix: Option<String>,
}

/// Default pause between a resize and the start, in seconds (the original's value).
pub const DEFAULT_RESIZE_DELAY_SECS: u64 = 4;
/// Default pause after a tier before the next one, in seconds (the original's value).
pub const DEFAULT_TIER_DELAY_SECS: u64 = 5;
/// Default tag key that exempts an instance from being stopped.
pub const DEFAULT_EXEMPTION_TAG_KEY: &str = "ec2-scheduler:exempt";
/// Default time allowed for a readiness gate, in seconds.
pub const DEFAULT_GATE_TIMEOUT_SECS: u64 = 600;
/// The longest delay, pause or timeout a setting may ask for, in seconds (7 days).
/// Every input format enforces it when a document is read, so that no time
/// arithmetic downstream can overflow.
pub const MAX_SECS: u64 = 604_800;
/// The smallest tier order.
pub const MIN_ORDER: i64 = -1_000_000;
/// The largest tier order.
pub const MAX_ORDER: i64 = 1_000_000;
/// The largest fleet subset given as a count of instances.
pub const MAX_FLEET_COUNT: u32 = 1_000_000;

/// A whole workload: the instances carrying `workload_tag`, grouped in tiers by the
/// value of their `tier_tag_key` tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workload {
    pub name: Name,
    /// The region the instances run in (may differ from where the config is stored).
    pub region: Name,
    pub workload_tag: Tag,
    pub tier_tag_key: Name,
    /// When set, only instances in this VPC are members.
    pub vpc: Option<Name>,
    pub cross_account: Option<CrossAccount>,
    /// SNS topic name for notifications.
    pub sns_topic: Option<Name>,
    pub ssm_output: Option<SsmOutput>,
    /// Pause between resizing instances and starting them.
    pub resize_delay_secs: u64,
    /// The kill switch (`DisableAllSchedulingActions = "1"`): no action at all.
    pub disabled: bool,
    pub failure_policy: FailurePolicy,
    /// Tag key whose presence exempts an instance from being stopped.
    pub exemption_tag_key: Name,
    /// When the workload should run; none means it only runs when asked.
    pub schedules: Vec<crate::schedule::Schedule>,
    /// Also bring the workload back to what its schedules wish when it drifts, not
    /// only at their events.
    pub enforce: bool,
    tiers: Vec<Tier>,
}

/// The workload-level settings, before tiers are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadHeader {
    pub name: Name,
    pub region: Name,
    pub workload_tag: Tag,
    pub tier_tag_key: Name,
    pub vpc: Option<Name>,
    pub cross_account: Option<CrossAccount>,
    pub sns_topic: Option<Name>,
    pub ssm_output: Option<SsmOutput>,
    pub resize_delay_secs: u64,
    pub disabled: bool,
    pub failure_policy: FailurePolicy,
    pub exemption_tag_key: Name,
}

impl Workload {
    /// Attaches tiers to a header; tiers are kept sorted by name.
    ///
    /// # Errors
    /// [`ModelError::DuplicateTier`] when two tiers share a name.
    pub fn new(header: WorkloadHeader, mut tiers: Vec<Tier>) -> Result<Self, ModelError> {
        tiers.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(pair) = tiers.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(ModelError::DuplicateTier(pair[0].name.to_string()));
        }
        let WorkloadHeader {
            name,
            region,
            workload_tag,
            tier_tag_key,
            vpc,
            cross_account,
            sns_topic,
            ssm_output,
            resize_delay_secs,
            disabled,
            failure_policy,
            exemption_tag_key,
        } = header;
        Ok(Workload {
            name,
            region,
            workload_tag,
            tier_tag_key,
            vpc,
            cross_account,
            sns_topic,
            ssm_output,
            resize_delay_secs,
            disabled,
            failure_policy,
            exemption_tag_key,
            schedules: Vec::new(),
            enforce: false,
            tiers,
        })
    }

    /// The tiers, sorted by name; names are unique.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// The tier with this name (tier tag value).
    pub fn tier(&self, name: &str) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.name == *name)
    }

    /// Names of all profiles defined by any tier, sorted and deduplicated.
    pub fn profile_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .tiers
            .iter()
            .flat_map(|t| t.profiles.keys().map(Name::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// One tier: the instances whose tier tag has this tier's name as value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tier {
    /// The tier tag value.
    pub name: Name,
    /// How to start this tier; `None` leaves it untouched on start.
    pub start: Option<StartSpec>,
    /// How to stop this tier; `None` leaves it untouched on stop.
    pub stop: Option<StopSpec>,
    /// Named profiles: instance type and/or fleet subset to apply on start.
    pub profiles: BTreeMap<Name, Profile>,
    /// Load balancers the tier's instances belong in (classic load balancer names or
    /// target-group ARNs), in addition to those discovered: started instances are
    /// registered with them.
    pub load_balancers: Vec<Name>,
}

/// Ordering and pacing of a tier within one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionSpec {
    /// Tiers run in ascending order; equal orders run in parallel.
    pub order: i64,
    /// Wait until every actioned instance reached the target state before moving on
    /// (the original's `TierSynchronization`).
    pub wait: bool,
    /// Pause after this tier before the next stage, in seconds.
    pub delay_secs: u64,
}

/// A readiness gate checked after a tier started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Gate {
    /// EC2 instance and system status checks are `ok`.
    StatusChecks,
    /// Every load-balancer target of the tier is healthy / InService.
    LoadBalancerHealthy,
}

impl Gate {
    /// The spelling used in every input format.
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::StatusChecks => "status-checks",
            Gate::LoadBalancerHealthy => "load-balancer-healthy",
        }
    }
}

impl FromStr for Gate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "status-checks" => Ok(Gate::StatusChecks),
            "load-balancer-healthy" => Ok(Gate::LoadBalancerHealthy),
            _ => Err(format!(
                "unknown readiness gate {s:?}: expected status-checks or load-balancer-healthy"
            )),
        }
    }
}

/// A readiness gate with its time limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub gate: Gate,
    pub timeout_secs: u64,
}

/// Start settings of a tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StartSpec {
    #[serde(flatten)]
    pub sequencing: ActionSpec,
    pub ready: Option<Readiness>,
}

/// Operating system of an instance, for the SSM override-file probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Os {
    Linux,
    Windows,
}

impl Os {
    /// The original's spelling (`Linux` / `Windows`).
    pub fn as_str(self) -> &'static str {
        match self {
            Os::Linux => "Linux",
            Os::Windows => "Windows",
        }
    }
}

impl FromStr for Os {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "linux" => Ok(Os::Linux),
            "windows" => Ok(Os::Windows),
            _ => Err(format!(
                "unknown operating system {s:?}: expected Linux or Windows"
            )),
        }
    }
}

/// A file whose presence on the instance exempts it from being stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverrideFile {
    pub path: Name,
    pub os: Os,
}

impl OverrideFile {
    /// The longest path taken, in characters.
    pub const MAX_PATH: usize = 1024;
    /// The characters a path may hold besides ASCII letters and digits (and the
    /// drive's colon of a Windows path): no quote of any kind, no `$`, backtick,
    /// `;`, `&`, `|`, parenthesis, brace, bracket, `<`, `>`, `%`, `!`, `*`, `?`
    /// and no control character. The probe passes the path to the instance as an
    /// environment variable, never as command text; this set is the second wall,
    /// and the SSM document's `allowedPattern` says the same.
    pub const PATH_CHARACTERS: &'static str = " _.,@+=~#/\\-";

    /// Whether `path` may be probed on an instance of `os`: an absolute path
    /// (`/...` on Linux, `C:\...` or `C:/...` on Windows) of at most
    /// [`OverrideFile::MAX_PATH`] characters from the letters, digits and
    /// [`OverrideFile::PATH_CHARACTERS`].
    ///
    /// # Errors
    /// What is wrong with it, naming the first character refused.
    pub fn check_path(path: &str, os: Os) -> Result<(), String> {
        let n = path.chars().count();
        if n == 0 || n > Self::MAX_PATH {
            return Err(format!(
                "expected 1 to {} characters, found {n}",
                Self::MAX_PATH
            ));
        }
        let rest = match os {
            Os::Linux => path.strip_prefix('/').ok_or_else(|| {
                "expected an absolute path on Linux (starting with /)".to_string()
            })?,
            Os::Windows => {
                let b = path.as_bytes();
                if b.len() < 3
                    || !b[0].is_ascii_alphabetic()
                    || b[1] != b':'
                    || !(b[2] == b'\\' || b[2] == b'/')
                {
                    return Err(
                        "expected an absolute path on Windows (starting with a drive, C:\\)".into(),
                    );
                }
                &path[3..]
            }
        };
        match rest
            .chars()
            .find(|c| !c.is_ascii_alphanumeric() && !Self::PATH_CHARACTERS.contains(*c))
        {
            Some(c) => Err(format!(
                "{c:?} is not taken in an override file's path (letters, digits and {:?} are)",
                Self::PATH_CHARACTERS
            )),
            None => Ok(()),
        }
    }
}

/// Stop settings of a tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StopSpec {
    #[serde(flatten)]
    pub sequencing: ActionSpec,
    pub override_file: Option<OverrideFile>,
    /// The tier is never stopped (the original's `IgnoreStop`).
    pub ignore: bool,
    /// Hibernate instances instead of stopping them; instances that do not support
    /// hibernation are stopped normally.
    pub hibernate: bool,
}

/// A named profile of a tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub instance_type: Option<InstanceType>,
    pub fleet_subset: Option<FleetSubset>,
}

impl Profile {
    /// # Errors
    /// [`ModelError::EmptyProfile`] when both parts are missing.
    pub fn new(
        instance_type: Option<InstanceType>,
        fleet_subset: Option<FleetSubset>,
    ) -> Result<Self, ModelError> {
        if instance_type.is_none() && fleet_subset.is_none() {
            return Err(ModelError::EmptyProfile);
        }
        Ok(Profile {
            instance_type,
            fleet_subset,
        })
    }

    /// A profile that changes nothing: every member starts at its current type. The
    /// original tool read an empty profile (`"dev": {}`) so; readers accept one with
    /// a warning.
    pub fn unscaled() -> Self {
        Profile {
            instance_type: None,
            fleet_subset: None,
        }
    }
}

/// How many instances of a tier should run: a share or an absolute count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub enum FleetSubset {
    /// 0 to 100 percent of the tier's instances.
    Percent(u8),
    /// This many instances, at most the tier's size.
    Count(u32),
}

impl FleetSubset {
    /// The number of instances to run in a tier of `tier_size` instances.
    ///
    /// # Guarantees
    /// A percentage is rounded half up, and any positive percentage of a non-empty tier
    /// gives at least one instance; 0 % gives none. A count is capped at `tier_size`.
    pub fn target(self, tier_size: usize) -> usize {
        match self {
            FleetSubset::Percent(0) => 0,
            FleetSubset::Percent(p) => {
                let exact = (usize::from(p) * tier_size + 50) / 100;
                exact.max(1).min(tier_size)
            }
            FleetSubset::Count(n) => usize::try_from(n).unwrap_or(usize::MAX).min(tier_size),
        }
    }
}

impl FromStr for FleetSubset {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        let bad = || ModelError::FleetSubset(s.to_string());
        let t = s.trim();
        let digits_only = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
        if let Some(p) = t.strip_suffix('%') {
            let p = p.trim_end();
            if !digits_only(p) {
                return Err(bad());
            }
            match p.parse::<u8>() {
                Ok(p) if p <= 100 => Ok(FleetSubset::Percent(p)),
                _ => Err(bad()),
            }
        } else if digits_only(t) {
            match t.parse::<u32>() {
                Ok(n) if n <= MAX_FLEET_COUNT => Ok(FleetSubset::Count(n)),
                _ => Err(bad()),
            }
        } else {
            Err(bad())
        }
    }
}

impl fmt::Display for FleetSubset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetSubset::Percent(p) => write!(f, "{p}%"),
            FleetSubset::Count(n) => write!(f, "{n}"),
        }
    }
}

impl From<FleetSubset> for String {
    fn from(value: FleetSubset) -> String {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_subset_parses_and_rejects() {
        assert_eq!("50%".parse(), Ok(FleetSubset::Percent(50)));
        assert_eq!(" 100% ".parse(), Ok(FleetSubset::Percent(100)));
        assert_eq!("0%".parse(), Ok(FleetSubset::Percent(0)));
        assert_eq!("2".parse(), Ok(FleetSubset::Count(2)));
        for bad in [
            "150%", "-1", "abc", "", "%", "1.5", "50 %x", "-5%", "+3", "1000001",
        ] {
            assert!(bad.parse::<FleetSubset>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn fleet_subset_target_rounds_half_up_and_never_rounds_to_zero() {
        assert_eq!(FleetSubset::Percent(50).target(5), 3);
        assert_eq!(FleetSubset::Percent(50).target(4), 2);
        assert_eq!(FleetSubset::Percent(1).target(10), 1);
        assert_eq!(FleetSubset::Percent(0).target(10), 0);
        assert_eq!(FleetSubset::Percent(100).target(7), 7);
        assert_eq!(FleetSubset::Percent(10).target(0), 0);
        assert_eq!(FleetSubset::Count(5).target(3), 3);
        assert_eq!(FleetSubset::Count(0).target(3), 0);
    }

    #[test]
    fn empty_names_are_rejected() {
        assert_eq!(Name::new(""), Err(ModelError::Empty));
        assert_eq!(Name::new("  "), Err(ModelError::Empty));
        assert!(Name::new("Role").is_ok());
    }
}
