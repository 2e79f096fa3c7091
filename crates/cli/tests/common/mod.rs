//! What the command-line tests share: a user's environment with its own store and
//! fleet files.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub struct Env {
    pub dir: PathBuf,
}

impl Env {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ec2s-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            repo().join("examples/seed/fleet-running.json"),
            dir.join("fleet.json"),
        )
        .unwrap();
        Env { dir }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ec2-scheduler"));
        c.args(args)
            .current_dir(repo())
            .env(
                "EC2_SCHEDULER_STORE",
                format!("sqlite:{}", self.dir.join("state.db").display()),
            )
            .env_remove("XDG_DATA_HOME");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn fleet(&self) -> String {
        self.dir.join("fleet.json").display().to_string()
    }

    pub fn states(&self) -> Vec<(String, String)> {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(self.dir.join("fleet.json")).unwrap())
                .unwrap();
        v["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["id"].as_str().unwrap().to_string(),
                    i["state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}
