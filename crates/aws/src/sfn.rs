//! Step Functions: starting the state machine that drives a run (serverless
//! deployment), for runs begun through the API.

use std::sync::Arc;

use aws_config::SdkConfig;
use ec2_scheduler_engine::ports::ApiResult;

use crate::{CallCounter, Counting, api_error};

/// Executions of one state machine.
pub struct Executions {
    client: aws_sdk_sfn::Client,
    state_machine: String,
}

impl Executions {
    /// Executions of `state_machine` in `region` (through `endpoint_url` when given),
    /// with the standard credentials chain.
    pub async fn connect(region: &str, endpoint_url: Option<String>, state_machine: &str) -> Self {
        let config = crate::sdk_config(&crate::Connect {
            region: Some(region.to_string()),
            endpoint_url,
            ..crate::Connect::default()
        })
        .await;
        Self::new(&config, Arc::default(), state_machine)
    }

    pub fn new(config: &SdkConfig, counter: Arc<CallCounter>, state_machine: &str) -> Self {
        Executions {
            client: aws_sdk_sfn::Client::from_conf(
                aws_sdk_sfn::config::Builder::from(config)
                    .interceptor(Counting(counter))
                    .build(),
            ),
            state_machine: state_machine.to_string(),
        }
    }

    /// Starts an execution named `name` with `input` (JSON). One of that name that
    /// exists already is the same execution: no error.
    ///
    /// # Errors
    /// The API's errors.
    pub async fn start(&self, name: &str, input: &str) -> ApiResult<()> {
        let a = "states:StartExecution";
        match self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine)
            .name(name)
            .input(input)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_execution_already_exists()) =>
            {
                Ok(())
            }
            Err(e) => Err(api_error(a, &e)),
        }
    }
}
