//! The override-file probe through SSM Run Command.
//!
//! The command prints an explicit marker, and the output is read from the command
//! invocation itself (no S3 bucket needed). Anything but the ABSENT marker in a
//! successful invocation is not a confirmed absence, so the instance is kept running.

use async_trait::async_trait;
use aws_sdk_ssm::types::CommandInvocationStatus;
use ec2_scheduler_core::model::Os;
use ec2_scheduler_engine::ports::{ApiResult, OverrideProbe, ProbeResult};

use crate::{AwsCloud, api_error};

/// Printed when the file exists.
pub const PRESENT: &str = "EC2_SCHEDULER_OVERRIDE=PRESENT";
/// Printed when the file does not exist.
pub const ABSENT: &str = "EC2_SCHEDULER_OVERRIDE=ABSENT";

/// The check for `path` on `os`, with the path quoted for the shell.
pub fn script(path: &str, os: Os) -> (&'static str, String) {
    match os {
        Os::Linux => {
            let quoted = format!("'{}'", path.replace('\'', "'\\''"));
            (
                "AWS-RunShellScript",
                format!("if [ -e {quoted} ]; then echo {PRESENT}; else echo {ABSENT}; fi"),
            )
        }
        Os::Windows => {
            let quoted = format!("'{}'", path.replace('\'', "''"));
            (
                "AWS-RunPowerShellScript",
                format!(
                    "if (Test-Path -LiteralPath {quoted}) {{ '{PRESENT}' }} else {{ '{ABSENT}' }}"
                ),
            )
        }
    }
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
        let (document, command) = script(path, os);
        let out = self
            .ssm
            .send_command()
            .document_name(document)
            .set_instance_ids(Some(ids.to_vec()))
            .parameters("commands", vec![command])
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
    fn scripts_quote_the_path() {
        let (doc, s) = script("/tmp/it's here", Os::Linux);
        assert_eq!(doc, "AWS-RunShellScript");
        assert_eq!(
            s,
            format!("if [ -e '/tmp/it'\\''s here' ]; then echo {PRESENT}; else echo {ABSENT}; fi")
        );
        let (doc, s) = script("C:\\keep'me.txt", Os::Windows);
        assert_eq!(doc, "AWS-RunPowerShellScript");
        assert!(
            s.starts_with("if (Test-Path -LiteralPath 'C:\\keep''me.txt')"),
            "{s}"
        );
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
