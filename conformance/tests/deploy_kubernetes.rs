//! The Kubernetes manifests in `deploy/kubernetes` render, are valid, follow
//! the deployment policy and agree with the services they run:
//!
//! - every kustomization renders with `kubectl kustomize` and passes
//!   `kubernetes-validate --strict` for the pinned Kubernetes version; the
//!   custom resources (ServiceMonitor, PrometheusRule, Certificate) pass
//!   their operators' CRD schemas (`deploy/crd`), unknown fields refused;
//! - the policy (`deploy/policy.rs`) holds, and each of its rules fails a
//!   manifest that breaks it;
//! - the configs in the ConfigMaps load with the issuer's and the gateway's
//!   own parsers and the Deployments' environment; every file they name is
//!   mounted; ports, probes, grace periods, URLs and the Redis they share
//!   agree across the objects;
//! - the PrometheusRule holds exactly the groups of
//!   `deploy/prometheus/ekey-alerts.yml`, and the KMS IAM policy file is the
//!   one in `docs/key-rotation.md`;
//! - the ingress-nginx example calls the gateway the only safe way.
//!
//! Needs `kubectl` (Debian package, kustomize built in) and
//! `kubernetes-validate` (PyPI); a missing one fails with how to install it.

#[path = "deploy/openapi.rs"]
mod openapi;
#[path = "deploy/policy.rs"]
mod policy;
#[path = "deploy/support.rs"]
mod support;
#[path = "deploy/yaml.rs"]
mod yaml;

use openapi::CrdSchema;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use support::{read, run, run_ok, KUBECTL, KUBERNETES_VALIDATE};

/// The Kubernetes version the manifests are validated against: the oldest
/// that has everything they use (the preStop `sleep` action is on by
/// default from 1.30) and that kubernetes-validate ships schemas for.
const KUBERNETES_VERSION: &str = "1.32.0";

const BASE: &str = "deploy/kubernetes/base";
const PRODUCTION: &str = "deploy/kubernetes/overlays/production";
const INGRESS_EXAMPLE: &str = "deploy/kubernetes/examples/ingress-nginx";
const KUSTOMIZATIONS: [&str; 3] = [BASE, PRODUCTION, INGRESS_EXAMPLE];

const RULES: &str = "deploy/prometheus/ekey-alerts.yml";
const PROMETHEUS_CONFIG: &str = "deploy/prometheus/prometheus.yml";
const KMS_POLICY: &str = "deploy/kubernetes/base/issuer/kms-policy.json";
const KEY_ROTATION_DOC: &str = "docs/key-rotation.md";
const DEPLOYMENT_DOC: &str = "docs/deployment.md";

/// Extra seconds the grace period must leave after the preStop pause and
/// the drain: the OTLP flush at exit (at most 5 s per exporter, two).
const TELEMETRY_FLUSH_SECS: u64 = 10;

/// What ekey-gateway answers the upstream with on success (docs/gateway.md).
const IDENTITY_HEADERS: [&str; 4] = ["X-Ekey-Sub", "X-Ekey-Trace", "X-Ekey-Action", "X-Ekey-Remaining"];

fn crd_schemas() -> Vec<CrdSchema> {
    [
        include_str!("deploy/crd/servicemonitor.json"),
        include_str!("deploy/crd/prometheusrule.json"),
        include_str!("deploy/crd/certificate.json"),
    ]
    .into_iter()
    .map(CrdSchema::parse)
    .collect()
}

/// `kubectl kustomize dir`, once per test binary.
fn render(dir: &str) -> String {
    static RENDERED: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
    let mut rendered = RENDERED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    rendered.entry(dir.to_string()).or_insert_with(|| run_ok(KUBECTL, &["kustomize", dir], &[]).stdout).clone()
}

fn objects(dir: &str) -> Vec<Value> {
    yaml::load_all(&render(dir)).unwrap_or_else(|e| panic!("{dir} renders to bad YAML: {e}"))
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered manifests"))
}

fn s(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("expected a string, got {value}"))
}

/// Runs kubernetes-validate on `manifest` (YAML or JSON text).
fn kubernetes_validate(manifest: &str) -> support::Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("manifest.yaml");
    std::fs::write(&file, manifest).expect("write the manifest");
    let file = file.to_str().expect("temp path is UTF-8");
    run(KUBERNETES_VALIDATE, &["--strict", "--quiet", "--kubernetes-version", KUBERNETES_VERSION, file], &[])
}

// ---------------------------------------------------------------------------
// Schemas.

#[test]
fn every_kustomization_passes_the_kubernetes_schemas() {
    let crd_kinds: BTreeSet<String> = crd_schemas().into_iter().map(|c| c.kind).collect();
    for dir in KUSTOMIZATIONS {
        let result = kubernetes_validate(&render(dir));
        assert!(result.success, "{dir}: kubernetes-validate {KUBERNETES_VERSION} refused it:\n{}", result.text());
        // It says so when it has no schema for a kind: only the custom
        // resources (checked below against their CRDs) may be skipped.
        for line in result.text().lines().filter(|l| !l.trim().is_empty()) {
            let skipped_crd = line.contains("Couldn't find schema for kind")
                && crd_kinds.iter().any(|k| line.contains(&format!("kind {k} with")));
            assert!(skipped_crd, "{dir}: kubernetes-validate: {line}");
        }
    }
}

#[test]
fn kubernetes_validate_refuses_a_misspelt_field() {
    let mut deployment = find(&objects(BASE), "Deployment", "ekey-issuer").clone();
    let security = &mut deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    security["readOnlyRootFilesytem"] = json!(true);
    let result = kubernetes_validate(&deployment.to_string());
    assert!(!result.success, "kubernetes-validate accepted a misspelt field:\n{}", result.text());
    assert!(result.text().contains("readOnlyRootFilesytem"), "{}", result.text());
}

#[test]
fn custom_resources_pass_their_crd_schemas() {
    let schemas = crd_schemas();
    let mut checked = BTreeSet::new();
    for dir in KUSTOMIZATIONS {
        for object in objects(dir) {
            let api_version = s(&object["apiVersion"]);
            let Some(schema) = schemas.iter().find(|c| c.describes(&object)) else {
                // Anything else must be a built-in kind (kubernetes-validate checks those).
                assert!(
                    !api_version.contains(".coreos.com") && !api_version.contains("cert-manager.io"),
                    "{dir}: {api_version} {} has no vendored CRD schema",
                    object["kind"]
                );
                continue;
            };
            let errors = schema.check(&object);
            assert!(errors.is_empty(), "{dir}: {} {}: {errors:#?}", object["kind"], object["metadata"]["name"]);
            checked.insert(schema.kind.clone());
        }
    }
    assert_eq!(checked, schemas.iter().map(|c| c.kind.clone()).collect(), "every CRD schema is used");

    // The check is not vacuous.
    let base = objects(BASE);
    let mut monitor = find(&base, "ServiceMonitor", "ekey-issuer").clone();
    monitor["spec"]["endpoints"][0]["intervall"] = json!("15s");
    monitor["spec"]["endpoints"][0]["scrapeTimeout"] = json!("ten seconds");
    let errors = schemas.iter().find(|c| c.describes(&monitor)).expect("ServiceMonitor schema").check(&monitor);
    assert!(errors.iter().any(|e| e.contains("intervall: unknown field")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("scrapeTimeout: \"ten seconds\" does not match")), "{errors:?}");
    let mut certificate = find(&base, "Certificate", "ekey-issuer-tls").clone();
    certificate["spec"]["privateKey"]["algorithm"] = json!("DSA");
    let errors = schemas.iter().find(|c| c.describes(&certificate)).expect("Certificate schema").check(&certificate);
    assert!(errors.iter().any(|e| e.contains("privateKey.algorithm")), "{errors:?}");
}

// ---------------------------------------------------------------------------
// Single sources of truth.

#[test]
fn the_prometheus_rule_holds_the_rules_file() {
    let rules = yaml::load(&read(RULES)).expect("the rules file is YAML");
    for dir in [BASE, PRODUCTION] {
        let rendered = objects(dir);
        let rule = find(&rendered, "PrometheusRule", "ekey");
        if let Some(difference) = first_difference(&rule["spec"]["groups"], &rules["groups"], "groups") {
            panic!(
                "{dir}: the PrometheusRule's groups differ from {RULES} at {difference}: copy the file's groups \
                 into deploy/kubernetes/base/prometheusrule.yaml"
            );
        }
    }
}

/// Where two JSON values first differ, as a path with both values.
fn first_difference(left: &Value, right: &Value, path: &str) -> Option<String> {
    match (left, right) {
        (Value::Object(l), Value::Object(r)) => {
            let keys: BTreeSet<&String> = l.keys().chain(r.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    l.get(k).unwrap_or(&Value::Null),
                    r.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                )
            })
        }
        (Value::Array(l), Value::Array(r)) if l.len() == r.len() => {
            l.iter().zip(r).enumerate().find_map(|(i, (a, b))| first_difference(a, b, &format!("{path}[{i}]")))
        }
        _ if left == right => None,
        _ => Some(format!("{path} ({left} here, {right} in the rules file)")),
    }
}

#[test]
fn the_kms_policy_file_is_the_documented_policy() {
    let file: Value = serde_json::from_str(&read(KMS_POLICY)).expect("the KMS policy file is JSON");
    let doc = read(KEY_ROTATION_DOC);
    let section = doc.split("## IAM policy").nth(1).expect("docs/key-rotation.md has an IAM policy section");
    let block = section.split("```json\n").nth(1).and_then(|b| b.split("```").next()).expect("a json block");
    let documented: Value = serde_json::from_str(block).expect("the documented policy is JSON");
    assert_eq!(file, documented, "{KMS_POLICY} and the policy in {KEY_ROTATION_DOC} differ");
    assert!(section.contains(KMS_POLICY), "{KEY_ROTATION_DOC} names {KMS_POLICY}");
    // Only what the issuer calls.
    let actions: BTreeSet<&str> =
        file["Statement"].as_array().expect("statements").iter().map(|st| s(&st["Action"])).collect();
    assert_eq!(actions, BTreeSet::from(["kms:Sign", "kms:GetPublicKey"]));
    for statement in file["Statement"].as_array().expect("statements") {
        assert!(!statement["Resource"].to_string().contains('*'), "no wildcard resource: {statement}");
    }
}

// ---------------------------------------------------------------------------
// Policy.

#[test]
fn the_manifests_follow_the_policy() {
    for dir in KUSTOMIZATIONS {
        let violations = policy::check(&objects(dir));
        assert!(violations.is_empty(), "{dir}:\n{}", violations.join("\n"));
    }
}

/// Applies `change` to the object `kind`/`name` of the rendered base and
/// returns the policy's violations.
fn violations_after(kind: &str, name: &str, change: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut rendered = objects(BASE);
    let object = rendered
        .iter_mut()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"));
    change(object);
    policy::check(&rendered)
}

fn container(object: &mut Value) -> &mut Value {
    &mut object["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn the_policy_fails_manifests_that_break_it() {
    type Change = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(&str, Change)> = vec![
        ("runs as UID 0", Box::new(|d| container(d)["securityContext"]["runAsUser"] = json!(0))),
        (
            "runAsNonRoot is not true",
            Box::new(|d| {
                container(d)["securityContext"]["runAsNonRoot"] = json!(false);
            }),
        ),
        (
            "no fixed runAsUser",
            Box::new(|d| {
                container(d)["securityContext"].as_object_mut().expect("object").remove("runAsUser");
                d["spec"]["template"]["spec"]["securityContext"].as_object_mut().expect("object").remove("runAsUser");
            }),
        ),
        (
            "allowPrivilegeEscalation is not false",
            Box::new(|d| container(d)["securityContext"]["allowPrivilegeEscalation"] = json!(true)),
        ),
        ("privileged", Box::new(|d| container(d)["securityContext"]["privileged"] = json!(true))),
        (
            "readOnlyRootFilesystem is not true",
            Box::new(|d| {
                container(d)["securityContext"].as_object_mut().expect("object").remove("readOnlyRootFilesystem");
            }),
        ),
        (
            "capabilities: ALL is not dropped",
            Box::new(|d| container(d)["securityContext"]["capabilities"]["drop"] = json!(["NET_RAW"])),
        ),
        (
            "capabilities added",
            Box::new(|d| container(d)["securityContext"]["capabilities"]["add"] = json!(["NET_BIND_SERVICE"])),
        ),
        (
            "seccompProfile is not RuntimeDefault",
            Box::new(|d| {
                container(d)["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"});
            }),
        ),
        (
            "no livenessProbe",
            Box::new(|d| {
                container(d).as_object_mut().expect("object").remove("livenessProbe");
            }),
        ),
        (
            "no readinessProbe",
            Box::new(|d| {
                container(d).as_object_mut().expect("object").remove("readinessProbe");
            }),
        ),
        ("no requests.cpu", Box::new(|d| container(d)["resources"]["requests"] = json!({"memory": "1Gi"}))),
        ("no limits.memory", Box::new(|d| container(d)["resources"]["limits"] = json!({}))),
        ("tag latest", Box::new(|d| container(d)["image"] = json!("ekey-issuer:latest"))),
        ("no tag (means latest)", Box::new(|d| container(d)["image"] = json!("registry.example.com/ekey-issuer"))),
        ("hostNetwork is on", Box::new(|d| d["spec"]["template"]["spec"]["hostNetwork"] = json!(true))),
        (
            "is a hostPath",
            Box::new(|d| {
                let volumes = d["spec"]["template"]["spec"]["volumes"].as_array_mut().expect("volumes");
                volumes.push(json!({"name": "host", "hostPath": {"path": "/etc"}}));
            }),
        ),
        (
            "no PodDisruptionBudget selects its pods",
            Box::new(|d| d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] = json!("other")),
        ),
    ];
    for (expected, change) in cases {
        let violations = violations_after("Deployment", "ekey-issuer", change);
        assert!(
            violations.iter().any(|v| v.starts_with("Deployment/ekey-issuer") && v.contains(expected)),
            "the policy missed \"{expected}\": {violations:#?}"
        );
    }

    // A ConfigMap with a secret in it, and a Secret object.
    let mut rendered = objects(BASE);
    let config = rendered
        .iter_mut()
        .find(|o| o["kind"] == "ConfigMap" && s(&o["metadata"]["name"]).starts_with("ekey-gateway-config"))
        .expect("the gateway's ConfigMap");
    let text = s(&config["data"]["gateway.toml"])
        .replace("password_file = \"/etc/ekey/secrets/redis-password\"", "password = \"correct-horse-battery-staple\"");
    config["data"]["gateway.toml"] = json!(text);
    rendered.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "leaked"}, "data": {"k": "dg=="}}));
    let violations = policy::check(&rendered);
    assert!(violations.iter().any(|v| v.contains("holds a secret inline: password = ")), "{violations:#?}");
    assert!(violations.iter().any(|v| v.starts_with("Secret/leaked: a Secret in the manifests")), "{violations:#?}");

    // A Deployment no NetworkPolicy selects.
    let mut rendered = objects(BASE);
    rendered.retain(|o| !(o["kind"] == "NetworkPolicy" && o["metadata"]["name"] == "ekey-gateway"));
    let violations = policy::check(&rendered);
    assert!(
        violations
            .iter()
            .any(|v| v.starts_with("Deployment/ekey-gateway") && v.contains("no NetworkPolicy selects its pods")),
        "{violations:#?}"
    );
}

// ---------------------------------------------------------------------------
// The configs and the objects around them.

/// A container of a rendered Deployment, with the pod spec around it.
struct Workload<'a> {
    objects: &'a [Value],
    pod: &'a Value,
    container: &'a Value,
}

impl<'a> Workload<'a> {
    fn new(objects: &'a [Value], deployment: &str) -> Self {
        let pod = &find(objects, "Deployment", deployment)["spec"]["template"]["spec"];
        Workload { objects, pod, container: &pod["containers"][0] }
    }

    /// `--config PATH` of the container's arguments.
    fn config_path(&self) -> PathBuf {
        let args: Vec<&str> = self.container["args"].as_array().expect("args").iter().map(s).collect();
        let at = args.iter().position(|a| *a == "--config").expect("the container is started with --config");
        PathBuf::from(args[at + 1])
    }

    /// The container's plain `value` environment variables.
    fn env(&self) -> Vec<(String, String)> {
        let env = self.container["env"].as_array().into_iter().flatten();
        env.filter_map(|e| Some((s(&e["name"]).to_string(), e["value"].as_str()?.to_string()))).collect()
    }

    /// The volume mounted at the directory of `path`, and the file's name in it.
    fn mount_of(&self, path: &Path) -> Option<(&'a Value, String)> {
        let mounts = self.container["volumeMounts"].as_array()?;
        let mount = mounts.iter().find(|m| path.parent() == Some(Path::new(s(&m["mountPath"]))))?;
        let volumes = self.pod["volumes"].as_array()?;
        let volume = volumes.iter().find(|v| v["name"] == mount["name"])?;
        Some((volume, path.file_name()?.to_str()?.to_string()))
    }

    /// The rendered ConfigMap a volume names.
    fn config_map(&self, name: &str) -> &'a Value {
        find(self.objects, "ConfigMap", name)
    }

    /// The files a volume holds: a rendered ConfigMap's keys, or the items a
    /// Secret (created outside the repository) is mounted with.
    fn files_of(&self, volume: &Value) -> Result<BTreeSet<String>, String> {
        let items = |v: &Value| -> Vec<String> {
            v["items"].as_array().into_iter().flatten().map(|i| s(&i["path"]).to_string()).collect()
        };
        if let Some(name) = volume["configMap"]["name"].as_str() {
            let listed = items(&volume["configMap"]);
            if !listed.is_empty() {
                return Ok(listed.into_iter().collect());
            }
            return Ok(self.config_map(name)["data"].as_object().expect("ConfigMap data").keys().cloned().collect());
        }
        if !volume["secret"].is_null() {
            let listed = items(&volume["secret"]);
            return if listed.is_empty() {
                Err(format!("volume {} mounts a Secret without items: say which files it holds", volume["name"]))
            } else {
                Ok(listed.into_iter().collect())
            };
        }
        if let Some(sources) = volume["projected"]["sources"].as_array() {
            let mut files = BTreeSet::new();
            for source in sources {
                let inner = if source["secret"].is_null() { &source["configMap"] } else { &source["secret"] };
                let listed = items(inner);
                if listed.is_empty() {
                    return Err(format!("projected volume {} has a source without items", volume["name"]));
                }
                files.extend(listed);
            }
            return Ok(files);
        }
        Err(format!("volume {} is neither a ConfigMap, a Secret nor projected", volume["name"]))
    }

    /// The text of the config file the container is started with.
    fn config_text(&self) -> String {
        let path = self.config_path();
        let (volume, file) = self.mount_of(&path).unwrap_or_else(|| panic!("{} is not mounted", path.display()));
        let name = s(&volume["configMap"]["name"]);
        s(&self.config_map(name)["data"][&file]).to_string()
    }

    /// Fails unless every path is a file some volume mounts.
    fn assert_mounted(&self, what: &str, paths: &[PathBuf]) {
        assert!(!paths.is_empty(), "{what}: no file paths found in the config");
        for path in paths {
            let (volume, file) =
                self.mount_of(path).unwrap_or_else(|| panic!("{what}: {} is in no mounted directory", path.display()));
            let files = self.files_of(volume).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(files.contains(&file), "{what}: volume {} holds {files:?}, not {file}", volume["name"]);
        }
    }

    fn container_port(&self, name: &str) -> u16 {
        let ports = self.container["ports"].as_array().expect("ports");
        let port = ports.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no container port {name}"));
        u16::try_from(port["containerPort"].as_u64().expect("containerPort")).expect("a port number")
    }

    /// Liveness on /healthz, readiness on /readyz, both on the admin port.
    fn assert_probes(&self, what: &str, admin_port: u16) {
        for (probe, path) in
            [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")]
        {
            let get = &self.container[probe]["httpGet"];
            assert_eq!(get["path"], path, "{what}: {probe} path");
            let port = match &get["port"] {
                Value::String(name) => self.container_port(name),
                other => u16::try_from(other.as_u64().expect("a port")).expect("a port number"),
            };
            assert_eq!(port, admin_port, "{what}: {probe} goes to the admin listener");
        }
    }

    /// The grace period covers the preStop pause, the drain and the flush.
    fn assert_grace_period(&self, what: &str, drain_secs: u64) {
        let grace = self.pod["terminationGracePeriodSeconds"].as_u64().expect("terminationGracePeriodSeconds");
        let pause = self.container["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().unwrap_or(0);
        assert!(
            grace > pause + drain_secs + TELEMETRY_FLUSH_SECS,
            "{what}: terminationGracePeriodSeconds {grace} must exceed preStop {pause} s + drain {drain_secs} s + \
             flush {TELEMETRY_FLUSH_SECS} s"
        );
    }
}

fn lookup(env: &[(String, String)]) -> impl Fn(&str) -> Option<String> + '_ {
    move |key| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', ':']).next().unwrap_or(rest)
}

/// The issuer's config, loaded as `ekey-issuer serve` loads it in the pod.
fn issuer_config(workload: &Workload<'_>) -> ekey_issuer::Config {
    let env = workload.env();
    let lookup = lookup(&env);
    let env_lookup = |k: &str| Ok(lookup(k));
    let base_dir = workload.config_path().parent().expect("the config's directory").to_path_buf();
    ekey_issuer::Config::from_toml(&workload.config_text(), &base_dir, &env_lookup)
        .unwrap_or_else(|e| panic!("the issuer's config does not load: {e}"))
}

fn issuer_files(config: &ekey_issuer::Config) -> Vec<PathBuf> {
    use ekey_issuer::{ClientAuthMethod, JwksSource, SecretSource, SigningKeySource};
    let mut files = Vec::new();
    if let Some(tls) = &config.server.tls {
        files.extend([tls.cert.clone(), tls.key.clone()]);
        files.extend(tls.client_ca.clone());
    }
    if let SigningKeySource::PemFile { path, .. } = &config.signing_key.source {
        files.push(path.clone());
    }
    if let Some(SecretSource::File(path)) = config.dpop.nonce.as_ref().map(|n| &n.secret) {
        files.push(path.clone());
    }
    for client in &config.clients {
        match &client.auth {
            ClientAuthMethod::PrivateKeyJwt(JwksSource::File(path)) => files.push(path.clone()),
            ClientAuthMethod::SecretBasic(SecretSource::File(path)) => files.push(path.clone()),
            _ => {}
        }
    }
    if let Some(revocation) = &config.revocation {
        files.push(revocation.admin_token_file.clone());
        let redis = &revocation.redis;
        files.extend(
            [&redis.password_file, &redis.ca_file, &redis.client_cert_file, &redis.client_key_file]
                .into_iter()
                .flatten()
                .cloned(),
        );
    }
    files
}

fn gateway_config(workload: &Workload<'_>) -> ekey_gateway::Config {
    let env = workload.env();
    ekey_gateway::Config::from_toml_with_env(&workload.config_text(), lookup(&env))
        .unwrap_or_else(|e| panic!("the gateway's config does not load: {e}"))
}

/// The gateway's Redis usage store: its URL and the files it reads.
fn gateway_redis(config: &ekey_gateway::Config) -> (Option<String>, Vec<PathBuf>) {
    match &config.store {
        ekey_gateway::config::StoreConfig::Redis(redis, _) => (
            redis.url.clone(),
            [&redis.password_file, &redis.ca_file, &redis.client_cert_file, &redis.client_key_file]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
        ),
        other => panic!("the gateway in Kubernetes shares one Redis usage store, not {other:?}"),
    }
}

fn gateway_files(config: &ekey_gateway::Config) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(ekey_gateway::config::SecretSource::File(path)) = config.verifier.nonce.as_ref().map(|n| &n.secret) {
        files.push(path.clone());
    }
    if let ekey_gateway::config::KeysConfig::File(path) = &config.verifier.keys {
        files.push(path.clone());
    }
    files.extend(gateway_redis(config).1);
    files
}

#[test]
fn the_configs_load_and_agree_with_the_objects_around_them() {
    for dir in [BASE, PRODUCTION] {
        let rendered = objects(dir);

        // The issuer.
        let issuer = Workload::new(&rendered, "ekey-issuer");
        let config = issuer_config(&issuer);
        let what = format!("{dir}: ekey-issuer");
        issuer.assert_mounted(&what, &issuer_files(&config));
        assert!(config.server.tls.is_some(), "{what}: TLS on the public listener (passthrough at the balancer)");
        let https = issuer.container_port("https");
        let admin = issuer.container_port("admin");
        assert_eq!(config.server.listen.port(), https, "{what}: server.listen is the https container port");
        assert_eq!(config.server.admin_listen.port(), admin, "{what}: server.admin_listen is the admin port");
        issuer.assert_probes(&what, admin);
        issuer.assert_grace_period(&what, config.server.drain_timeout.as_secs());
        assert!(
            matches!(config.signing_key.source, ekey_issuer::SigningKeySource::Kms { .. }),
            "{what}: signs through KMS"
        );
        let issuer_url = config.issuer.clone().expect("the issuer URL is set");

        // Its public Service: TCP passthrough, health checks on /readyz.
        let service = find(&rendered, "Service", "ekey-issuer");
        assert_eq!(service["spec"]["type"], "LoadBalancer", "{what}: public Service type");
        for port in service["spec"]["ports"].as_array().expect("ports") {
            assert_eq!(port["protocol"], "TCP", "{what}: public Service ports are TCP");
            assert_eq!(port["port"], 443, "{what}: public Service port");
            assert_eq!(issuer.container_port(s(&port["targetPort"])), https, "{what}: targetPort");
        }
        let annotations = &service["metadata"]["annotations"];
        let annotation = |k: &str| annotations[format!("service.beta.kubernetes.io/aws-load-balancer-{k}")].clone();
        assert_eq!(annotation("healthcheck-port"), json!(admin.to_string()), "{what}: NLB health check port");
        assert_eq!(annotation("healthcheck-path"), "/readyz", "{what}: NLB health check path");
        assert_eq!(annotation("healthcheck-protocol"), "http", "{what}: NLB health check protocol");
        assert!(annotation("ssl-cert").is_null(), "{what}: the NLB must not terminate TLS");
        assert!(annotation("proxy-protocol").is_null(), "{what}: the issuer does not read the PROXY protocol");

        // Its NetworkPolicy: the token endpoint open to all, the admin
        // listener to Prometheus and narrow address blocks (the NLB's
        // subnets) only.
        let policy = find(&rendered, "NetworkPolicy", "ekey-issuer");
        let rules = policy["spec"]["ingress"].as_array().expect("ingress rules");
        let for_port =
            |port: &'static str| rules.iter().filter(move |r| r["ports"].to_string().contains(&format!("\"{port}\"")));
        assert!(for_port("https").all(|r| r["from"].is_null()), "{what}: the token endpoint is open to all");
        let admin_peers: Vec<&Value> = for_port("admin").flat_map(|r| r["from"].as_array().expect("from")).collect();
        assert!(!admin_peers.is_empty(), "{what}: the admin port is restricted");
        for peer in admin_peers {
            if let Some(cidr) = peer["ipBlock"]["cidr"].as_str() {
                let bits: u8 = cidr.split('/').nth(1).and_then(|b| b.parse().ok()).expect("a CIDR");
                assert!(bits >= 20, "{what}: admin port open to {cidr}: name the NLB's subnets, not a whole network");
            } else {
                assert_eq!(peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "monitoring");
            }
        }

        // Its certificate names the issuer's host.
        let certificate = find(&rendered, "Certificate", "ekey-issuer-tls");
        let names: Vec<&str> = certificate["spec"]["dnsNames"].as_array().expect("dnsNames").iter().map(s).collect();
        assert!(names.contains(&host_of(&issuer_url)), "{what}: the Certificate names {issuer_url}: {names:?}");
        let tls_volume = issuer.pod["volumes"].as_array().expect("volumes").iter().find(|v| v["name"] == "tls");
        assert_eq!(tls_volume.expect("a tls volume")["secret"]["secretName"], certificate["spec"]["secretName"]);

        // The gateway.
        let gateway = Workload::new(&rendered, "ekey-gateway");
        let gw = gateway_config(&gateway);
        let what = format!("{dir}: ekey-gateway");
        gateway.assert_mounted(&what, &gateway_files(&gw));
        let authz = gateway.container_port("authz");
        let admin = gateway.container_port("admin");
        assert_eq!(gw.server.listen.port(), authz, "{what}: server.listen is the authz container port");
        assert_eq!(gw.server.admin_listen.port(), admin, "{what}: server.admin_listen is the admin port");
        gateway.assert_probes(&what, admin);
        // ekey-gateway drains for a fixed 10 s (docs/gateway.md).
        gateway.assert_grace_period(&what, 10);

        // The two agree: same issuer, its JWKS, the same Redis, audiences
        // the issuer's templates grant.
        assert_eq!(gw.verifier.issuer, issuer_url, "{dir}: the gateway trusts the issuer");
        assert_eq!(
            gw.verifier.keys,
            ekey_gateway::config::KeysConfig::Url(format!("{issuer_url}/.well-known/jwks.json")),
            "{dir}: the gateway reads the issuer's JWKS"
        );
        let revocation = config.revocation.as_ref().expect("the issuer has the revocation API");
        assert_eq!(gateway_redis(&gw).0, revocation.redis.url, "{dir}: revocations go to the gateways' Redis");
        let public = gw.server.public_base_url.as_deref().expect("public_base_url");
        assert!(gw.verifier.audiences.iter().any(|a| a == public), "{dir}: the API's origin {public} is an audience");
        let granted: BTreeSet<&String> = config.templates.iter().flat_map(|t| &t.audience).collect();
        for audience in &gw.verifier.audiences {
            assert!(granted.contains(audience), "{dir}: no template grants the gateway's audience {audience}");
        }
    }
}

#[test]
fn service_monitors_scrape_the_admin_listeners_as_the_alerts_expect() {
    let prometheus = yaml::load(&read(PROMETHEUS_CONFIG)).expect("prometheus.yml is YAML");
    let jobs: BTreeSet<&str> =
        prometheus["scrape_configs"].as_array().expect("scrape_configs").iter().map(|c| s(&c["job_name"])).collect();
    for dir in [BASE, PRODUCTION] {
        let rendered = objects(dir);
        for (monitor, deployment) in [("ekey-issuer", "ekey-issuer"), ("ekey-gateway", "ekey-gateway")] {
            let monitor = find(&rendered, "ServiceMonitor", monitor);
            let selector = monitor["spec"]["selector"]["matchLabels"].as_object().expect("matchLabels");
            let services: Vec<&Value> = rendered
                .iter()
                .filter(|o| o["kind"] == "Service")
                .filter(|o| selector.iter().all(|(k, v)| o["metadata"]["labels"][k] == *v))
                .collect();
            assert_eq!(services.len(), 1, "{dir}: ServiceMonitor {deployment} selects exactly one Service");
            let service = services[0];
            // The job label: the same job names as prometheus.yml, which the
            // alerts (EkeyTargetDown: job=~"ekey-.*") rely on.
            let job = &service["metadata"]["labels"][s(&monitor["spec"]["jobLabel"])];
            assert!(jobs.contains(s(job)), "{dir}: job {job} is not one of prometheus.yml's {jobs:?}");
            let workload = Workload::new(&rendered, deployment);
            for endpoint in monitor["spec"]["endpoints"].as_array().expect("endpoints") {
                assert_eq!(endpoint["path"], "/metrics");
                let port = service["spec"]["ports"]
                    .as_array()
                    .expect("ports")
                    .iter()
                    .find(|p| p["name"] == endpoint["port"])
                    .unwrap_or_else(|| panic!("{dir}: Service has no port {}", endpoint["port"]));
                let target = workload.container_port(s(&port["targetPort"]));
                assert_eq!(
                    target,
                    workload.container_port("admin"),
                    "{dir}: {deployment} is scraped on its admin port"
                );
            }
        }
    }
}

/// Whether a NetworkPolicy ingress rule lets in traffic to `port` only from
/// pods of the namespace `namespace` (no open rule for the port).
fn only_from_namespace(policy: &Value, port: &str, namespace: &str) -> bool {
    let rules: Vec<&Value> = policy["spec"]["ingress"]
        .as_array()
        .expect("ingress rules")
        .iter()
        .filter(|r| r["ports"].as_array().is_none_or(|ports| ports.iter().any(|p| p["port"] == port)))
        .collect();
    !rules.is_empty()
        && rules.iter().all(|rule| {
            rule["from"].as_array().is_some_and(|from| {
                !from.is_empty()
                    && from.iter().all(|peer| {
                        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == namespace
                            && peer["ipBlock"].is_null()
                    })
            })
        })
}

#[test]
fn the_ingress_nginx_example_calls_the_gateway_safely() {
    let example = objects(INGRESS_EXAMPLE);
    let ingresses: Vec<&Value> = example.iter().filter(|o| o["kind"] == "Ingress").collect();
    assert!(!ingresses.is_empty(), "the example has an Ingress");
    for dir in [BASE, PRODUCTION] {
        let rendered = objects(dir);
        let namespace = s(&find(&rendered, "Deployment", "ekey-gateway")["metadata"]["namespace"]).to_string();
        let service = find(&rendered, "Service", "ekey-gateway");
        let gateway = Workload::new(&rendered, "ekey-gateway");
        let gw = gateway_config(&gateway);

        for ingress in &ingresses {
            let annotations = ingress["metadata"]["annotations"].as_object().expect("annotations");
            let annotation = |k: &str| annotations.get(&format!("nginx.ingress.kubernetes.io/{k}")).map(s);
            // auth-url: the gateway's Service, its port, the nginx dialect.
            let url = annotation("auth-url").expect("auth-url");
            let expected_host = format!("{}.{namespace}.svc.cluster.local", s(&service["metadata"]["name"]));
            let port = service["spec"]["ports"].as_array().expect("ports").iter().find(|p| {
                url == format!("http://{expected_host}:{}/nginx", p["port"])
                    && gateway.container_port(s(&p["targetPort"])) == gw.server.listen.port()
            });
            assert!(port.is_some(), "auth-url {url} is not http://{expected_host}:<authz port>/nginx");
            // Without auth-method ingress-nginx does not set X-Original-URI,
            // and a client's own header would name the request checked.
            assert!(annotation("auth-method").is_some(), "auth-method is required");
            let headers: Vec<&str> =
                annotation("auth-response-headers").expect("auth-response-headers").split(',').map(str::trim).collect();
            assert_eq!(headers, IDENTITY_HEADERS, "auth-response-headers pass the gateway's identity headers");
            for unsafe_annotation in ["auth-keepalive", "auth-snippet", "configuration-snippet", "server-snippet"] {
                assert!(
                    annotation(unsafe_annotation).is_none(),
                    "{unsafe_annotation} is not used (docs/deployment.md)"
                );
            }
        }

        // ingress-nginx clears X-Forwarded-Proto and passes a client's
        // X-Forwarded-Host: the external origin must be configured.
        assert!(gw.server.public_base_url.is_some(), "{dir}: the gateway behind ingress-nginx needs public_base_url");
        assert!(!gw.server.trusted_proxies.is_empty(), "{dir}: the gateway trusts the ingress controller's pods");
        let policy = find(&rendered, "NetworkPolicy", "ekey-gateway");
        assert!(only_from_namespace(policy, "authz", "ingress-nginx"), "{dir}: only ingress-nginx reaches /nginx");
        assert!(only_from_namespace(policy, "admin", "monitoring"), "{dir}: only Prometheus reaches the admin port");
    }
    // The API behind the ingress takes requests from ingress-nginx only.
    let app_policy = example.iter().find(|o| o["kind"] == "NetworkPolicy").expect("the example's NetworkPolicy");
    let from = app_policy["spec"]["ingress"].as_array().expect("rules");
    assert!(
        from.iter().all(|r| r["from"].as_array().is_some_and(|f| f
            .iter()
            .all(|p| p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "ingress-nginx"))),
        "the API accepts requests only from ingress-nginx"
    );
}

#[test]
fn the_deployment_guide_names_every_secret_the_pods_mount() {
    let guide = read(DEPLOYMENT_DOC);
    let rendered = objects(BASE);
    let mut secrets = BTreeSet::new();
    for deployment in rendered.iter().filter(|o| o["kind"] == "Deployment") {
        for volume in deployment["spec"]["template"]["spec"]["volumes"].as_array().expect("volumes") {
            let sources = volume["projected"]["sources"].as_array().cloned().unwrap_or_default();
            let direct = volume["secret"].clone();
            for secret in sources.iter().map(|src| &src["secret"]).chain([&direct]).filter(|s| !s.is_null()) {
                let name = secret["name"].as_str().or(secret["secretName"].as_str()).expect("a Secret name");
                for item in secret["items"].as_array().into_iter().flatten() {
                    secrets.insert((name.to_string(), s(&item["key"]).to_string()));
                }
            }
        }
    }
    assert!(secrets.len() >= 4, "{secrets:?}");
    for (name, key) in secrets {
        assert!(
            guide.lines().any(|l| l.contains(&format!("`{name}`")) && l.contains(&format!("`{key}`"))),
            "{DEPLOYMENT_DOC} has no line naming Secret `{name}` and its key `{key}`"
        );
    }
}
