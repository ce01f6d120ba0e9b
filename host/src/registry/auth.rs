//! Credentials as registry tools find them: `--username` with `--password-stdin`, else the
//! Docker configuration (`$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`: `auths`
//! entries and credential helpers), else anonymous. Basic credentials are sent as HTTP basic
//! auth, or traded for a bearer token at the registry's token endpoint when the registry's
//! challenge asks for one (`registry::http`).

use std::fmt;

use crate::error::HostError;

/// Credentials for one registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials.
    #[default]
    Anonymous,
    /// User name and password (or an access token used as the password).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <hidden>)"),
        }
    }
}

/// The keys a Docker config may file `registry`'s credentials under.
fn config_keys(registry: &str) -> Vec<String> {
    let mut keys = vec![registry.to_string(), format!("https://{registry}"), format!("http://{registry}")];
    if registry == "docker.io" || registry == "index.docker.io" || registry == "registry-1.docker.io" {
        keys.insert(0, "https://index.docker.io/v1/".to_string());
    }
    keys
}

/// Credentials for `registry`: the explicit ones if given, else the Docker configuration's,
/// else anonymous. An identity token (OAuth refresh token) in the Docker configuration is not
/// supported and says so.
pub fn resolve(
    registry: &str,
    username: Option<String>,
    password: Option<String>,
) -> Result<Credentials, HostError> {
    match (username, password) {
        (Some(username), Some(password)) => return Ok(Credentials::Basic { username, password }),
        (Some(_), None) => {
            return Err(HostError::Usage(
                "--username needs the password on standard input (--password-stdin)".into(),
            ))
        }
        (None, Some(_)) => return Err(HostError::Usage("--password-stdin needs --username".into())),
        (None, None) => {}
    }
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    for key in config_keys(registry) {
        match docker_credential::get_credential(&key) {
            Ok(DockerCredential::UsernamePassword(username, password)) => {
                return Ok(Credentials::Basic { username, password })
            }
            Ok(DockerCredential::IdentityToken(_)) => {
                return Err(HostError::Usage(format!(
                    "the Docker configuration holds an identity token for {registry}, which snapbundle does not support; use --username and --password-stdin"
                )))
            }
            Err(E::ConfigNotFound | E::NoCredentialConfigured | E::ConfigReadError) => {}
            Err(e) => {
                return Err(HostError::Usage(format!(
                    "reading the Docker credentials for {registry} (from {key}): {e:?}"
                )))
            }
        }
    }
    Ok(Credentials::Anonymous)
}

/// Reads a password from standard input: the first line, without its line end.
pub fn password_from_stdin() -> Result<String, HostError> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| HostError::io("reading the password from standard input", e))?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(HostError::Usage("--password-stdin: standard input held no password".into()));
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_credentials_need_both_parts() {
        assert!(matches!(resolve("r", Some("u".into()), None), Err(HostError::Usage(_))));
        assert!(matches!(resolve("r", None, Some("p".into())), Err(HostError::Usage(_))));
        let c = resolve("r", Some("u".into()), Some("p".into())).ok();
        assert_eq!(c, Some(Credentials::Basic { username: "u".into(), password: "p".into() }));
        assert!(!format!("{:?}", c).contains('p') || format!("{:?}", c).contains("<hidden>"));
    }

    #[test]
    fn docker_hub_has_its_legacy_key_first() {
        assert_eq!(config_keys("docker.io").first().map(String::as_str), Some("https://index.docker.io/v1/"));
        assert_eq!(config_keys("127.0.0.1:5000").first().map(String::as_str), Some("127.0.0.1:5000"));
    }
}
