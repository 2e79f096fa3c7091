//! Just enough of CloudFormation and IAM to ask a template what a role may do: the
//! template's intrinsic functions resolved for one set of parameters (`Stack`), and
//! a request checked against a role's statements as IAM evaluates them (`Request`):
//! an explicit deny wins, otherwise some allow must match the action, the resource
//! and every condition.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};
use serde_yaml_ng::Value;

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-west-2";
pub const STACK: &str = "sched";

/// A template with its parameters and conditions decided.
pub struct Stack {
    pub template: Value,
    params: BTreeMap<String, Json>,
    conditions: BTreeMap<String, bool>,
}

/// What `AWS::NoValue` resolves to, removed from lists and maps.
const NO_VALUE: &str = "\u{0}NoValue";

impl Stack {
    /// `file` of deploy/serverless with `given` parameters (the rest at their
    /// defaults).
    pub fn new(file: &str, given: &[(&str, &str)]) -> Stack {
        let path = format!(
            "{}/../../deploy/serverless/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let template: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut params = BTreeMap::new();
        for (name, p) in template["Parameters"].as_mapping().unwrap() {
            let name = name.as_str().unwrap();
            let text = given
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
                .or_else(|| p["Default"].as_str().map(str::to_string))
                .or_else(|| p["Default"].as_i64().map(|n| n.to_string()))
                .unwrap_or_else(|| panic!("{file}: parameter {name} has no value"));
            let value = if p["Type"] == "CommaDelimitedList" {
                json!(text.split(',').collect::<Vec<_>>())
            } else {
                json!(text)
            };
            params.insert(name.to_string(), value);
        }
        let mut stack = Stack {
            template,
            params,
            conditions: BTreeMap::new(),
        };
        let conditions = stack.template["Conditions"].clone();
        for (name, c) in conditions.as_mapping().into_iter().flatten() {
            let v = stack
                .resolve(c)
                .as_bool()
                .expect("a condition is true or false");
            stack
                .conditions
                .insert(name.as_str().unwrap().to_string(), v);
        }
        stack
    }

    /// Whether the template's rules hold for the parameters.
    pub fn rules_hold(&self) -> bool {
        self.template["Rules"]
            .as_mapping()
            .into_iter()
            .flatten()
            .all(|(_, rule)| {
                let applies = rule
                    .get("RuleCondition")
                    .is_none_or(|c| self.resolve(c) == json!(true));
                !applies
                    || rule["Assertions"]
                        .as_sequence()
                        .unwrap()
                        .iter()
                        .all(|a| self.resolve(&a["Assert"]) == json!(true))
            })
    }

    fn reference(&self, name: &str) -> Json {
        match name {
            "AWS::Region" => json!(REGION),
            "AWS::AccountId" => json!(ACCOUNT),
            "AWS::Partition" => json!("aws"),
            "AWS::StackName" => json!(STACK),
            "AWS::URLSuffix" => json!("amazonaws.com"),
            "AWS::NoValue" => json!(NO_VALUE),
            _ => match self.params.get(name) {
                Some(v) => v.clone(),
                None => {
                    assert!(
                        !self.template["Resources"][name].is_null(),
                        "no parameter or resource {name}"
                    );
                    json!(format!("<{name}>"))
                }
            },
        }
    }

    fn sub(&self, text: &str, vars: &BTreeMap<String, Json>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let end = rest[i..].find('}').unwrap() + i;
            let name = &rest[i + 2..end];
            let v = match vars.get(name) {
                Some(v) => v.clone(),
                None if name.contains('.') => json!(format!("<{name}>")),
                None => self.reference(name),
            };
            out.push_str(v.as_str().unwrap_or_else(|| panic!("${{{name}}} is {v}")));
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn function(&self, name: &str, arg: &Value) -> Json {
        let list = |v: &Value| -> Vec<Value> { v.as_sequence().cloned().unwrap_or_default() };
        match name {
            "Ref" => self.reference(arg.as_str().unwrap()),
            "GetAtt" => {
                let text = match arg {
                    Value::String(s) => s.clone(),
                    _ => format!("{}.{}", arg[0].as_str().unwrap(), arg[1].as_str().unwrap()),
                };
                json!(format!("<{text}>"))
            }
            "Sub" => match arg {
                Value::String(s) => json!(self.sub(s, &BTreeMap::new())),
                _ => {
                    let vars = arg[1]
                        .as_mapping()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.as_str().unwrap().to_string(), self.resolve(v)))
                        .collect();
                    json!(self.sub(arg[0].as_str().unwrap(), &vars))
                }
            },
            "If" => {
                let a = list(arg);
                let which = self.conditions[a[0].as_str().unwrap()];
                self.resolve(&a[if which { 1 } else { 2 }])
            }
            "Join" => {
                let a = list(arg);
                let parts = self.resolve(&a[1]);
                let parts: Vec<String> = parts
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap().to_string())
                    .collect();
                json!(parts.join(a[0].as_str().unwrap()))
            }
            "Split" => {
                let a = list(arg);
                let text = self.resolve(&a[1]);
                json!(
                    text.as_str()
                        .unwrap()
                        .split(a[0].as_str().unwrap())
                        .collect::<Vec<_>>()
                )
            }
            "Equals" => {
                let a = list(arg);
                json!(self.resolve(&a[0]) == self.resolve(&a[1]))
            }
            "Not" => json!(!self.resolve(&list(arg)[0]).as_bool().unwrap()),
            "Contains" => {
                let a = list(arg);
                let within = self.resolve(&a[0]);
                json!(within.as_array().unwrap().contains(&self.resolve(&a[1])))
            }
            "Condition" => json!(self.conditions[arg.as_str().unwrap()]),
            other => panic!("no intrinsic function {other}"),
        }
    }

    /// `v` with every intrinsic function applied.
    pub fn resolve(&self, v: &Value) -> Json {
        match v {
            Value::Tagged(t) => {
                let tag = t.tag.to_string();
                self.function(tag.trim_start_matches('!'), &t.value)
            }
            Value::Mapping(m) if m.len() == 1 => {
                let (k, arg) = m.iter().next().unwrap();
                match k.as_str() {
                    Some(k) if k == "Ref" || k.starts_with("Fn::") || k == "Condition" => {
                        self.function(k.trim_start_matches("Fn::"), arg)
                    }
                    _ => self.mapping(m),
                }
            }
            Value::Mapping(m) => self.mapping(m),
            Value::Sequence(s) => Json::Array(
                s.iter()
                    .map(|x| self.resolve(x))
                    .filter(|x| x != NO_VALUE)
                    .collect(),
            ),
            other => serde_json::to_value(other).unwrap(),
        }
    }

    fn mapping(&self, m: &serde_yaml_ng::Mapping) -> Json {
        Json::Object(
            m.iter()
                .map(|(k, v)| (k.as_str().unwrap().to_string(), self.resolve(v)))
                .filter(|(_, v)| v != NO_VALUE)
                .collect(),
        )
    }

    /// Whether the resource `id` is created (its condition, if any, holds).
    pub fn created(&self, id: &str) -> bool {
        self.template["Resources"][id]["Condition"]
            .as_str()
            .is_none_or(|c| self.conditions[c])
    }

    /// The role the serverless function `id` runs as.
    pub fn role_of(&self, function: &str) -> String {
        let r = self.resolve(&self.template["Resources"][function]["Properties"]["Role"]);
        let r = r.as_str().unwrap();
        r.trim_start_matches('<')
            .trim_end_matches(".Arn>")
            .to_string()
    }

    /// Every statement that applies to the role `role`: its inline policies and the
    /// managed policies of the template (created) attached to it.
    pub fn role_statements(&self, role: &str) -> Vec<Json> {
        let mut docs = Vec::new();
        let props = self.resolve(&self.template["Resources"][role]["Properties"]);
        for p in props["Policies"].as_array().into_iter().flatten() {
            docs.push(p["PolicyDocument"].clone());
        }
        for (id, r) in self.template["Resources"].as_mapping().unwrap() {
            let id = id.as_str().unwrap();
            if r["Type"] != "AWS::IAM::ManagedPolicy" || !self.created(id) {
                continue;
            }
            let p = self.resolve(&r["Properties"]);
            let roles = p["Roles"].as_array().unwrap();
            if roles.contains(&json!(format!("<{role}>"))) {
                docs.push(p["PolicyDocument"].clone());
            }
        }
        docs.into_iter()
            .flat_map(|d| {
                let d = match d {
                    Json::String(text) => serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("policy JSON: {e}\n{text}")),
                    other => other,
                };
                d["Statement"].as_array().unwrap().clone()
            })
            .collect()
    }
}

/// The values of a policy element that may be one string or a list.
pub fn strings(v: &Json) -> Vec<String> {
    match v {
        Json::String(s) => vec![s.clone()],
        Json::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
        Json::Bool(b) => vec![b.to_string()],
        Json::Null => vec![],
        other => panic!("not a string or list: {other}"),
    }
}

/// IAM's wildcard match (`*`, `?`), case-sensitive as for resources and values.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// One request: an action on a resource, with its context keys (lower-cased names).
#[derive(Debug, Clone)]
pub struct Request {
    pub action: String,
    pub resource: String,
    pub context: BTreeMap<String, Vec<String>>,
}

impl Request {
    pub fn new(action: &str, resource: &str) -> Request {
        Request {
            action: action.to_string(),
            resource: resource.to_string(),
            context: BTreeMap::new(),
        }
        .with("aws:RequestedRegion", REGION)
    }

    /// With the context key `key` set to `value` (replacing it).
    #[must_use]
    pub fn with(mut self, key: &str, value: &str) -> Request {
        self.context
            .insert(key.to_ascii_lowercase(), vec![value.to_string()]);
        self
    }

    /// With the multi-valued key `key`.
    #[must_use]
    pub fn with_all(mut self, key: &str, values: &[&str]) -> Request {
        self.context.insert(
            key.to_ascii_lowercase(),
            values.iter().map(|v| v.to_string()).collect(),
        );
        self
    }

    /// With the resource's tag `key` = `value`.
    #[must_use]
    pub fn tagged(self, key: &str, value: &str) -> Request {
        self.with(&format!("aws:ResourceTag/{key}"), value)
    }

    fn condition_holds(&self, operator: &str, key: &str, want: &Json) -> bool {
        let want = strings(want);
        let have = self.context.get(&key.to_ascii_lowercase());
        match operator {
            "StringEquals" => have.is_some_and(|h| h.iter().any(|v| want.contains(v))),
            "StringLike" => have.is_some_and(|h| h.iter().any(|v| want.iter().any(|w| glob(w, v)))),
            "StringNotLike" => {
                have.is_none_or(|h| !h.iter().any(|v| want.iter().any(|w| glob(w, v))))
            }
            "ArnLike" => have.is_some_and(|h| h.iter().any(|v| want.iter().any(|w| glob(w, v)))),
            "Bool" => have.is_some_and(|h| h.iter().any(|v| want.contains(v))),
            "Null" => {
                let absent = have.is_none();
                want.iter().all(|w| (w == "true") == absent)
            }
            "ForAllValues:StringEquals" => have.is_none_or(|h| h.iter().all(|v| want.contains(v))),
            other => panic!("no condition operator {other} here"),
        }
    }

    fn matches(&self, s: &Json) -> bool {
        let action = strings(&s["Action"])
            .iter()
            .any(|a| glob(&a.to_ascii_lowercase(), &self.action.to_ascii_lowercase()));
        let resource = strings(&s["Resource"])
            .iter()
            .any(|r| glob(r, &self.resource));
        let conditions = s["Condition"]
            .as_object()
            .into_iter()
            .flatten()
            .all(|(op, keys)| {
                keys.as_object()
                    .unwrap()
                    .iter()
                    .all(|(k, v)| self.condition_holds(op, k, v))
            });
        action && resource && conditions
    }

    /// Whether `statements` allow this request.
    pub fn allowed_by(&self, statements: &[Json]) -> bool {
        let matching: Vec<&Json> = statements.iter().filter(|s| self.matches(s)).collect();
        !matching.iter().any(|s| s["Effect"] == "Deny")
            && matching.iter().any(|s| s["Effect"] == "Allow")
    }
}

/// The ARN of the instance `id` in `region`.
pub fn instance(region: &str, id: &str) -> String {
    format!("arn:aws:ec2:{region}:{ACCOUNT}:instance/{id}")
}
