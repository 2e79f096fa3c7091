//! SNS notifications: the workload names a topic; its ARN is built from the account
//! (found with `sts:GetCallerIdentity`, which needs no permission) and the region.

use async_trait::async_trait;
use ec2_scheduler_core::model::Name;
use ec2_scheduler_engine::ports::{ApiResult, Notification, Notifier};

use crate::{AwsCloud, api_error};

/// The ARN partition of a region.
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// SNS subjects: ASCII, no line breaks, at most 100 characters.
pub fn subject(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                ' '
            }
        })
        .collect();
    if clean.len() <= 100 {
        clean
    } else {
        format!("{}...", &clean[..97])
    }
}

impl AwsCloud {
    async fn topic_arn(&self, topic: &str) -> ApiResult<String> {
        if topic.starts_with("arn:") {
            return Ok(topic.to_string());
        }
        if let Some(arn) = self
            .topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
        {
            return Ok(arn.clone());
        }
        let a = "sts:GetCallerIdentity";
        let me = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| api_error(a, &e))?;
        let arn = format!(
            "arn:{}:sns:{}:{}:{topic}",
            partition(&self.region),
            self.region,
            me.account().unwrap_or_default()
        );
        self.topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_string(), arn.clone());
        Ok(arn)
    }
}

#[async_trait]
impl Notifier for AwsCloud {
    async fn publish(&self, topic: &Name, note: &Notification) -> ApiResult<()> {
        let arn = self.topic_arn(topic.as_str()).await?;
        let a = "sns:Publish";
        let body = serde_json::to_string_pretty(&note.body).unwrap_or_default();
        self.sns
            .publish()
            .topic_arn(arn)
            .subject(subject(&note.subject))
            .message(body)
            .send()
            .await
            .map_err(|e| api_error(a, &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_fit_sns_rules() {
        assert_eq!(subject("a\nb"), "a b");
        assert_eq!(subject(&"x".repeat(150)).len(), 100);
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("eu-west-1"), "aws");
    }
}
