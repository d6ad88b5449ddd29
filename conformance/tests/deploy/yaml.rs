//! YAML documents as `serde_json::Value`s, so that tests can walk rendered
//! manifests and rule files with one data model.

#![allow(dead_code)]

use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// Every document of a multi-document YAML text; empty documents dropped.
pub fn load_all(text: &str) -> Result<Vec<Value>, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    docs.iter().filter(|d| !matches!(d, Yaml::Null)).map(to_json).collect()
}

/// One YAML document.
pub fn load(text: &str) -> Result<Value, String> {
    let mut docs = load_all(text)?;
    match docs.len() {
        1 => Ok(docs.remove(0)),
        n => Err(format!("expected one YAML document, found {n}")),
    }
}

fn to_json(yaml: &Yaml) -> Result<Value, String> {
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::Number((*i).into()),
        Yaml::Real(r) => {
            let f: f64 = r.parse().map_err(|_| format!("not a number: {r}"))?;
            Value::Number(Number::from_f64(f).ok_or_else(|| format!("not a finite number: {r}"))?)
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Yaml::Hash(hash) => {
            let mut map = Map::new();
            for (k, v) in hash {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => return Err(format!("unsupported mapping key {other:?}")),
                };
                if map.insert(key.clone(), to_json(v)?).is_some() {
                    return Err(format!("duplicate key {key}"));
                }
            }
            Value::Object(map)
        }
        Yaml::Alias(_) => return Err("YAML aliases are not used in ekey's files".into()),
        Yaml::BadValue => return Err("bad YAML value".into()),
    })
}

#[test]
fn yaml_becomes_json() {
    let docs = load_all("a: 1\nb: [x, true, 1.5]\n---\n---\nc: {d: null}\n").unwrap();
    assert_eq!(docs, vec![serde_json::json!({"a": 1, "b": ["x", true, 1.5]}), serde_json::json!({"c": {"d": null}})]);
    assert!(load("a: 1\na: 2\n").is_err(), "duplicate keys are refused");
}
