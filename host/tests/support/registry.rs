//! A real registry for the tests: Debian's `docker-registry` (the CNCF distribution registry)
//! on 127.0.0.1, on a free port, with a generated configuration: filesystem storage in a temp
//! dir, htpasswd auth (bcrypt via `htpasswd -B`), and TLS with a generated self-signed
//! certificate unless asked for plain HTTP. Its access log (one line per request) is kept so
//! that tests can count requests. It is killed when dropped.

use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The user the registry accepts.
pub const USER: &str = "snap";
/// Its password.
pub const PASSWORD: &str = "bundle-secret";

/// A running (or stopped) registry.
pub struct TestRegistry {
    child: Option<Child>,
    /// Storage, configuration, certificate and log live here.
    pub dir: tempfile::TempDir,
    /// The port it listens on.
    pub port: u16,
    /// Whether it speaks TLS.
    pub tls: bool,
    /// Bearer-token auth with this realm instead of htpasswd (the registry then sends
    /// `WWW-Authenticate: Bearer realm=…` challenges; its tokens are never honoured in these
    /// tests: they check what a client does with the challenge).
    token_realm: Option<String>,
}

fn need(cmd: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(cmd))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("`{cmd}` is not installed: the registry tests need the Debian package `{package}` (scripts/install-deps.sh installs it)")
    })
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl TestRegistry {
    /// Starts a registry with TLS (`tls`) or plain HTTP.
    pub fn start(tls: bool) -> TestRegistry {
        Self::start_with(tls, None)
    }

    /// Starts a TLS registry whose bearer challenges name `realm` as the token endpoint.
    pub fn start_with_token_realm(realm: &str) -> TestRegistry {
        Self::start_with(true, Some(realm.to_string()))
    }

    fn start_with(tls: bool, token_realm: Option<String>) -> TestRegistry {
        let dir = tempfile::tempdir().expect("registry temp dir");
        let htpasswd = need("htpasswd", "apache2-utils");
        let out = Command::new(htpasswd).args(["-Bbn", USER, PASSWORD]).output().expect("run htpasswd");
        assert!(out.status.success(), "htpasswd failed: {}", String::from_utf8_lossy(&out.stderr));
        fs::write(dir.path().join("htpasswd"), &out.stdout).expect("write htpasswd");
        if tls {
            let openssl = need("openssl", "openssl");
            let out = Command::new(openssl)
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
                .args(["-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
                .arg("-keyout")
                .arg(dir.path().join("key.pem"))
                .arg("-out")
                .arg(dir.path().join("cert.pem"))
                .output()
                .expect("run openssl");
            assert!(out.status.success(), "openssl failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut r = TestRegistry { child: None, dir, port: free_port(), tls, token_realm };
        r.write_config();
        r.restart();
        r
    }

    fn write_config(&self) {
        let d = self.dir.path();
        let tls = if self.tls {
            format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                d.join("cert.pem").display(),
                d.join("key.pem").display()
            )
        } else {
            String::new()
        };
        let auth = match &self.token_realm {
            Some(realm) => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: snapbundle-tests\n    issuer: snapbundle-tests\n    rootcertbundle: {}\n",
                d.join("cert.pem").display()
            ),
            None => format!(
                "auth:\n  htpasswd:\n    realm: snapbundle-tests\n    path: {}\n",
                d.join("htpasswd").display()
            ),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n  secret: snapbundle-tests\n{tls}{auth}",
            d.join("storage").display(),
            self.port,
        );
        fs::write(d.join("config.yml"), config).expect("write registry config");
    }

    /// The access and error log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Access-log request lines (`"METHOD /v2/… HTTP/1.1" status`) so far.
    pub fn requests(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| {
                let start = l
                    .find("\"GET ")
                    .or(l.find("\"HEAD "))
                    .or(l.find("\"PUT "))
                    .or(l.find("\"POST "))
                    .or(l.find("\"PATCH "))
                    .or(l.find("\"DELETE "))?;
                Some(l.get(start..)?.to_string())
            })
            .collect()
    }

    /// Blob uploads completed so far (`PUT …/blobs/uploads/…?digest=…` answered 201).
    pub fn blob_uploads(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with("\"PUT ") && r.contains("/blobs/uploads/") && r.contains("\" 201 "))
            .count()
    }

    /// Starts (again) the registry process on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        let bin = need("docker-registry", "docker-registry");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .expect("open registry log");
        let child = Command::new(bin)
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("docker-registry exited ({status}) at start:\n{}", self.log());
                }
            }
            assert!(Instant::now() < deadline, "docker-registry did not listen within 20 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the registry process (the storage stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `127.0.0.1:<port>/<repo_tag>`.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("127.0.0.1:{}/{repo_tag}", self.port)
    }

    /// The registry's certificate (for `--ca-file`), when it speaks TLS.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.path().join("cert.pem"))
    }

    /// The file the registry stores a blob's bytes in.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.dir.path().join("storage/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    /// A library connection with the right credentials (`password` to override).
    pub fn connection(&self, password: Option<&str>) -> snapbundle::registry::Connection {
        snapbundle::registry::Connection {
            plain_http: !self.tls,
            ca_file: self.ca_file(),
            credentials: snapbundle::registry::Credentials::Basic {
                username: USER.into(),
                password: password.unwrap_or(PASSWORD).into(),
            },
            jobs: 0,
            attempts: 0,
            ..Default::default()
        }
    }

    /// Command-line flags to reach it (credentials not included).
    pub fn flags(&self) -> Vec<String> {
        match self.ca_file() {
            Some(ca) => vec!["--ca-file".into(), ca.display().to_string()],
            None => vec!["--plain-http".into()],
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Flips one byte in the middle of `path` (same size: the registry serves it as before).
pub fn tamper(path: &Path) {
    let mut bytes = fs::read(path).expect("read blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let mut f = fs::File::create(path).expect("rewrite blob");
    f.write_all(&bytes).expect("write blob");
}
