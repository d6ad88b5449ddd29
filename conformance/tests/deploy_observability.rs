//! The observability deploy artifacts are valid and agree with the operator
//! guide: the Prometheus alerting rules and configuration pass `promtool`, the
//! rule unit tests pass, the Grafana dashboard is importable and its queries
//! parse, and every metric and label used by rules and dashboard is in the
//! metrics table of `docs/observability.md`. Needs `promtool` (Debian package
//! `prometheus`).

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

const RULES: &str = "deploy/prometheus/ekey-alerts.yml";
const RULE_TESTS: &str = "deploy/prometheus/ekey-alerts.test.yml";
const PROMETHEUS_CONFIG: &str = "deploy/prometheus/prometheus.yml";
const DASHBOARD: &str = "deploy/grafana/ekey-dashboard.json";
const GUIDE: &str = "docs/observability.md";

/// The dashboard's data source: the `__inputs` entry Grafana asks for at import.
const DS_INPUT: &str = "DS_PROMETHEUS";
const DS_REF: &str = "${DS_PROMETHEUS}";

/// Labels that Prometheus itself puts on series (target labels, buckets).
const PROMETHEUS_LABELS: [&str; 3] = ["job", "instance", "le"];
/// Metrics that Prometheus itself generates for every target.
const PROMETHEUS_METRICS: [&str; 1] = ["up"];
const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_count", "_sum"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the conformance crate is inside the workspace").to_path_buf()
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {relative}: {e}"))
}

/// Runs `promtool` in the repository root: whether it succeeded, and its
/// output. Fails the test when promtool is missing.
fn run_promtool(args: &[&str]) -> (bool, String) {
    let output = match Command::new("promtool").args(args).current_dir(root()).output() {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("promtool not found: install the Debian package prometheus (scripts/test does)")
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Runs `promtool` and fails the test when it refuses.
fn promtool(args: &[&str]) -> String {
    let (ok, text) = run_promtool(args);
    assert!(ok, "promtool {} failed:\n{text}", args.join(" "));
    text
}

// ---------------------------------------------------------------------------
// YAML, read just enough for our own rules file.

/// The values of `key:` in a YAML file, with `|` block scalars joined.
fn yaml_values(yaml: &str, key: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let prefix = format!("{key}:");
    let mut values = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start().trim_start_matches("- ");
        i += 1;
        let Some(rest) = trimmed.strip_prefix(&prefix) else { continue };
        let rest = rest.trim();
        if rest.starts_with('|') || rest.starts_with('>') {
            let indent = line.len() - line.trim_start().len();
            let mut block = Vec::new();
            while i < lines.len() && (lines[i].trim().is_empty() || indentation(lines[i]) > indent) {
                block.push(lines[i].trim());
                i += 1;
            }
            values.push(block.join("\n").trim().to_string());
        } else {
            values.push(unquote(rest).to_string());
        }
    }
    values
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn unquote(s: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

// ---------------------------------------------------------------------------
// PromQL, tokenised just enough to tell metric names from label names.

#[derive(Debug, Default)]
struct Names {
    metrics: BTreeSet<String>,
    labels: BTreeSet<String>,
}

/// Operators and aggregations (which may be followed by `by (…)` rather than `(`).
const KEYWORDS: [&str; 21] = [
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "offset",
    "bool",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
const LABEL_LIST_KEYWORDS: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Metric names and label names an expression refers to.
fn promql_names(expr: &str) -> Names {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Names::default();
    let mut in_braces = false;
    let mut i = 0;
    let next_non_space = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        (j, chars.get(j).copied())
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            // Numbers and durations: 0.5, 1e3, 5m, 1h30m.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            let ident: String = chars[start..i].iter().collect();
            let (after, next) = next_non_space(i);
            if in_braces {
                names.labels.insert(ident);
            } else if LABEL_LIST_KEYWORDS.contains(&ident.as_str()) && next == Some('(') {
                let close = chars[after..].iter().position(|&c| c == ')').map(|p| after + p).expect("unclosed (");
                let list: String = chars[after + 1..close].iter().collect();
                names.labels.extend(list.split(',').map(str::trim).filter(|l| !l.is_empty()).map(str::to_string));
                i = close + 1;
            } else if next == Some('(') || KEYWORDS.contains(&ident.as_str()) {
                // A function or aggregation, or an operator keyword.
            } else {
                names.metrics.insert(ident);
            }
        } else {
            match c {
                '{' => in_braces = true,
                '}' => in_braces = false,
                _ => {}
            }
            i += 1;
        }
    }
    names
}

#[test]
fn promql_names_tells_metrics_from_labels() {
    let names =
        promql_names(r#"sum by (job, le) (rate(a_bucket{x="y", z=~"5.."}[5m] offset 1h)) / on (job) b > 0.5 unless c"#);
    assert_eq!(names.metrics, ["a_bucket", "b", "c"].map(String::from).into());
    assert_eq!(names.labels, ["job", "le", "x", "z"].map(String::from).into());
}

// ---------------------------------------------------------------------------
// The guide's metrics table.

#[derive(Debug)]
struct Documented {
    /// Prometheus name → type (`counter` or `histogram`).
    metrics: BTreeMap<String, String>,
    labels: BTreeSet<String>,
}

fn cells(row: &str) -> Vec<String> {
    let row = row.trim().trim_start_matches('|').trim_end_matches('|');
    row.split('|').map(|c| c.trim().to_string()).collect()
}

fn backticked(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// Parses the table whose header starts with `| Prometheus name`.
fn documented() -> Documented {
    let guide = read(GUIDE);
    let mut lines = guide.lines().skip_while(|l| !l.starts_with("| Prometheus name"));
    let header = cells(lines.next().expect("docs/observability.md has a table headed `| Prometheus name`"));
    let column = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    let (prom, otel, kind, unit, labels) =
        (column("Prometheus name"), column("OTel name"), column("type"), column("unit"), column("labels"));
    let mut doc = Documented { metrics: BTreeMap::new(), labels: BTreeSet::new() };
    for row in lines.skip(1).take_while(|l| l.starts_with('|')) {
        let row = cells(row);
        let name = backticked(&row[prom]).concat();
        let otel_name = backticked(&row[otel]).concat();
        let unit_cell = backticked(&row[unit]).concat();
        let kind_cell = row[kind].clone();
        // The exporter's rule: dots to underscores, `_seconds` for unit s,
        // `_total` for counters.
        let mut expected = otel_name.replace('.', "_");
        if unit_cell == "s" {
            expected.push_str("_seconds");
        }
        if kind_cell == "counter" {
            expected.push_str("_total");
        }
        assert_eq!(name, expected, "{GUIDE}: Prometheus name of {otel_name}");
        assert!(["counter", "histogram"].contains(&kind_cell.as_str()), "{GUIDE}: type of {name}: {kind_cell}");
        doc.labels.extend(backticked(&row[labels]));
        doc.metrics.insert(name, kind_cell);
    }
    assert!(doc.metrics.len() >= 9, "{GUIDE}: metrics table too short: {:?}", doc.metrics.keys());
    doc
}

/// Checks that every metric and label of `expr` (from `origin`) is documented,
/// and returns the documented metrics it uses.
fn check_documented(doc: &Documented, origin: &str, expr: &str) -> Result<BTreeSet<String>, String> {
    let names = promql_names(expr);
    let mut used = BTreeSet::new();
    for metric in &names.metrics {
        if PROMETHEUS_METRICS.contains(&metric.as_str()) {
            continue;
        }
        let histogram_base = HISTOGRAM_SUFFIXES
            .iter()
            .filter_map(|suffix| metric.strip_suffix(suffix))
            .find(|base| doc.metrics.get(*base).is_some_and(|k| k == "histogram"));
        let base = match (histogram_base, doc.metrics.get(metric.as_str())) {
            (Some(base), _) => base.to_string(),
            (None, Some(kind)) if kind == "counter" => metric.clone(),
            _ => return Err(format!("{origin}: metric {metric} is not in the metrics table of {GUIDE}\n  in: {expr}")),
        };
        used.insert(base);
    }
    for label in &names.labels {
        if !PROMETHEUS_LABELS.contains(&label.as_str()) && !doc.labels.contains(label) {
            return Err(format!("{origin}: label {label} is not in the metrics table of {GUIDE}\n  in: {expr}"));
        }
    }
    Ok(used)
}

// ---------------------------------------------------------------------------
// The dashboard.

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON")
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels is an array") {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// `(panel title, expr)` of every query, Grafana's interval variables replaced
/// by durations so that the result is plain PromQL.
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    for panel in panels(dashboard).into_iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap_or("?").to_string();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("panel {title}: a target without expr"));
            let expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h");
            assert!(!expr.contains('$'), "panel {title}: unknown variable in {expr}");
            exprs.push((title.clone(), expr));
        }
    }
    exprs
}

fn string_leaves<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| string_leaves(v, out)),
        Value::Object(map) => map.values().for_each(|v| string_leaves(v, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Tests.

#[test]
fn alerting_rules_pass_promtool_check_and_their_unit_tests() {
    let check = promtool(&["check", "rules", RULES]);
    assert!(check.contains("SUCCESS"), "{check}");
    let test = promtool(&["test", "rules", RULE_TESTS]);
    assert!(test.contains("SUCCESS"), "{test}");
}

#[test]
fn every_alert_has_a_unit_test_a_severity_and_a_runbook() {
    let rules = read(RULES);
    let tests = read(RULE_TESTS);
    let alerts = yaml_values(&rules, "alert");
    assert!(alerts.len() >= 9, "too few alerts: {alerts:?}");
    assert_eq!(yaml_values(&rules, "runbook_url").len(), alerts.len(), "one runbook_url per alert");
    assert_eq!(yaml_values(&rules, "severity").len(), alerts.len(), "one severity per alert");
    for severity in yaml_values(&rules, "severity") {
        assert!(["warning", "critical"].contains(&severity.as_str()), "severity {severity}");
    }
    let tested: BTreeSet<String> = yaml_values(&tests, "alertname").into_iter().collect();
    for alert in &alerts {
        assert!(tested.contains(alert), "{RULE_TESTS} has no test of {alert}");
    }
}

/// The words of `ekey_outcome` for verify decisions, the same in the
/// verifier (`Outcome`), the guide's label table, the gateway's
/// `X-Ekey-Reason` list, the alerting rules and the dashboard: an outcome
/// added to the verifier and left out of the docs (or a rule watching a word
/// that no longer exists) fails here.
#[test]
fn verify_outcome_words_agree_with_the_verifier() {
    let words: BTreeSet<String> = ekey_verifier::Outcome::ALL.iter().map(|o| o.as_str().to_owned()).collect();
    let row_cell = |file: &str, start: &str| -> String {
        let text = read(file);
        let row = text.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("{file}: no row {start}"));
        cells(row).get(1).cloned().unwrap_or_default()
    };
    // The list runs up to the first ':' of the cell; an explanation follows.
    let cell = row_cell(GUIDE, "| `ekey_outcome` (verification)");
    let listed: BTreeSet<String> = backticked(cell.split(':').next().unwrap_or_default()).into_iter().collect();
    assert_eq!(listed, words, "{GUIDE}: the ekey_outcome (verification) values");

    let reasons: BTreeSet<String> =
        backticked(&row_cell("docs/gateway.md", "| `X-Ekey-Reason` |")).into_iter().collect();
    for word in words.iter().filter(|w| *w != "success") {
        assert!(reasons.contains(word), "docs/gateway.md: X-Ekey-Reason lacks {word}");
    }

    let mut exprs = yaml_values(&read(RULES), "expr");
    exprs.extend(dashboard_exprs(&dashboard()).into_iter().map(|(_, e)| e));
    let mut used = 0;
    for expr in exprs.iter().filter(|e| e.contains("ekey_verify_")) {
        for (at, _) in expr.match_indices("ekey_outcome=\"") {
            let word = expr[at + "ekey_outcome=\"".len()..].split('"').next().unwrap_or_default();
            assert!(words.contains(word), "{word:?} in {expr} is not a verify outcome");
            used += 1;
        }
    }
    assert!(used >= 4, "the rules and dashboard watch only {used} verify outcomes");
}

#[test]
fn prometheus_config_is_valid() {
    let check = promtool(&["check", "config", PROMETHEUS_CONFIG]);
    assert!(check.contains("SUCCESS"), "{check}");
}

#[test]
fn dashboard_is_importable() {
    let dashboard = dashboard();
    for field in ["title", "uid"] {
        assert!(dashboard[field].as_str().is_some_and(|s| !s.is_empty()), "dashboard {field}");
    }
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion");
    assert!(dashboard["id"].is_null(), "an exported dashboard has id null");

    let inputs = dashboard["__inputs"].as_array().expect("__inputs");
    let input_names: BTreeSet<&str> = inputs.iter().filter_map(|i| i["name"].as_str()).collect();
    assert!(
        inputs.iter().any(|i| i["name"] == DS_INPUT && i["type"] == "datasource" && i["pluginId"] == "prometheus"),
        "__inputs declares the Prometheus data source {DS_INPUT}"
    );
    // Every `${DS_…}` anywhere in the file is a declared input.
    let mut strings = Vec::new();
    string_leaves(&dashboard, &mut strings);
    for s in strings {
        for (at, _) in s.match_indices("${DS_") {
            let name = s[at + 2..].split('}').next().unwrap_or_default();
            assert!(input_names.contains(name), "reference to undeclared input {name}");
        }
    }

    let datasource = serde_json::json!({"type": "prometheus", "uid": DS_REF});
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().expect("every panel has a title");
        let id = panel["id"].as_u64().unwrap_or_else(|| panic!("panel {title}: id"));
        assert!(ids.insert(id), "panel {title}: duplicate id {id}");
        for key in ["h", "w", "x", "y"] {
            assert!(panel["gridPos"][key].is_u64(), "panel {title}: gridPos.{key}");
        }
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"], datasource, "panel {title}: datasource");
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
        let targets = targets.unwrap_or_else(|| panic!("panel {title}: no targets"));
        for target in targets {
            assert_eq!(target["datasource"], datasource, "panel {title}: target datasource");
            assert!(target["refId"].is_string(), "panel {title}: refId");
            assert!(target["expr"].as_str().is_some_and(|e| !e.trim().is_empty()), "panel {title}: expr");
            queries += 1;
        }
    }
    assert!(queries >= 10, "the dashboard has only {queries} queries");
}

/// Writes `exprs` as recording rules and runs `promtool check rules` on them.
fn check_as_recording_rules(exprs: &[(String, String)]) -> Result<String, String> {
    let mut yaml = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, (_, expr)) in exprs.iter().enumerate() {
        let quoted = serde_json::to_string(expr).expect("a string serializes");
        yaml.push_str(&format!("      - record: dashboard:query_{n}\n        expr: {quoted}\n"));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(&file, yaml).expect("write the rules");
    let file = file.to_str().expect("temp path is UTF-8");
    match run_promtool(&["check", "rules", file]) {
        (true, text) => Ok(text),
        (false, text) => Err(text),
    }
}

#[test]
fn dashboard_queries_are_valid_promql() {
    let exprs = dashboard_exprs(&dashboard());
    if let Err(e) = check_as_recording_rules(&exprs) {
        panic!("a dashboard query is not valid PromQL:\n{e}");
    }
    // The check is not vacuous: promtool refuses a broken query.
    let broken = [("broken".to_string(), "sum by (job (rate(ekey_issue_tokens_total[5m]))".to_string())];
    assert!(check_as_recording_rules(&broken).is_err(), "promtool accepted a broken query");
}

#[test]
fn rules_and_dashboard_use_only_documented_metrics_and_labels() {
    let doc = documented();
    for expr in yaml_values(&read(RULES), "expr") {
        check_documented(&doc, RULES, &expr).unwrap_or_else(|e| panic!("{e}"));
    }
    let mut on_dashboard = BTreeSet::new();
    for (title, expr) in dashboard_exprs(&dashboard()) {
        let used = check_documented(&doc, &format!("{DASHBOARD} panel {title}"), &expr);
        on_dashboard.extend(used.unwrap_or_else(|e| panic!("{e}")));
    }
    // And the other way round: every documented metric has a panel.
    for metric in doc.metrics.keys() {
        assert!(on_dashboard.contains(metric), "{metric} is documented but on no dashboard panel");
    }
}

#[test]
fn an_undocumented_metric_or_label_is_caught() {
    let doc = documented();
    for expr in [
        "rate(ekey_issue_latency_seconds_bucket[5m])",
        "rate(ekey_issue_tokens_total_count[5m])",
        "ekey_issue_duration_seconds",
        r#"sum by (ekey_reason) (rate(ekey_verify_decisions_total[5m]))"#,
        r#"rate(ekey_verify_decisions_total{outcome="success"}[5m])"#,
    ] {
        assert!(check_documented(&doc, "probe", expr).is_err(), "not caught: {expr}");
    }
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn runbook_links_and_guide_links_point_at_sections_of_the_guide() {
    let guide = read(GUIDE);
    let anchors: BTreeSet<String> =
        guide.lines().filter_map(|l| l.strip_prefix('#')).map(|l| anchor(l.trim_start_matches('#'))).collect();

    let manifest = read("Cargo.toml");
    let repository = manifest
        .lines()
        .find_map(|l| l.strip_prefix("repository = "))
        .map(|v| unquote(v.trim()).to_string())
        .expect("the workspace names its repository");
    let prefix = format!("{repository}/blob/main/{GUIDE}#");
    let alerts = yaml_values(&read(RULES), "alert");
    let runbooks = yaml_values(&read(RULES), "runbook_url");
    for (alert, url) in alerts.iter().zip(&runbooks) {
        let fragment =
            url.strip_prefix(&prefix).unwrap_or_else(|| panic!("{alert}: runbook_url {url} is not {prefix}…"));
        assert_eq!(fragment, anchor(alert), "{alert}: the runbook section is named after the alert");
        assert!(anchors.contains(fragment), "{alert}: {GUIDE} has no section #{fragment}");
    }

    for (at, _) in guide.match_indices("](#") {
        let fragment = guide[at + 3..].split(')').next().unwrap_or_default();
        assert!(anchors.contains(fragment), "{GUIDE}: link to missing section #{fragment}");
    }
}
