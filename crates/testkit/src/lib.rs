//! Test support for the suites that talk to AWS APIs: the moto server started by
//! `scripts/test` (one test at a time, since moto's state is global; reset before
//! each), and fixtures built with the AWS SDK.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Mutex, MutexGuard};

pub mod price_list;

pub use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use ec2_scheduler_aws::dynamo::from_plain_json;
use ec2_scheduler_aws::{Connect, sdk_config};

static SERIAL: Mutex<()> = Mutex::new(());

/// A reset moto server, held for the duration of one test.
pub struct Moto {
    pub endpoint: String,
    _guard: MutexGuard<'static, ()>,
}

fn http(endpoint: &str, method: &str, path: &str) -> String {
    http_with(endpoint, method, path, "")
}

/// A request to moto's own API with `body` (JSON when not empty); the answer's body.
fn http_with(endpoint: &str, method: &str, path: &str, body: &str) -> String {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("moto is reachable");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

impl Moto {
    pub fn start() -> Self {
        let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let endpoint = std::env::var("MOTO_ENDPOINT").expect(
            "MOTO_ENDPOINT is not set: these tests talk to a moto server; run them with scripts/test, which starts one",
        );
        http(&endpoint, "POST", "/moto-api/reset");
        Moto {
            endpoint,
            _guard: guard,
        }
    }

    pub async fn config(&self, region: &str) -> SdkConfig {
        sdk_config(&Connect {
            region: Some(region.into()),
            endpoint_url: Some(self.endpoint.clone()),
            max_attempts: Some(1),
            ..Connect::default()
        })
        .await
    }

    /// POSTs the JSON `body` to a path of moto's own API; the answer's body.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> String {
        http_with(&self.endpoint, "POST", path, &body.to_string())
    }

    /// Lets Step Functions run the executions it starts, with Lambda tasks answered
    /// from moto's queue of results (its simple Lambda backend, which answers
    /// successes only; [`Moto::answer`]), until the guard is dropped.
    pub fn executing(&self) -> Executing<'_> {
        self.post(
            "/moto-api/config",
            &serde_json::json!({"stepfunctions": {"execute_state_machine": true}, "lambda": {"use_docker": false}}),
        );
        Executing { moto: self }
    }

    /// Queues what the next Lambda invocations in `region` answer, in order.
    pub fn answer(&self, region: &str, results: &[serde_json::Value]) {
        let results: Vec<String> = results.iter().map(|r| r.to_string()).collect();
        self.post(
            "/moto-api/static/lambda-simple/response",
            &serde_json::json!({"results": results, "region": region}),
        );
    }

    /// Starts moto's request recorder, empty.
    pub fn record(&self) {
        http(&self.endpoint, "POST", "/moto-api/recorder/reset-recording");
        http(&self.endpoint, "POST", "/moto-api/recorder/start-recording");
    }

    /// Stops the recorder: the requests moto received since [`Moto::record`], by
    /// service as the request's signature names it (`ec2`, `dynamodb`,
    /// `elasticloadbalancing`, ...).
    pub fn recorded(&self) -> BTreeMap<String, u64> {
        http(&self.endpoint, "POST", "/moto-api/recorder/stop-recording");
        let body = http(
            &self.endpoint,
            "GET",
            "/moto-api/recorder/download-recording",
        );
        let mut out = BTreeMap::new();
        for line in body.lines() {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let auth = entry["headers"]
                .as_object()
                .and_then(|h| {
                    h.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                })
                .and_then(|(_, v)| v.as_str())
                .unwrap_or_default();
            // Credential=KEY/DATE/REGION/SERVICE/aws4_request
            let service = auth
                .split("Credential=")
                .nth(1)
                .and_then(|c| c.split('/').nth(3))
                .unwrap_or("unsigned");
            *out.entry(service.to_string()).or_default() += 1;
        }
        out
    }

    /// Moto's whole state as JSON (slow with many resources).
    pub fn data(&self) -> serde_json::Value {
        let body = http(&self.endpoint, "GET", "/moto-api/data.json");
        // The body may be chunked; take the JSON object.
        let start = body.find('{').unwrap();
        let end = body.rfind('}').unwrap();
        serde_json::from_str(&body[start..=end]).unwrap()
    }
}

/// moto's example AMI.
pub const AMI: &str = "ami-12c6146b";

pub struct Net {
    pub vpc: String,
    pub subnets: Vec<(String, String)>,
}

pub async fn network(ec2: &aws_sdk_ec2::Client, cidr: &str, azs: &[&str]) -> Net {
    let vpc = ec2
        .create_vpc()
        .cidr_block(cidr)
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_string();
    let mut subnets = Vec::new();
    for (i, az) in azs.iter().enumerate() {
        let block = cidr.replace(".0.0/16", &format!(".{i}.0/24"));
        let s = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(block)
            .availability_zone(*az)
            .send()
            .await
            .unwrap();
        subnets.push((
            az.to_string(),
            s.subnet().unwrap().subnet_id().unwrap().to_string(),
        ));
    }
    Net { vpc, subnets }
}

/// Launches `count` instances in one reservation and returns their ids.
pub async fn launch(
    ec2: &aws_sdk_ec2::Client,
    subnet: &str,
    ty: &str,
    count: i32,
    tags: &[(&str, &str)],
) -> Vec<String> {
    let spec = TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                .collect(),
        ))
        .build();
    let out = ec2
        .run_instances()
        .image_id(AMI)
        .instance_type(ty.into())
        .min_count(count)
        .max_count(count)
        .subnet_id(subnet)
        .tag_specifications(spec)
        .send()
        .await
        .unwrap();
    out.instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect()
}

/// The original tables, created empty.
pub async fn create_seed_tables(conf: &SdkConfig) {
    let ddb = aws_sdk_dynamodb::Client::new(conf);
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .unwrap()
    };
    ddb.create_table()
        .table_name("WorkloadSpecification")
        .attribute_definitions(attr("SpecName"))
        .key_schema(key("SpecName", KeyType::Hash))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    ddb.create_table()
        .table_name("TierSpecification")
        .attribute_definitions(attr("SpecName"))
        .attribute_definitions(attr("TierTagValue"))
        .key_schema(key("SpecName", KeyType::Hash))
        .key_schema(key("TierTagValue", KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

/// The original's `WorkloadState` table (key `Workload`), created empty.
pub async fn create_workload_state_table(conf: &SdkConfig) {
    aws_sdk_dynamodb::Client::new(conf)
        .create_table()
        .table_name("WorkloadState")
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("Workload")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("Workload")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

/// The string attributes of a workload's `WorkloadState` item.
pub async fn workload_state(conf: &SdkConfig, workload: &str) -> BTreeMap<String, String> {
    let item = aws_sdk_dynamodb::Client::new(conf)
        .get_item()
        .table_name("WorkloadState")
        .key(
            "Workload",
            aws_sdk_dynamodb::types::AttributeValue::S(workload.into()),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap_or_default();
    item.into_iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|s| (k, s.clone())))
        .collect()
}

/// Writes the original README's example items (trailing commas removed) with the SDK.
/// `VPC_ID` is a placeholder there ("vpc-xyz") and becomes `vpc`.
pub async fn put_seed_items(conf: &SdkConfig, vpc: &str) {
    let ddb = aws_sdk_dynamodb::Client::new(conf);
    let text = include_str!("../../../examples/seed/example.json");
    for item in serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>() {
        let mut item = item.unwrap();
        if item.get("VPC_ID").is_some() {
            item["VPC_ID"] = serde_json::Value::String(vpc.to_string());
        }
        let table = if item.get("TierTagValue").is_some() {
            "TierSpecification"
        } else {
            "WorkloadSpecification"
        };
        let attrs = item
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), from_plain_json(v)))
            .collect();
        ddb.put_item()
            .table_name(table)
            .set_item(Some(attrs))
            .send()
            .await
            .unwrap();
    }
}

/// A classic load balancer listening on HTTP 80 in `azs`.
pub async fn create_classic_lb(conf: &SdkConfig, name: &str, azs: &[&str]) {
    aws_sdk_elasticloadbalancing::Client::new(conf)
        .create_load_balancer()
        .load_balancer_name(name)
        .set_availability_zones(Some(azs.iter().map(|a| a.to_string()).collect()))
        .listeners(
            aws_sdk_elasticloadbalancing::types::Listener::builder()
                .protocol("HTTP")
                .load_balancer_port(80)
                .instance_port(80)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// An HTTP target group of instances; returns its ARN.
pub async fn create_target_group(conf: &SdkConfig, name: &str, vpc: &str, port: i32) -> String {
    let tg = aws_sdk_elasticloadbalancingv2::Client::new(conf)
        .create_target_group()
        .name(name)
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(port)
        .vpc_id(vpc)
        .target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Instance)
        .send()
        .await
        .unwrap();
    tg.target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_string()
}

/// The seed example's world: a VPC over three zones with `per_tier` instances in each
/// of Role_Web (t2.nano, behind classic load balancer `web-elb`), Role_App (t2.nano, in
/// target group `app-tg`) and Role_DB (t2.large); decoys (another workload value, no
/// tier tag, another VPC); the tables with the seed items; the SNS topic.
pub struct World {
    pub vpc: String,
    pub web: Vec<String>,
    pub app: Vec<String>,
    pub db: Vec<String>,
    pub decoys: Vec<String>,
    pub target_group: String,
}

pub async fn seed_world(conf: &SdkConfig, per_tier: usize) -> World {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let azs = ["us-west-2a", "us-west-2b", "us-west-2c"];
    let net = network(&ec2, "10.0.0.0/16", &azs).await;
    let other = network(&ec2, "10.1.0.0/16", &azs[..1]).await;
    let mut tiers: Vec<Vec<String>> = Vec::new();
    for (role, ty) in [
        ("Role_Web", "t2.nano"),
        ("Role_App", "t2.nano"),
        ("Role_DB", "t2.large"),
    ] {
        let mut ids = Vec::new();
        for (k, (_, subnet)) in net.subnets.iter().enumerate() {
            let n = per_tier / 3 + usize::from(k < per_tier % 3);
            ids.extend(
                launch(
                    &ec2,
                    subnet,
                    ty,
                    n as i32,
                    &[("Environment", "ENV001"), ("Role", role)],
                )
                .await,
            );
        }
        tiers.push(ids);
    }
    let mut decoys = Vec::new();
    decoys.extend(
        launch(
            &ec2,
            &net.subnets[0].1,
            "t2.nano",
            1,
            &[("Environment", "ENV002"), ("Role", "Role_Web")],
        )
        .await,
    );
    decoys.extend(
        launch(
            &ec2,
            &net.subnets[1].1,
            "t2.nano",
            1,
            &[("Environment", "ENV001")],
        )
        .await,
    );
    decoys.extend(
        launch(
            &ec2,
            &other.subnets[0].1,
            "t2.nano",
            1,
            &[("Environment", "ENV001"), ("Role", "Role_App")],
        )
        .await,
    );

    create_classic_lb(conf, "web-elb", &azs).await;
    let elb = aws_sdk_elasticloadbalancing::Client::new(conf);
    elb.register_instances_with_load_balancer()
        .load_balancer_name("web-elb")
        .set_instances(Some(
            tiers[0]
                .iter()
                .map(|i| {
                    aws_sdk_elasticloadbalancing::types::Instance::builder()
                        .instance_id(i)
                        .build()
                })
                .collect(),
        ))
        .send()
        .await
        .unwrap();
    let target_group = create_target_group(conf, "app-tg", &net.vpc, 8080).await;
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(conf);
    elbv2
        .register_targets()
        .target_group_arn(&target_group)
        .set_targets(Some(
            tiers[1]
                .iter()
                .map(|i| {
                    aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                        .id(i)
                        .port(8080)
                        .build()
                })
                .collect(),
        ))
        .send()
        .await
        .unwrap();
    create_seed_tables(conf).await;
    put_seed_items(conf, &net.vpc).await;
    aws_sdk_sns::Client::new(conf)
        .create_topic()
        .name("SchedulerTesting")
        .send()
        .await
        .unwrap();
    let db = tiers.pop().unwrap();
    let app = tiers.pop().unwrap();
    let web = tiers.pop().unwrap();
    World {
        vpc: net.vpc,
        web,
        app,
        db,
        decoys,
        target_group,
    }
}

/// Creates an EventBridge Scheduler schedule group, unless it exists.
pub async fn create_schedule_group(conf: &SdkConfig, name: &str) {
    let r = aws_sdk_scheduler::Client::new(conf)
        .create_schedule_group()
        .name(name)
        .send()
        .await;
    if let Err(e) = r {
        assert!(
            e.as_service_error()
                .is_some_and(|s| s.is_conflict_exception()),
            "{e:?}"
        );
    }
}

/// One schedule as EventBridge Scheduler holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSeen {
    pub name: String,
    pub expression: String,
    pub timezone: String,
    pub target_arn: String,
    pub target_input: String,
    pub after_completion: String,
}

/// Every schedule of `group`, by name.
pub async fn schedules(conf: &SdkConfig, group: &str) -> BTreeMap<String, ScheduleSeen> {
    let client = aws_sdk_scheduler::Client::new(conf);
    let mut out = BTreeMap::new();
    let list = client
        .list_schedules()
        .group_name(group)
        .send()
        .await
        .unwrap();
    for s in list.schedules() {
        let name = s.name().unwrap().to_string();
        let got = client
            .get_schedule()
            .group_name(group)
            .name(&name)
            .send()
            .await
            .unwrap();
        let target = got.target().unwrap();
        out.insert(
            name.clone(),
            ScheduleSeen {
                name,
                expression: got.schedule_expression().unwrap_or_default().to_string(),
                timezone: got
                    .schedule_expression_timezone()
                    .unwrap_or_default()
                    .to_string(),
                target_arn: target.arn().to_string(),
                target_input: target.input().unwrap_or_default().to_string(),
                after_completion: got
                    .action_after_completion()
                    .map(|a| a.as_str().to_string())
                    .unwrap_or_default(),
            },
        );
    }
    out
}

/// Step Functions running executions in moto; back to leaving them `RUNNING` when
/// dropped, as the other tests expect.
pub struct Executing<'a> {
    moto: &'a Moto,
}

impl Drop for Executing<'_> {
    fn drop(&mut self) {
        self.moto.post(
            "/moto-api/config",
            &serde_json::json!({"stepfunctions": {"execute_state_machine": false}, "lambda": {"use_docker": true}}),
        );
    }
}

/// An execution as Step Functions reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionSeen {
    pub status: String,
    /// The states entered, in order (from the execution's history).
    pub entered: Vec<String>,
    /// The input of each state entered, as JSON.
    pub inputs: Vec<serde_json::Value>,
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
}

/// Starts an execution named `name` of `state_machine` with `input`, waits (up to a
/// minute) until it is no longer running, and reads it back.
pub async fn run_execution(
    conf: &SdkConfig,
    state_machine: &str,
    name: &str,
    input: &serde_json::Value,
) -> ExecutionSeen {
    let client = aws_sdk_sfn::Client::new(conf);
    let arn = client
        .start_execution()
        .state_machine_arn(state_machine)
        .name(name)
        .input(input.to_string())
        .send()
        .await
        .unwrap()
        .execution_arn()
        .to_string();
    let mut d = None;
    for _ in 0..600 {
        let now = client
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await
            .unwrap();
        if now.status().as_str() != "RUNNING" {
            d = Some(now);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let d = d.expect("the execution ended within a minute");
    let history = client
        .get_execution_history()
        .execution_arn(&arn)
        .max_results(1000)
        .send()
        .await
        .unwrap();
    let mut entered = Vec::new();
    let mut inputs = Vec::new();
    for e in history.events() {
        if let Some(s) = e.state_entered_event_details() {
            entered.push(s.name().to_string());
            inputs.push(
                s.input()
                    .and_then(|i| serde_json::from_str(i).ok())
                    .unwrap_or(serde_json::Value::Null),
            );
        }
    }
    ExecutionSeen {
        status: d.status().as_str().to_string(),
        entered,
        inputs,
        output: d.output().and_then(|o| serde_json::from_str(o).ok()),
        error: d.error().map(str::to_string),
    }
}

/// Creates an SNS topic; its ARN.
pub async fn create_topic(conf: &SdkConfig, name: &str) -> String {
    aws_sdk_sns::Client::new(conf)
        .create_topic()
        .name(name)
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap_or_default()
        .to_string()
}

/// Creates a Step Functions state machine with `definition`; its ARN.
pub async fn create_state_machine(conf: &SdkConfig, name: &str, definition: &str) -> String {
    aws_sdk_sfn::Client::new(conf)
        .create_state_machine()
        .name(name)
        .definition(definition)
        .role_arn("arn:aws:iam::123456789012:role/ec2-scheduler-runs")
        .send()
        .await
        .unwrap()
        .state_machine_arn()
        .to_string()
}

/// The executions of a state machine: (name, input).
pub async fn executions(conf: &SdkConfig, state_machine: &str) -> Vec<(String, String)> {
    let client = aws_sdk_sfn::Client::new(conf);
    let list = client
        .list_executions()
        .state_machine_arn(state_machine)
        .send()
        .await
        .unwrap();
    let mut out = Vec::new();
    for e in list.executions() {
        let d = client
            .describe_execution()
            .execution_arn(e.execution_arn())
            .send()
            .await
            .unwrap();
        out.push((
            e.name().to_string(),
            d.input().unwrap_or_default().to_string(),
        ));
    }
    out
}
