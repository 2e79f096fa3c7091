//! The HTTP API over the loopback interface, as a platform team's client uses it:
//! `serve --listen` on a simulated region, a workload created from the original's
//! items, a start with `profileD` followed to success, the run in the listing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Served {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cli(dir: &PathBuf, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ec2-scheduler"))
        .args(args)
        .current_dir(dir)
        .env(
            "EC2_SCHEDULER_STORE",
            format!("sqlite:{}", dir.join("state.db").display()),
        )
        .output()
        .unwrap()
}

fn token(dir: &PathBuf, role: &str) -> String {
    let o = cli(
        dir,
        &[
            "token", "create", "--name", role, "--role", role, "-o", "json",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["token"].as_str().unwrap().to_string()
}

fn serve(dir: PathBuf) -> Served {
    std::fs::copy(
        repo().join("examples/seed/fleet-stopped.json"),
        dir.join("fleet.json"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ec2-scheduler"))
        .args([
            "serve",
            "--cloud",
            "sim",
            "--fleet",
            "fleet.json",
            "--speed",
            "200",
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "warning",
        ])
        .current_dir(&dir)
        .env(
            "EC2_SCHEDULER_STORE",
            format!("sqlite:{}", dir.join("state.db").display()),
        )
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(a) = line.strip_prefix("API listening on http://") {
            break a.to_string();
        }
    };
    // Keep reading the log so the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Served { child, addr, dir }
}

/// One request; (status, headers, body as JSON or text).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> (u16, String, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, head.to_string(), v)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size, rest)) = s.split_once("\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

#[test]
fn a_workload_created_from_the_originals_items_starts_with_a_profile_over_http() {
    let dir = std::env::temp_dir().join(format!("ec2s-api-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let admin = token(&dir, "admin");
    let operator = token(&dir, "operator");
    let viewer = token(&dir, "viewer");
    let served = serve(dir.clone());
    let addr = served.addr.as_str();

    let (s, _, v) = http(addr, "GET", "/readyz", "", &[], "");
    assert_eq!(s, 200, "{v}");
    // No token, then a viewer trying to act.
    let (s, head, _) = http(addr, "GET", "/v1/workloads", "", &[], "");
    assert_eq!(s, 401);
    assert!(head.contains("application/problem+json"), "{head}");

    let items = std::fs::read_to_string(repo().join("examples/seed/example.json")).unwrap();
    let (s, head, v) = http(
        addr,
        "PUT",
        "/v1/workloads/ExampleTestCase",
        &admin,
        &[("Content-Type", "application/json")],
        &items,
    );
    assert_eq!(s, 201, "{v}");
    assert!(head.to_ascii_lowercase().contains("etag:"), "{head}");

    let body = r#"{"action":"start","profile":"profileD"}"#;
    let json = [("Content-Type", "application/json")];
    let (s, _, v) = http(
        addr,
        "POST",
        "/v1/workloads/ExampleTestCase/runs",
        &viewer,
        &json,
        body,
    );
    assert_eq!(s, 403, "{v}");
    let (s, _, v) = http(
        addr,
        "GET",
        "/v1/workloads/ExampleTestCase/plan?action=start&profile=profileD",
        &viewer,
        &[],
        "",
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["summary"]["to_start"], 9, "{v}");

    let (s, head, v) = http(
        addr,
        "POST",
        "/v1/workloads/ExampleTestCase/runs",
        &operator,
        &json,
        body,
    );
    assert_eq!(s, 202, "{v}");
    let id = v["run_id"].as_str().unwrap().to_string();
    assert!(head.contains(&format!("/v1/runs/{id}")), "{head}");

    // Followed to the end: the scheduler loop drives it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let run = loop {
        let (_, _, run) = http(addr, "GET", &format!("/v1/runs/{id}"), &viewer, &[], "");
        if run["status"] != "running" && run["status"] != "planned" {
            break run;
        }
        assert!(Instant::now() < deadline, "the run did not end: {run}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["profile"], "profileD");
    assert_eq!(run["requested_by"], "token:operator");

    let (s, _, list) = http(addr, "GET", "/v1/runs", &viewer, &[], "");
    assert_eq!(s, 200);
    assert_eq!(list["runs"][0]["id"], id.as_str(), "{list}");
    let (_, _, status) = http(
        addr,
        "GET",
        "/v1/workloads/ExampleTestCase/status",
        &viewer,
        &[],
        "",
    );
    let types: Vec<&str> = status["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["members"].as_array().unwrap())
        .map(|m| m["instance"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.len(), 9, "{status}");
    assert!(
        types.iter().all(|t| *t == "c4.large" || *t == "r4.large"),
        "{types:?}"
    );
    // A revoked token is refused from then on; the list still shows it.
    let list = cli(&dir, &["token", "list", "-o", "json"]);
    let tokens: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(tokens.as_array().unwrap().len(), 3, "{tokens}");
    let id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "viewer")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!tokens.to_string().contains(&viewer), "a secret was listed");
    let o = cli(&dir, &["token", "revoke", &id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (s, _, _) = http(addr, "GET", "/v1/runs", &viewer, &[], "");
    assert_eq!(s, 401);
    let o = cli(&dir, &["token", "list"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("revoked"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    drop(served);
}

#[test]
fn a_token_made_on_the_command_line_records_who_made_it() {
    let dir = std::env::temp_dir().join(format!("ec2s-token-by-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let made = |extra: &[&str]| {
        let mut args = vec!["token", "create", "--name", "t", "--role", "viewer"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-o", "json"]);
        Command::new(env!("CARGO_BIN_EXE_ec2-scheduler"))
            .args(&args)
            .current_dir(&dir)
            .env(
                "EC2_SCHEDULER_STORE",
                format!("sqlite:{}", dir.join("state.db").display()),
            )
            // As under sudo, a service or a container: no user in the environment.
            .env_remove("USER")
            .env_remove("LOGNAME")
            .output()
            .unwrap()
    };
    // The OS user, from the user database, at this host.
    let user = Command::new("id").arg("-un").output().unwrap();
    let user = String::from_utf8_lossy(&user.stdout).trim().to_string();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let o = made(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["created_by"], format!("{user}@{}", host.trim()), "{v}");
    assert!(v.get("hash").is_none(), "{v}");
    // Or whom the caller names.
    let o = made(&["--created-by", "release pipeline"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["created_by"], "release pipeline", "{v}");
    // Nothing, or a control character, is refused, naming the option; nothing is made.
    for bad in ["", "a\nb"] {
        let o = made(&["--created-by", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("--created-by"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let list = cli(&dir, &["token", "list", "-o", "json"]);
    let tokens: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(tokens.as_array().unwrap().len(), 2, "{tokens}");
    let _ = std::fs::remove_dir_all(&dir);
}
