//! Access to the moto server started by `scripts/test`: one test at a time (moto's
//! state is global), reset before each.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Mutex, MutexGuard};

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use ec2_scheduler_aws::{Connect, sdk_config};

static SERIAL: Mutex<()> = Mutex::new(());

/// A reset moto server, held for the duration of one test.
pub struct Moto {
    pub endpoint: String,
    _guard: MutexGuard<'static, ()>,
}

fn http(endpoint: &str, method: &str, path: &str) -> String {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("moto is reachable");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
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
