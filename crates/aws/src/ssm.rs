//! The override-file probe through SSM Run Command.
//!
//! The command is the stack's own SSM document ([`DOCUMENT`], shipped as
//! `deploy/ssm/override-check.json`): a fixed command for Linux and one for
//! Windows, and one parameter, the path, which the agent hands to the command as
//! the environment variable `SSM_path` (`interpolationType: ENV_VAR`), never as
//! command text. The path is checked ([`OverrideFile::check_path`]) before any call,
//! and the document's `allowedPattern` checks it again. The command prints an
//! explicit marker, and the output is read from the command invocation itself (no S3
//! bucket needed). Anything but the ABSENT marker in a successful invocation is not
//! a confirmed absence, so the instance is kept running: an agent too old to set
//! `SSM_path` prints UNSUPPORTED.

use async_trait::async_trait;
use aws_sdk_ssm::types::CommandInvocationStatus;
use ec2_scheduler_core::model::{Os, OverrideFile};
use ec2_scheduler_engine::ports::{ApiError, ApiResult, ErrorKind, OverrideProbe, ProbeResult};

use crate::{AwsCloud, api_error};

/// The SSM document of the probe, as shipped.
pub const DOCUMENT: &str = include_str!("../../../deploy/ssm/override-check.json");
/// Its name unless [`OVERRIDE_DOCUMENT_ENV`] names another (the serverless stack
/// names its own).
pub const DEFAULT_DOCUMENT_NAME: &str = "ec2-scheduler-override-check";
/// The environment variable that names the document.
pub const OVERRIDE_DOCUMENT_ENV: &str = "EC2_SCHEDULER_OVERRIDE_DOCUMENT";

/// Printed when the file exists.
pub const PRESENT: &str = "EC2_SCHEDULER_OVERRIDE=PRESENT";
/// Printed when the file does not exist.
pub const ABSENT: &str = "EC2_SCHEDULER_OVERRIDE=ABSENT";
/// Printed by an SSM agent too old to pass the path as `SSM_path` (before
/// 3.3.2746.0).
pub const UNSUPPORTED: &str = "EC2_SCHEDULER_OVERRIDE=UNSUPPORTED";

/// The document name from the environment, or the default.
pub fn document_name() -> String {
    std::env::var(OVERRIDE_DOCUMENT_ENV)
        .ok()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_DOCUMENT_NAME.to_string())
}

/// Reads an invocation's outcome.
pub fn outcome(status: Option<&CommandInvocationStatus>, output: &str) -> ProbeResult {
    match status {
        Some(
            CommandInvocationStatus::Pending
            | CommandInvocationStatus::InProgress
            | CommandInvocationStatus::Delayed,
        )
        | None => ProbeResult::Pending,
        Some(CommandInvocationStatus::Success) => {
            let lines: Vec<&str> = output.lines().map(str::trim).collect();
            match (lines.contains(&PRESENT), lines.contains(&ABSENT)) {
                _ if lines.contains(&UNSUPPORTED) => ProbeResult::Unknown {
                    reason: "the instance's SSM agent is too old to take the path (3.3.2746.0 or later needed)"
                        .into(),
                },
                (true, _) => ProbeResult::Present,
                (false, true) => ProbeResult::Absent,
                (false, false) => ProbeResult::Unknown {
                    reason: "the command succeeded without reporting whether the file exists"
                        .into(),
                },
            }
        }
        Some(other) => ProbeResult::Unknown {
            reason: format!("the command ended {}", other.as_str()),
        },
    }
}

#[async_trait]
impl OverrideProbe for AwsCloud {
    async fn send(&self, ids: &[String], path: &str, os: Os) -> ApiResult<String> {
        let a = "ssm:SendCommand";
        // Refused before any call: such a path is never sent.
        if let Err(e) = OverrideFile::check_path(path, os) {
            return Err(ApiError {
                kind: ErrorKind::Other,
                action: a.into(),
                code: "InvalidOverridePath".into(),
                message: format!("override file path {path:?}: {e}"),
                instances: Vec::new(),
            });
        }
        let out = self
            .ssm
            .send_command()
            .document_name(&self.override_document)
            .set_instance_ids(Some(ids.to_vec()))
            .parameters("path", vec![path.to_string()])
            .timeout_seconds(self.probe_timeout_secs.max(30))
            .comment("ec2-scheduler override-file check")
            .send()
            .await
            .map_err(|e| api_error(a, &e))?;
        Ok(out
            .command()
            .and_then(|c| c.command_id())
            .unwrap_or_default()
            .to_string())
    }

    async fn poll(&self, handle: &str, ids: &[String]) -> ApiResult<Vec<(String, ProbeResult)>> {
        let a = "ssm:GetCommandInvocation";
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let r = match self
                .ssm
                .get_command_invocation()
                .command_id(handle)
                .instance_id(id)
                .send()
                .await
            {
                Ok(inv) => outcome(
                    inv.status(),
                    inv.standard_output_content().unwrap_or_default(),
                ),
                Err(e) => {
                    let err = api_error(a, &e);
                    match err.code.as_str() {
                        // Not delivered yet.
                        "InvocationDoesNotExist" => ProbeResult::Pending,
                        _ if err.retryable() => ProbeResult::Pending,
                        _ => ProbeResult::Unknown {
                            reason: format!("{}: {}", err.code, err.message),
                        },
                    }
                }
            };
            out.push((id.clone(), r));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_takes_the_path_as_an_environment_variable_only() {
        let d: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        assert_eq!(d["schemaVersion"], "2.2");
        let params = d["parameters"].as_object().unwrap();
        assert_eq!(params.keys().collect::<Vec<_>>(), ["path"]);
        assert_eq!(params["path"]["interpolationType"], "ENV_VAR");
        let steps = d["mainSteps"].as_array().unwrap();
        assert_eq!(steps.len(), 2);
        for step in steps {
            for line in step["inputs"]["runCommand"].as_array().unwrap() {
                let line = line.as_str().unwrap();
                // No parameter is pasted into the command text.
                assert!(!line.contains("{{"), "{line}");
                assert!(line.contains("SSM_path"), "{line}");
                for marker in [PRESENT, ABSENT, UNSUPPORTED] {
                    assert!(line.contains(marker), "{line}");
                }
            }
        }
    }

    #[test]
    fn the_document_s_pattern_takes_what_the_check_takes_and_refuses_hostile_paths() {
        let d: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        let pattern = d["parameters"]["path"]["allowedPattern"].as_str().unwrap();
        let re = regex::Regex::new(pattern).unwrap();
        let long = format!("/{}", "a".repeat(2000));
        let hostile = [
            "/tmp/it's",
            "/tmp/a\"b",
            "/tmp/a`id`",
            "/tmp/$(id)",
            "/tmp/${HOME}",
            "/tmp/a;reboot",
            "/tmp/a&&b",
            "/tmp/a|b",
            "/tmp/a\nb",
            "/tmp/a\rb",
            "/tmp/a\0b",
            "/tmp/a>b",
            "C:\\keep\u{2019};Stop-Computer",
            "C:\\a\u{2018}b",
            "C:\\a\u{201b}b",
            "C:\\a\u{201c}b",
            "C:\\a%PATH%",
            "C:\\a:stream",
            "relative/path",
            "",
            long.as_str(),
        ];
        for p in hostile {
            for os in [Os::Linux, Os::Windows] {
                assert!(OverrideFile::check_path(p, os).is_err(), "{p:?} {os:?}");
            }
            assert!(!re.is_match(p), "{p:?}");
        }
        for (p, os) in [
            ("/tmp/StopOverride", Os::Linux),
            ("/var/lib/app/keep-me_1.0", Os::Linux),
            ("C:\\keep.txt", Os::Windows),
            ("D:/ops/do not stop.flag", Os::Windows),
        ] {
            assert!(OverrideFile::check_path(p, os).is_ok(), "{p:?}");
            assert!(re.is_match(p), "{p:?}");
        }
    }

    #[tokio::test]
    async fn a_hostile_path_is_refused_before_any_call() {
        let conf = aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("us-east-1"))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let cloud = AwsCloud::new(&conf);
        for (p, os) in [
            ("/tmp/$(reboot)", Os::Linux),
            ("C:\\a\u{2019};x", Os::Windows),
        ] {
            let e = cloud.send(&["i-1".into()], p, os).await.unwrap_err();
            assert_eq!(e.code, "InvalidOverridePath", "{e:?}");
        }
        assert!(cloud.counter.snapshot().is_empty(), "a call was made");
    }

    #[test]
    fn only_an_explicit_absence_is_absent() {
        let ok = Some(&CommandInvocationStatus::Success);
        assert_eq!(outcome(ok, &format!("{ABSENT}\n")), ProbeResult::Absent);
        assert_eq!(
            outcome(ok, &format!("noise\n{PRESENT}\n")),
            ProbeResult::Present
        );
        assert!(matches!(outcome(ok, ""), ProbeResult::Unknown { .. }));
        // An agent that cannot pass the path says so: never an absence.
        assert!(matches!(
            outcome(ok, &format!("{UNSUPPORTED}\n{ABSENT}\n")),
            ProbeResult::Unknown { .. }
        ));
        assert!(matches!(
            outcome(Some(&CommandInvocationStatus::TimedOut), ABSENT),
            ProbeResult::Unknown { .. }
        ));
        assert!(matches!(
            outcome(Some(&CommandInvocationStatus::Failed), ABSENT),
            ProbeResult::Unknown { .. }
        ));
        assert_eq!(
            outcome(Some(&CommandInvocationStatus::InProgress), ""),
            ProbeResult::Pending
        );
    }
}
