//! A systemd unit file read the way systemd reads the settings the deploy
//! tests care about: `[Section]`, `Key=Value`, repeated keys add values, an
//! empty assignment resets the list, `\` continues a line.

#![allow(dead_code)]

/// One unit file (and any drop-ins applied after it).
#[derive(Debug, Default)]
pub struct Unit {
    entries: Vec<(String, String, Vec<String>)>,
}

impl Unit {
    /// Parses unit file text; later texts (drop-ins) apply on top.
    pub fn parse(texts: &[&str]) -> Self {
        let mut unit = Unit::default();
        for text in texts {
            let mut section = String::new();
            let mut pending = String::new();
            for raw in text.lines() {
                let line = raw.trim();
                if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';')) {
                    continue;
                }
                if let Some(continued) = line.strip_suffix('\\') {
                    pending.push_str(continued);
                    pending.push(' ');
                    continue;
                }
                let line = std::mem::take(&mut pending) + line;
                if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                    section = name.to_string();
                    continue;
                }
                let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not Key=Value: {line}"));
                unit.set(&section, key.trim(), value.trim());
            }
        }
        unit
    }

    fn set(&mut self, section: &str, key: &str, value: &str) {
        let at = self.entries.iter().position(|(s, k, _)| s == section && k == key);
        let values = match at {
            Some(i) => &mut self.entries[i].2,
            None => {
                self.entries.push((section.to_string(), key.to_string(), Vec::new()));
                &mut self.entries.last_mut().expect("just pushed").2
            }
        };
        if value.is_empty() {
            values.clear();
        } else {
            values.push(value.to_string());
        }
    }

    /// Every value of `key` in `section`, in order (empty when reset or unset).
    pub fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .find(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// The last value of `key` in `section` (the one that counts for
    /// single-valued settings).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.all(section, key).last().copied()
    }

    /// Whether `key` is assigned in `section` at all (even to empty).
    pub fn has(&self, section: &str, key: &str) -> bool {
        self.entries.iter().any(|(s, k, _)| s == section && k == key)
    }

    /// `LoadCredential=ID:PATH` pairs of `[Service]`.
    pub fn credentials(&self) -> Vec<(String, String)> {
        self.all("Service", "LoadCredential")
            .into_iter()
            .map(|v| {
                let (id, path) = v.split_once(':').unwrap_or_else(|| panic!("LoadCredential={v} has no path"));
                (id.to_string(), path.to_string())
            })
            .collect()
    }

    /// `Environment=` assignments of `[Service]` as (name, value), with
    /// `%d` replaced by `credentials_dir`.
    pub fn environment(&self, credentials_dir: &str) -> Vec<(String, String)> {
        let mut env = Vec::new();
        for assignment in self.all("Service", "Environment") {
            for word in assignment.split_whitespace() {
                let word = word.trim_matches('"');
                let (k, v) = word.split_once('=').unwrap_or_else(|| panic!("Environment={word} is not NAME=VALUE"));
                env.push((k.to_string(), v.replace("%d", credentials_dir)));
            }
        }
        env
    }
}

#[test]
fn unit_files_parse_like_systemd_reads_them() {
    let unit = Unit::parse(&[
        "[Service]\n# comment\nLoadCredential=a:/x\nLoadCredential=b:/y\nExecStart=/bin/x \\\n  --flag\n",
        "[Service]\nLoadCredential=\nLoadCredential=c:/z\nEnvironment=A=%d/a \"B=2\"\n",
    ]);
    assert_eq!(unit.credentials(), vec![("c".to_string(), "/z".to_string())]);
    assert_eq!(unit.get("Service", "ExecStart"), Some("/bin/x  --flag"));
    assert_eq!(unit.environment("/run/c"), vec![("A".into(), "/run/c/a".into()), ("B".into(), "2".into())]);
    assert!(!unit.has("Unit", "Description"));
}
