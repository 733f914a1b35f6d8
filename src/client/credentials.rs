//! The tokens `modelreg login` saves: one file, readable by its owner alone, with a token
//! per server and the server to use when none is named.
//!
//! The file is `$MODELREG_CONFIG_DIR/credentials.json`, else
//! `$XDG_CONFIG_HOME/modelreg/credentials.json`, else `~/.config/modelreg/credentials.json`.
//! A file that others may read is refused, as ssh refuses such a key: the token is a secret.

use super::{Exit, Failure};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Saved {
    /// The server used when neither --server nor MODELREG_URL names one.
    pub default: Option<String>,
    #[serde(default)]
    pub servers: BTreeMap<String, Login>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Login {
    pub token: String,
    /// Who the token is, as whoami said at login.
    pub name: Option<String>,
}

impl Saved {
    /// The token saved for a server (URLs compared in their normal form).
    pub fn token_for(&self, server: &str) -> Option<String> {
        self.servers
            .iter()
            .find(|(url, _)| same_server(url, server))
            .map(|(_, login)| login.token.clone())
    }
}

fn same_server(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        url::Url::parse(s)
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
            .unwrap_or_else(|_| s.trim_end_matches('/').to_owned())
    };
    norm(a) == norm(b)
}

pub fn path() -> Option<PathBuf> {
    let dir = std::env::var_os("MODELREG_CONFIG_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CONFIG_HOME")
                .filter(|d| !d.is_empty())
                .map(|d| PathBuf::from(d).join("modelreg"))
        })
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| !d.is_empty())
                .map(|h| PathBuf::from(h).join(".config").join("modelreg"))
        })?;
    Some(dir.join("credentials.json"))
}

/// The saved logins, `None` when there is no file.
pub fn load() -> Result<Option<Saved>, Failure> {
    let Some(path) = path() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Failure::new(
                Exit::Auth,
                format!("cannot read {}: {e}", path.display()),
            ));
        }
    };
    check_private(&path)?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Failure::new(
            Exit::Auth,
            format!(
                "{} is not a credentials file ({e}); log in again",
                path.display()
            ),
        )
    })
}

#[cfg(unix)]
fn check_private(path: &std::path::Path) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| Failure::new(Exit::Auth, format!("cannot read {}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Failure::new(
            Exit::Auth,
            format!(
                "{} holds tokens and others may read it (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &std::path::Path) -> Result<(), Failure> {
    Ok(())
}

/// Writes the file whole (a temporary file renamed over it), created with mode 0600.
pub fn store(saved: &Saved) -> Result<PathBuf, Failure> {
    let path = path().ok_or_else(|| {
        Failure::usage("no place for the credentials: set HOME or MODELREG_CONFIG_DIR")
    })?;
    let fail = |e: std::io::Error| {
        Failure::new(
            Exit::Refused,
            format!("cannot write {}: {e}", path.display()),
        )
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let text = serde_json::to_string_pretty(saved).map_err(|e| Failure::usage(e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    {
        use std::io::Write;
        let mut file = options.open(&tmp).map_err(fail)?;
        file.write_all(text.as_bytes()).map_err(fail)?;
        file.sync_all().map_err(fail)?;
    }
    std::fs::rename(&tmp, &path).map_err(fail)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_match_in_normal_form() {
        let mut saved = Saved::default();
        saved.servers.insert(
            "http://Registry:8080/".into(),
            Login {
                token: "t".into(),
                name: None,
            },
        );
        assert_eq!(
            saved.token_for("http://registry:8080"),
            Some("t".to_owned())
        );
        assert_eq!(saved.token_for("http://registry:8081"), None);
    }
}
