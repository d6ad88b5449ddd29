//! Reading values, secrets and keys from arguments, files and standard input,
//! and writing private key files.

use crate::error::CliError;
use ekey_verifier::client::DpopKey;
use std::io::{Read, Write};
use std::path::Path;

/// Largest file or standard input read (keys, JWKS, tokens, request bodies).
pub const MAX_INPUT: u64 = 16 * 1024 * 1024;

/// Hands out standard input at most once per run: two values cannot both come
/// from it.
#[derive(Debug, Default)]
pub struct Stdin {
    taken: Option<&'static str>,
}

impl Stdin {
    fn take(&mut self, what: &'static str) -> Result<Vec<u8>, CliError> {
        if let Some(first) = self.taken {
            return Err(CliError::usage(format!("{what} and {first} cannot both be read from standard input")));
        }
        self.taken = Some(what);
        read_limited(std::io::stdin().lock(), what, "standard input")
    }
}

/// A value given as `VALUE`, `-` (standard input) or `@FILE`, as bytes.
pub fn value_bytes(arg: &str, what: &'static str, stdin: &mut Stdin) -> Result<Vec<u8>, CliError> {
    if arg == "-" {
        stdin.take(what)
    } else if let Some(path) = arg.strip_prefix('@') {
        read_file(Path::new(path), what)
    } else {
        Ok(arg.as_bytes().to_vec())
    }
}

/// A token or proof given as `VALUE`, `-` or `@FILE`: surrounding whitespace
/// and a leading `DPoP ` / `Bearer ` scheme are dropped, and it must be one
/// printable ASCII word.
pub fn compact(arg: &str, what: &'static str, stdin: &mut Stdin) -> Result<String, CliError> {
    let bytes = value_bytes(arg, what, stdin)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| CliError::usage(format!("{what} is not text")))?.trim();
    let text = ["DPoP ", "Bearer "]
        .iter()
        .find_map(|scheme| {
            text.get(..scheme.len()).filter(|p| p.eq_ignore_ascii_case(scheme)).map(|_| text[scheme.len()..].trim())
        })
        .unwrap_or(text);
    if text.is_empty() {
        return Err(CliError::usage(format!("{what} is empty")));
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CliError::usage(format!("{what} must be one word of printable ASCII (a compact JWS)")));
    }
    Ok(text.to_owned())
}

/// A secret read from a file or `-`; one trailing newline (as editors and
/// `echo` add) is dropped, nothing else.
pub fn secret_file(arg: &str, what: &'static str, stdin: &mut Stdin) -> Result<String, CliError> {
    let bytes = if arg == "-" { stdin.take(what)? } else { read_file(Path::new(arg), what)? };
    let mut text = String::from_utf8(bytes).map_err(|_| CliError::usage(format!("{what} is not UTF-8")))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(CliError::usage(format!("{what} is empty")));
    }
    Ok(text)
}

/// Reads a whole file (bounded), naming it in any error.
pub fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, CliError> {
    let file = std::fs::File::open(path)
        .map_err(|e| CliError::usage(format!("cannot read {what} {}: {e}", path.display())))?;
    read_limited(file, what, &path.display().to_string())
}

fn read_limited(reader: impl Read, what: &str, from: &str) -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    reader
        .take(MAX_INPUT + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CliError::usage(format!("cannot read {what} from {from}: {e}")))?;
    if buf.len() as u64 > MAX_INPUT {
        return Err(CliError::usage(format!("{what} from {from} is larger than {MAX_INPUT} bytes")));
    }
    Ok(buf)
}

/// Loads a PKCS#8 PEM private key, warning when others may read the file.
pub fn private_key(path: &Path, what: &str) -> Result<DpopKey, CliError> {
    let pem = read_file(path, what)?;
    let key = DpopKey::from_pem(&pem).map_err(|e| CliError::usage(format!("{what} {}: {e}", path.display())))?;
    warn_if_shared(path, what);
    Ok(key)
}

#[cfg(unix)]
fn warn_if_shared(path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "ekey: warning: {what} {} can be read by other users (mode {mode:04o}); run chmod 600 on it",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_: &Path, _: &str) {}

/// Writes a private key to `path`, readable by its owner only (0600 on Unix).
/// Refuses to replace an existing file unless `force`; with `force` the new
/// key goes to a fresh file first and is then renamed over the old one, so
/// the old file's permissions never apply to the new key.
pub fn write_private_file(path: &Path, contents: &[u8], force: bool) -> Result<(), CliError> {
    let fail = |e: std::io::Error| CliError::usage(format!("cannot write {}: {e}", path.display()));
    if !force {
        let mut f = create_new_private(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CliError::usage(format!("{} exists; use --force to replace it", path.display()))
            } else {
                fail(e)
            }
        })?;
        return f.write_all(contents).and_then(|()| f.sync_all()).map_err(fail);
    }
    let name = path.file_name().ok_or_else(|| CliError::usage(format!("{} is not a file name", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = create_new_private(&tmp)
        .and_then(|mut f| f.write_all(contents).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

fn create_new_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ekey-cli-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn compact_values() {
        let mut stdin = Stdin::default();
        assert_eq!(compact(" a.b.c \n", "token", &mut stdin).unwrap(), "a.b.c");
        assert_eq!(compact("DPoP a.b.c", "token", &mut stdin).unwrap(), "a.b.c");
        assert_eq!(compact("bearer  a.b.c", "token", &mut stdin).unwrap(), "a.b.c");
        assert!(compact("a b", "token", &mut stdin).is_err());
        assert!(compact("  ", "token", &mut stdin).is_err());
        assert!(compact("a\u{7f}", "token", &mut stdin).is_err());
        let err = compact("@/nonexistent/ekey-token", "token", &mut stdin).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ekey-token"), "{err}");
    }

    #[test]
    fn stdin_only_once() {
        let mut stdin = Stdin { taken: Some("token") };
        let err = value_bytes("-", "body", &mut stdin).unwrap_err();
        assert_eq!(err.to_string(), "body and token cannot both be read from standard input");
    }

    #[test]
    fn secret_file_drops_one_newline_only() {
        let dir = temp_dir("secret");
        let path = dir.join("s");
        std::fs::write(&path, "s3 cret \r\n").unwrap();
        let mut stdin = Stdin::default();
        assert_eq!(secret_file(path.to_str().unwrap(), "secret", &mut stdin).unwrap(), "s3 cret ");
        std::fs::write(&path, "\n").unwrap();
        assert!(secret_file(path.to_str().unwrap(), "secret", &mut stdin).is_err());
    }

    #[test]
    fn private_files_are_0600_and_not_overwritten() {
        let dir = temp_dir("write");
        let path = dir.join("k.pem");
        write_private_file(&path, b"one", false).unwrap();
        let err = write_private_file(&path, b"two", false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        write_private_file(&path, b"two", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left behind");
    }
}
