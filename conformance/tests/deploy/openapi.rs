//! Checks a custom resource against its CRD's OpenAPI v3 schema (the subset
//! CRDs use: type, properties, required, items, additionalProperties, enum,
//! anyOf, pattern, minLength, minimum, nullable, x-kubernetes-int-or-string,
//! x-kubernetes-preserve-unknown-fields). Stricter than the API server on
//! one point: a field the schema does not declare is an error, where the
//! server would drop it without a word.

#![allow(dead_code)]

use regex::Regex;
use serde_json::Value;

/// A vendored CRD schema (`crd/*.json`).
#[derive(Debug)]
pub struct CrdSchema {
    pub api_version: String,
    pub kind: String,
    schema: Value,
}

impl CrdSchema {
    /// Parses one of the `crd/*.json` files.
    pub fn parse(json: &str) -> Self {
        let file: Value = serde_json::from_str(json).expect("a CRD schema file is JSON");
        let field = |name: &str| file[name].as_str().unwrap_or_else(|| panic!("CRD schema file without {name}")).into();
        CrdSchema { api_version: field("apiVersion"), kind: field("kind"), schema: file["openAPIV3Schema"].clone() }
    }

    /// Whether `object` is of this kind.
    pub fn describes(&self, object: &Value) -> bool {
        object["apiVersion"] == self.api_version.as_str() && object["kind"] == self.kind.as_str()
    }

    /// Every way `object` departs from the schema, as `path: problem`.
    pub fn check(&self, object: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        check(object, &self.schema, "", &mut errors);
        errors
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check(value: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
    let at = if path.is_empty() { "." } else { path };
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !matches!(type_name(value), "integer" | "string") {
            errors.push(format!("{at}: expected an integer or a string, got {}", type_name(value)));
        }
        return;
    }
    if let Some(options) = schema["anyOf"].as_array() {
        let fits = options.iter().any(|option| {
            let mut e = Vec::new();
            check(value, option, path, &mut e);
            e.is_empty()
        });
        if !fits {
            errors.push(format!("{at}: matches none of the schema's anyOf"));
        }
    }
    if let Some(expected) = schema["type"].as_str() {
        let actual = type_name(value);
        let fits = actual == expected || (expected == "number" && actual == "integer");
        if !fits {
            errors.push(format!("{at}: expected {expected}, got {actual}"));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            errors.push(format!("{at}: {value} is not one of {}", Value::Array(allowed.clone())));
        }
    }
    match value {
        Value::String(s) => {
            if let Some(min) = schema["minLength"].as_u64() {
                if (s.chars().count() as u64) < min {
                    errors.push(format!("{at}: shorter than {min}"));
                }
            }
            if let Some(pattern) = schema["pattern"].as_str() {
                let re = Regex::new(pattern).unwrap_or_else(|e| panic!("schema pattern {pattern}: {e}"));
                if !re.is_match(s) {
                    errors.push(format!("{at}: {s:?} does not match {pattern}"));
                }
            }
        }
        Value::Number(n) => {
            if let (Some(min), Some(v)) = (schema["minimum"].as_f64(), n.as_f64()) {
                if v < min {
                    errors.push(format!("{at}: {v} is below the minimum {min}"));
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check(item, &schema["items"], &format!("{path}[{i}]"), errors);
            }
        }
        Value::Object(map) => {
            for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                if !map.contains_key(required) {
                    errors.push(format!("{at}: required field {required} is missing"));
                }
            }
            let properties = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            let free_form = schema["x-kubernetes-preserve-unknown-fields"] == true
                || *additional == true
                // `type: object` and nothing more (e.g. metadata): anything goes.
                || (properties.is_none() && additional.is_null());
            for (key, field) in map {
                let child = format!("{path}.{key}");
                match properties.and_then(|p| p.get(key)) {
                    Some(field_schema) => check(field, field_schema, &child, errors),
                    None if additional.is_object() => check(field, additional, &child, errors),
                    None if free_form => {}
                    None => errors.push(format!("{child}: unknown field")),
                }
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

#[test]
fn the_schema_check_refuses_what_it_should() {
    let schema = CrdSchema {
        api_version: "example.com/v1".into(),
        kind: "Thing".into(),
        schema: serde_json::json!({
            "type": "object",
            "required": ["spec"],
            "properties": {
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "pattern": "^[a-z]+$"},
                        "size": {"type": "integer", "minimum": 1},
                        "mode": {"type": "string", "enum": ["a", "b"]},
                        "port": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "items": {"type": "array", "items": {"type": "string"}}
                    }
                }
            }
        }),
    };
    let good = serde_json::json!({"metadata": {"anything": 1}, "spec": {"name": "ok", "size": 2, "mode": "a",
        "port": "http", "labels": {"x": "y"}, "items": ["a"]}});
    assert_eq!(schema.check(&good), Vec::<String>::new());
    for (bad, expected) in [
        (serde_json::json!({}), ".: required field spec is missing"),
        (serde_json::json!({"spec": {"name": "ok", "nmae": "x"}}), ".spec.nmae: unknown field"),
        (serde_json::json!({"spec": {"name": "OK"}}), ".spec.name: \"OK\" does not match ^[a-z]+$"),
        (serde_json::json!({"spec": {"name": "ok", "size": 0}}), ".spec.size: 0 is below the minimum 1"),
        (serde_json::json!({"spec": {"name": "ok", "size": "2"}}), ".spec.size: expected integer, got string"),
        (serde_json::json!({"spec": {"name": "ok", "mode": "c"}}), ".spec.mode: \"c\" is not one of [\"a\",\"b\"]"),
        (serde_json::json!({"spec": {"name": "ok", "port": true}}), ".spec.port: expected an integer or a string"),
        (serde_json::json!({"spec": {"name": "ok", "labels": {"x": 1}}}), ".spec.labels.x: expected string"),
        (serde_json::json!({"spec": {"name": "ok", "items": [1]}}), ".spec.items[0]: expected string"),
    ] {
        let errors = schema.check(&bad);
        assert!(errors.iter().any(|e| e.starts_with(expected)), "{bad}: expected {expected}, got {errors:?}");
    }
}
