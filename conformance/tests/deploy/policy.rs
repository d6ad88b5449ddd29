//! The rules every rendered Kubernetes manifest of ekey must follow, as code
//! over the rendered objects. `check` returns each violation as
//! `Kind/name: problem`; an empty list means the manifests pass.
//!
//! - pods: no host network, PID or IPC namespace, no hostPath volume, a
//!   RuntimeDefault seccomp profile;
//! - containers: non-root with a fixed non-zero UID, no privilege
//!   escalation, not privileged, read-only root file system, every
//!   capability dropped and none added, CPU and memory requests and a memory
//!   limit, an image with a pinned tag (not `latest`) or a digest, and
//!   liveness and readiness probes (init containers excepted);
//! - every Deployment is covered by a PodDisruptionBudget and by a
//!   NetworkPolicy that selects its pods;
//! - no Secret objects (secrets are created outside the repository) and no
//!   secret inline in a ConfigMap (key material, `password =`, `token =` …).

#![allow(dead_code)]

use regex::Regex;
use serde_json::Value;

const WORKLOAD_KINDS: [&str; 5] = ["Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"];

fn name(object: &Value) -> String {
    format!("{}/{}", object["kind"].as_str().unwrap_or("?"), object["metadata"]["name"].as_str().unwrap_or("?"))
}

/// The pod template (or a Pod's own spec) and its labels.
fn pod_spec(object: &Value) -> Option<(&Value, &Value)> {
    match object["kind"].as_str()? {
        "Pod" => Some((&object["spec"], &object["metadata"]["labels"])),
        kind if WORKLOAD_KINDS.contains(&kind) => {
            let template = &object["spec"]["template"];
            Some((&template["spec"], &template["metadata"]["labels"]))
        }
        _ => None,
    }
}

/// Every violation of the rules above in `objects`.
pub fn check(objects: &[Value]) -> Vec<String> {
    let mut violations = Vec::new();
    for object in objects {
        let who = name(object);
        let mut problem = |p: String| violations.push(format!("{who}: {p}"));
        if object["kind"] == "Secret" {
            problem("a Secret in the manifests: create secrets outside the repository".into());
        }
        if object["kind"] == "ConfigMap" {
            for (key, value) in object["data"].as_object().into_iter().flatten() {
                if let Some(line) = value.as_str().and_then(inline_secret) {
                    problem(format!("data {key} holds a secret inline: {line}"));
                }
            }
        }
        if let Some((spec, labels)) = pod_spec(object) {
            check_pod(spec, &mut problem);
            if object["kind"] == "Deployment" {
                for kind in ["PodDisruptionBudget", "NetworkPolicy"] {
                    if !objects.iter().any(|o| o["kind"] == kind && selects(o, labels)) {
                        problem(format!("no {kind} selects its pods"));
                    }
                }
            }
        }
    }
    violations
}

/// Whether a PodDisruptionBudget's `selector` or a NetworkPolicy's
/// `podSelector` matches `labels` (matchLabels only, as ekey's manifests use).
fn selects(object: &Value, labels: &Value) -> bool {
    let selector =
        if object["kind"] == "NetworkPolicy" { &object["spec"]["podSelector"] } else { &object["spec"]["selector"] };
    let Some(wanted) = selector["matchLabels"].as_object() else { return false };
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels[k] == *v)
}

fn check_pod(spec: &Value, problem: &mut impl FnMut(String)) {
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec[field] == true {
            problem(format!("{field} is on"));
        }
    }
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        if !volume["hostPath"].is_null() {
            problem(format!("volume {} is a hostPath", volume["name"]));
        }
    }
    let pod_security = &spec["securityContext"];
    let regular = spec["containers"].as_array().into_iter().flatten().map(|c| (c, true));
    let init = spec["initContainers"].as_array().into_iter().flatten().map(|c| (c, false));
    let mut any = false;
    for (container, needs_probes) in regular.chain(init) {
        any = true;
        let name = container["name"].as_str().unwrap_or("?");
        let mut problem = |p: String| problem(format!("container {name}: {p}"));
        check_container(container, pod_security, needs_probes, &mut problem);
    }
    if !any {
        problem("no containers".into());
    }
}

fn check_container(container: &Value, pod: &Value, needs_probes: bool, problem: &mut impl FnMut(String)) {
    let own = &container["securityContext"];
    // A container setting wins over the pod's.
    let effective = |field: &str| if own[field].is_null() { &pod[field] } else { &own[field] };
    if *effective("runAsNonRoot") != true {
        problem("runAsNonRoot is not true".into());
    }
    match effective("runAsUser").as_u64() {
        Some(0) => problem("runs as UID 0".into()),
        None => problem("no fixed runAsUser".into()),
        Some(_) => {}
    }
    if own["allowPrivilegeEscalation"] != false {
        problem("allowPrivilegeEscalation is not false".into());
    }
    if own["privileged"] == true {
        problem("privileged".into());
    }
    if own["readOnlyRootFilesystem"] != true {
        problem("readOnlyRootFilesystem is not true".into());
    }
    let drops = own["capabilities"]["drop"].as_array().into_iter().flatten();
    if !drops.filter_map(Value::as_str).any(|c| c == "ALL") {
        problem("capabilities: ALL is not dropped".into());
    }
    if own["capabilities"]["add"].as_array().is_some_and(|a| !a.is_empty()) {
        problem(format!("capabilities added: {}", own["capabilities"]["add"]));
    }
    if effective("seccompProfile")["type"] != "RuntimeDefault" {
        problem("seccompProfile is not RuntimeDefault".into());
    }
    let resources = &container["resources"];
    for (section, resource) in [("requests", "cpu"), ("requests", "memory"), ("limits", "memory")] {
        if resources[section][resource].is_null() {
            problem(format!("no {section}.{resource}"));
        }
    }
    match container["image"].as_str() {
        None => problem("no image".into()),
        Some(image) => {
            if let Some(p) = image_problem(image) {
                problem(format!("image {image}: {p}"));
            }
        }
    }
    if needs_probes {
        for probe in ["livenessProbe", "readinessProbe"] {
            if container[probe].is_null() {
                problem(format!("no {probe}"));
            }
        }
    }
}

/// Why an image reference is not pinned, if it is not.
fn image_problem(image: &str) -> Option<&'static str> {
    if image.contains("@sha256:") {
        return None;
    }
    // The tag follows the last ':' after the last '/' (a registry may have a port).
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => Some("no tag (means latest)"),
        Some((_, "latest")) => Some("tag latest"),
        Some((_, "")) => Some("empty tag"),
        Some(_) => None,
    }
}

/// The first line of a config file that holds a secret itself rather than
/// naming where it is.
fn inline_secret(text: &str) -> Option<String> {
    let assignment =
        Regex::new(r#"(?i)^\s*"?[a-z0-9_.-]*(password|passwd|secret|token|api_key|private_key)"?\s*[=:]\s*\S"#)
            .expect("valid regex");
    let reference = Regex::new(r"(?i)(_file|_env|_sha256|_path)\s*$").expect("valid regex");
    let aws_key_id = Regex::new(r"AKIA[0-9A-Z]{16}").expect("valid regex");
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') {
            continue;
        }
        if trimmed.contains("PRIVATE KEY-----") || aws_key_id.is_match(trimmed) {
            return Some(trimmed.to_string());
        }
        if assignment.is_match(trimmed) {
            let key = trimmed.split(['=', ':']).next().unwrap_or_default().trim().trim_matches('"');
            if !reference.is_match(key) {
                return Some(trimmed.to_string());
            }
        }
    }
    None
}

#[test]
fn image_references_and_inline_secrets_are_recognised() {
    for (image, pinned) in [
        ("ekey-issuer:0.1.0", true),
        ("registry.example.com:5000/ekey/ekey-issuer:0.1.0", true),
        ("registry.example.com/ekey/ekey-issuer@sha256:0123", true),
        ("ekey-issuer", false),
        ("ekey-issuer:latest", false),
        ("registry.example.com:5000/ekey/ekey-issuer", false),
    ] {
        assert_eq!(image_problem(image).is_none(), pinned, "{image}");
    }
    for (text, secret) in [
        ("password_file = \"/etc/ekey/secrets/redis-password\"", false),
        ("nonce_secret_file = \"/x\"\nsecret_sha256 = \"ab\"\nsecret_env = \"X\"", false),
        ("# password = \"only a comment\"", false),
        ("password = \"hunter2hunter2\"", true),
        ("  admin_token = \"x\"", true),
        ("client_secret: abc", true),
        ("-----BEGIN EC PRIVATE KEY-----", true),
        ("key = \"AKIAABCDEFGHIJKLMNOP\"", true),
    ] {
        assert_eq!(inline_secret(text).is_some(), secret, "{text}");
    }
}
