//! TLS and basic authentication for the daemon's listener, configured the way every
//! Prometheus exporter is: a web configuration file (`--web-config-file`, the
//! exporter-toolkit format) with `tls_server_config` (`cert_file`, `key_file`, and for
//! client certificates `client_ca_file` with `client_auth_type`, `min_version`,
//! `max_version`) and `basic_auth_users` (user name to bcrypt hash). In a cluster the
//! metrics leave the node, and they name every process with blocked waiters.
//!
//! The cryptography is rustls's (with its default provider, aws-lc-rs) and the bcrypt
//! crate's; this module only reads the file and wires them in. A field this reader does
//! not know is an error at start, never silently ignored: a configuration written for
//! another exporter that relies on it would otherwise serve less protected than meant.
//!
//! - The certificate and key are read again when either file changes (checked at most
//!   every [`CERT_RECHECK`], at a handshake), so a rotated Kubernetes secret or a
//!   cert-manager renewal is served without a restart; a broken new pair keeps the old
//!   one in service, with a warning.
//! - A bcrypt check costs 0.1-0.25 s of CPU at cost 10, by design. Checks run one at a
//!   time off the server's thread, credentials once verified are remembered (by their
//!   SHA-256, never in clear), and a failed check holds the next one back for
//!   [`FAILED_CHECK_PAUSE`]: a scraper with the right password costs one check per
//!   daemon life, clients guessing passwords at most one check a second. An unknown
//!   user name is checked against a dummy hash, so the answer's timing does not tell
//!   which names exist.

use std::{
    collections::{BTreeMap, HashSet},
    fs,
    io::Read,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use base64::Engine;
use rustls::{
    RootCertStore, ServerConfig, SupportedProtocolVersion,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};
use serde::Deserialize;
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// How often, at most, a handshake checks whether the certificate or key file changed.
pub const CERT_RECHECK: Duration = Duration::from_secs(10);
/// How long a failed password check holds back the next check.
pub const FAILED_CHECK_PAUSE: Duration = Duration::from_secs(1);
/// Files this reader reads at most (a configuration, a PEM chain or key).
const MAX_FILE_BYTES: u64 = 1 << 20;
/// Verified credentials remembered at most (forgotten all at once past it).
const MAX_VERIFIED: usize = 64;
/// Highest bcrypt cost accepted: each step doubles a check's CPU time (cost 10 takes
/// 0.24 s here, 12 a second; checks run one at a time, and one is made at start). A
/// cost of 31 held the daemon's start for days (the web_config fuzz target times out
/// on it, seed bcrypt-cost-31).
pub const MAX_BCRYPT_COST: u32 = 12;

/// Why a web configuration cannot be used. Each stops the daemon at start (exit 2).
#[derive(Debug, Error)]
pub enum WebConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {what}: {source}")]
    Pem {
        path: PathBuf,
        what: &'static str,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{what}: {source}")]
    Tls {
        what: &'static str,
        source: rustls::Error,
    },
}

/// The file as written. Field names are the exporter-toolkit's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    #[serde(default)]
    tls_server_config: Option<TlsServerConfigFile>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfigFile {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
}

/// What the listener enforces: TLS, basic authentication, both or neither.
#[derive(Default)]
pub struct WebSecurity {
    pub tls: Option<TlsAcceptor>,
    pub auth: Option<BasicAuth>,
}

impl std::fmt::Debug for WebSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSecurity")
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth.is_some())
            .finish()
    }
}

impl WebSecurity {
    /// Nothing: plain HTTP, no authentication (loopback by default).
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads a web configuration file; relative paths in it are relative to its
    /// directory, as in the exporter-toolkit.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let text = read_bounded(path)?;
        let file: WebConfigFile =
            serde_norway::from_slice(&text).map_err(|e| WebConfigError::Syntax {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let invalid = |message: String| WebConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let tls = file
            .tls_server_config
            .map(|tls| tls_acceptor(&tls, base, &invalid))
            .transpose()?;
        let auth = match file.basic_auth_users {
            Some(users) if !users.is_empty() => Some(BasicAuth::new(users).map_err(invalid)?),
            _ => None,
        };
        Ok(Self { tls, auth })
    }

    /// One line for the daemon's start notice.
    pub fn describe(&self) -> &'static str {
        match (self.tls.is_some(), self.auth.is_some()) {
            (true, true) => "TLS, basic authentication",
            (true, false) => "TLS",
            (false, true) => "basic authentication over plain HTTP",
            (false, false) => "plain HTTP, no authentication",
        }
    }
}

/// Reads a configuration or PEM file of at most [`MAX_FILE_BYTES`]: a regular file,
/// opened without blocking (a FIFO or a device named by mistake would hold the daemon's
/// start, or a handshake, for as long as nobody writes to it).
fn read_bounded(path: &Path) -> Result<Vec<u8>, WebConfigError> {
    use std::os::unix::fs::OpenOptionsExt;
    let read_error = |source| WebConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(read_error)?;
    if !file.metadata().map_err(read_error)?.is_file() {
        return Err(WebConfigError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(WebConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// The rustls server configuration `tls_server_config` describes.
fn tls_acceptor(
    tls: &TlsServerConfigFile,
    base: &Path,
    invalid: &dyn Fn(String) -> WebConfigError,
) -> Result<TlsAcceptor, WebConfigError> {
    let (Some(cert_file), Some(key_file)) = (&tls.cert_file, &tls.key_file) else {
        return Err(invalid(
            "tls_server_config needs both cert_file and key_file".into(),
        ));
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions = protocol_versions(tls.min_version.as_deref(), tls.max_version.as_deref())
        .map_err(invalid)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|source| WebConfigError::Tls {
            what: "TLS versions",
            source,
        })?;
    let builder = match client_verification(tls, base, &provider).map_err(|e| match e {
        ClientAuthError::Config(message) => invalid(message),
        ClientAuthError::File(e) => e,
    })? {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier),
    };
    let certificate =
        ReloadingCertificate::load(base.join(cert_file), base.join(key_file), provider)?;
    let mut config = builder.with_cert_resolver(Arc::new(certificate));
    // One request per connection, HTTP/1.1: say so, so no client tries h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// `min_version` and `max_version` (`TLS12`, `TLS13`; TLS 1.0 and 1.1 are refused) to
/// the versions served. The exporter-toolkit's default minimum is TLS 1.2 too.
fn protocol_versions(
    min: Option<&str>,
    max: Option<&str>,
) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let rank = |name: Option<&str>, default: u8| match name {
        None => Ok(default),
        Some("TLS12") => Ok(12),
        Some("TLS13") => Ok(13),
        Some(other @ ("TLS10" | "TLS11")) => Err(format!(
            "{other} is not supported (rustls serves TLS 1.2 and 1.3 only)"
        )),
        Some(other) => Err(format!("unknown TLS version {other:?} (TLS12 or TLS13)")),
    };
    let (min, max) = (rank(min, 12)?, rank(max, 13)?);
    if min > max {
        return Err("min_version is above max_version".into());
    }
    Ok(
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(rank, _)| (min..=max).contains(rank))
            .map(|(_, version)| version)
            .collect(),
    )
}

enum ClientAuthError {
    Config(String),
    File(WebConfigError),
}

/// `client_auth_type` and `client_ca_file` to a client certificate verifier (None: no
/// client certificates asked for). Only the types that verify what they receive are
/// served: `RequestClientCert` and `RequireAnyClientCert` accept any certificate and
/// would give a false sense of protection.
fn client_verification(
    tls: &TlsServerConfigFile,
    base: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>, ClientAuthError> {
    let mandatory = match tls.client_auth_type.as_deref() {
        None | Some("NoClientCert") => {
            if tls.client_ca_file.is_some() {
                return Err(ClientAuthError::Config(
                    "client_ca_file needs client_auth_type RequireAndVerifyClientCert or \
                     VerifyClientCertIfGiven"
                        .into(),
                ));
            }
            return Ok(None);
        }
        Some("RequireAndVerifyClientCert") => true,
        Some("VerifyClientCertIfGiven") => false,
        Some(other) => {
            return Err(ClientAuthError::Config(format!(
                "client_auth_type {other:?} is not supported (NoClientCert, \
                 RequireAndVerifyClientCert or VerifyClientCertIfGiven)"
            )));
        }
    };
    let Some(ca_file) = &tls.client_ca_file else {
        return Err(ClientAuthError::Config(
            "verifying client certificates needs client_ca_file".into(),
        ));
    };
    let ca_path = base.join(ca_file);
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(&ca_path).map_err(ClientAuthError::File)? {
        roots.add(cert).map_err(|source| {
            ClientAuthError::File(WebConfigError::Tls {
                what: "client_ca_file",
                source,
            })
        })?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = if mandatory {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder
        .build()
        .map(Some)
        .map_err(|e| ClientAuthError::Config(format!("client certificate verification: {e}")))
}

/// Every certificate of a PEM file (at least one).
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
    let pem = read_bounded(path)?;
    let pem_error = |source| WebConfigError::Pem {
        path: path.to_path_buf(),
        what: "certificates",
        source,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(pem_error(rustls::pki_types::pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// A certificate chain and its key, checked to belong together.
fn read_certified_key(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, WebConfigError> {
    let chain = read_certificates(cert_file)?;
    let key = PrivateKeyDer::from_pem_slice(&read_bounded(key_file)?).map_err(|source| {
        WebConfigError::Pem {
            path: key_file.to_path_buf(),
            what: "private key",
            source,
        }
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| WebConfigError::Tls {
        what: "certificate and key",
        source,
    })
}

/// What identifies a file's content cheaply: its modification time, size and inode
/// (a Kubernetes secret volume swaps a symlink to new files).
type FileStamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

/// The served certificate, read again when its files change.
#[derive(Debug)]
struct ReloadingCertificate {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    state: Mutex<CertificateState>,
}

#[derive(Debug)]
struct CertificateState {
    key: Arc<CertifiedKey>,
    stamps: [FileStamp; 2],
    checked: Instant,
    /// The stamps of a pair that failed to load (warned about once).
    failed: Option<[FileStamp; 2]>,
}

impl ReloadingCertificate {
    fn load(
        cert_file: PathBuf,
        key_file: PathBuf,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, WebConfigError> {
        let stamps = [stamp(&cert_file), stamp(&key_file)];
        let key = Arc::new(read_certified_key(&cert_file, &key_file, &provider)?);
        Ok(Self {
            cert_file,
            key_file,
            provider,
            state: Mutex::new(CertificateState {
                key,
                stamps,
                checked: Instant::now(),
                failed: None,
            }),
        })
    }

    /// The pair to serve: the one loaded, or a new one if the files changed.
    fn current(&self, now: Instant) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now.saturating_duration_since(state.checked) < CERT_RECHECK {
            return state.key.clone();
        }
        state.checked = now;
        let stamps = [stamp(&self.cert_file), stamp(&self.key_file)];
        if stamps == state.stamps || state.failed == Some(stamps) {
            return state.key.clone();
        }
        match read_certified_key(&self.cert_file, &self.key_file, &self.provider) {
            Ok(key) => {
                eprintln!(
                    "leakscope: serving the new TLS certificate of {}",
                    self.cert_file.display()
                );
                state.key = Arc::new(key);
                state.stamps = stamps;
                state.failed = None;
            }
            Err(e) => {
                eprintln!("leakscope: keeping the TLS certificate in service: {e}");
                state.failed = Some(stamps);
            }
        }
        state.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current(Instant::now()))
    }
}

/// `basic_auth_users`: who may read the metrics.
pub struct BasicAuth {
    /// User name to bcrypt hash.
    users: BTreeMap<String, String>,
    /// Checked for unknown user names, so they cost what a known one costs.
    dummy_hash: String,
    /// SHA-256 of credentials already verified.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// One bcrypt check at a time.
    checking: Semaphore,
}

impl BasicAuth {
    /// Checks that every hash is a bcrypt hash.
    pub fn new(users: BTreeMap<String, String>) -> Result<Self, String> {
        let mut cost = bcrypt::DEFAULT_COST;
        for (user, hash) in &users {
            let parts: bcrypt::HashParts = hash.parse().map_err(|e| {
                format!("basic_auth_users: the hash of {user:?} is not a bcrypt hash ({e})")
            })?;
            cost = parts.get_cost();
            if cost > MAX_BCRYPT_COST {
                return Err(format!(
                    "basic_auth_users: the hash of {user:?} has bcrypt cost {cost}, above \
                     {MAX_BCRYPT_COST} (each check would take {} s of CPU or more)",
                    1u64 << (cost - MAX_BCRYPT_COST)
                ));
            }
        }
        let dummy_hash = bcrypt::hash("leakscope: no such user", cost)
            .map_err(|e| format!("basic_auth_users: {e}"))?;
        Ok(Self {
            users,
            dummy_hash,
            verified: Mutex::new(HashSet::new()),
            checking: Semaphore::new(1),
        })
    }

    /// Whether an `Authorization` header value grants access.
    pub async fn allows(&self, authorization: Option<&str>) -> bool {
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return false;
        };
        let key = credentials_digest(&user, &password);
        if self.is_verified(&key) {
            return true;
        }
        let Ok(_permit) = self.checking.acquire().await else {
            return false;
        };
        // Verified by a check that ran while this one waited?
        if self.is_verified(&key) {
            return true;
        }
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => (self.dummy_hash.clone(), false),
        };
        let matched =
            tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false)
                && known;
        if matched {
            let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if verified.len() >= MAX_VERIFIED {
                verified.clear();
            }
            verified.insert(key);
        } else {
            tokio::time::sleep(FAILED_CHECK_PAUSE).await;
        }
        matched
    }

    fn is_verified(&self, key: &[u8; 32]) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }
}

/// The user name and password of a `Basic` authorization (RFC 7617): the scheme is
/// case-insensitive, the credentials base64 of `user:password`.
pub fn basic_credentials(authorization: &str) -> Option<(String, Vec<u8>)> {
    let (scheme, encoded) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// The key verified credentials are remembered by: a digest, not the password.
fn credentials_digest(user: &str, password: &[u8]) -> [u8; 32] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(&(user.len() as u64).to_le_bytes());
    context.update(user.as_bytes());
    context.update(password);
    let mut key = [0u8; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("leakscope-web-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn load_text(dir: &Path, text: &str) -> Result<WebSecurity, WebConfigError> {
        let path = dir.join("web.yml");
        fs::write(&path, text).unwrap();
        WebSecurity::load(&path)
    }

    /// Check that the Basic credentials of an Authorization header are decoded (scheme
    /// in any case, a password holding colons), and that anything else is no
    /// credentials.
    #[test]
    fn basic_credentials_are_decoded() {
        // "prometheus:s3:cr3t"
        let header = "Basic cHJvbWV0aGV1czpzMzpjcjN0";
        assert_eq!(
            basic_credentials(header),
            Some(("prometheus".into(), b"s3:cr3t".to_vec()))
        );
        assert!(basic_credentials("basic cHJvbWV0aGV1czpzMzpjcjN0").is_some());
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
        // "nocolon"
        assert_eq!(basic_credentials("Basic bm9jb2xvbg=="), None);
    }

    /// Check that the right password is let in (and then remembered), and that a wrong
    /// password, an unknown user and no header are not.
    #[test]
    fn passwords_are_checked_against_bcrypt_hashes() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let auth = BasicAuth::new(BTreeMap::from([("prometheus".into(), hash)])).unwrap();
        let header = |user: &str, password: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            assert!(auth.allows(Some(&header("prometheus", "s3cret"))).await);
            assert!(auth.is_verified(&credentials_digest("prometheus", b"s3cret")));
            assert!(auth.allows(Some(&header("prometheus", "s3cret"))).await);
            assert!(!auth.allows(Some(&header("prometheus", "wrong"))).await);
            assert!(!auth.allows(Some(&header("nobody", "s3cret"))).await);
            assert!(!auth.allows(None).await);
        });
    }

    /// Check that a configuration with a field this reader does not know, a hash that
    /// is not bcrypt, half a TLS pair, an unverified client-certificate type or TLS 1.1
    /// is refused with a message naming it, and that an empty file means no protection.
    #[test]
    fn bad_configurations_are_refused_by_name() {
        let dir = scratch("bad");
        let refused = |text: &str| load_text(&dir, text).unwrap_err().to_string();
        assert!(refused("http_server_config:\n  http2: false\n").contains("http_server_config"));
        assert!(refused("basic_auth_users:\n  p: plain\n").contains("not a bcrypt hash"));
        // Refused before any hashing (at cost 31 the dummy hash took days).
        let costly = "basic_auth_users:\n  p: '$2b$31$N/CYUmc2tRc98lhDkHHvWOSn8s/omwCEELlf0.kW/f6qbMJxnTjA6'\n";
        assert!(refused(costly).contains("bcrypt cost 31, above 12"));
        assert!(refused("tls_server_config:\n  cert_file: a.crt\n").contains("key_file"));
        let unverified = "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n";
        assert!(refused(unverified).contains("RequireAnyClientCert"));
        let old = "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS11\n";
        assert!(refused(old).contains("TLS11"));
        assert!(refused("tls_server_config:\n  cert_file: a\n  key_file: b\n").contains("a"));
        // A FIFO where a certificate should be: refused at once, not read (forever).
        let fifo =
            std::ffi::CString::new(dir.join("fifo.crt").into_os_string().into_encoded_bytes())
                .unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let fifo_config = "tls_server_config:\n  cert_file: fifo.crt\n  key_file: b\n";
        assert!(refused(fifo_config).contains("not a regular file"));
        let none = load_text(&dir, "{}\n").unwrap();
        assert!(none.tls.is_none() && none.auth.is_none());
        let _ = fs::remove_dir_all(&dir);
    }

    /// Writes a new self-signed pair for `name` as tls.crt and tls.key; its certificate.
    fn write_pair(dir: &Path, name: &str) -> CertificateDer<'static> {
        let pair = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        fs::write(dir.join("tls.key"), pair.signing_key.serialize_pem()).unwrap();
        fs::write(dir.join("tls.crt"), pair.cert.pem()).unwrap();
        pair.cert.der().clone()
    }

    /// Check that a configuration with a certificate, a key and a user loads; that the
    /// certificate is served until its files change, then the new one after the
    /// recheck interval; that a broken new pair keeps the old one in service; and that a
    /// key of another certificate is refused at load.
    #[test]
    fn certificates_reload_when_their_files_change() {
        let dir = scratch("reload");
        let first = write_pair(&dir, "first.example");
        let hash = bcrypt::hash("pw", 4).unwrap();
        let config = format!(
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  prometheus: '{hash}'\n"
        );
        let security = load_text(&dir, &config).unwrap();
        assert!(security.tls.is_some() && security.auth.is_some());
        assert_eq!(security.describe(), "TLS, basic authentication");

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let served =
            ReloadingCertificate::load(dir.join("tls.crt"), dir.join("tls.key"), provider).unwrap();
        let t0 = Instant::now();
        assert_eq!(served.current(t0).cert[0], first);
        let second = write_pair(&dir, "second.example");
        assert_eq!(
            served.current(t0 + Duration::from_secs(1)).cert[0],
            first,
            "not yet rechecked"
        );
        let later = t0 + CERT_RECHECK * 2;
        assert_eq!(served.current(later).cert[0], second);

        fs::write(dir.join("tls.key"), "not a key").unwrap();
        assert_eq!(
            served.current(later + CERT_RECHECK * 2).cert[0],
            second,
            "kept"
        );

        let stray = rcgen::generate_simple_self_signed(vec!["x".to_string()]).unwrap();
        fs::write(dir.join("tls.key"), stray.signing_key.serialize_pem()).unwrap();
        let mismatch = load_text(&dir, &config).unwrap_err().to_string();
        assert!(mismatch.contains("certificate and key"), "{mismatch}");
        let _ = fs::remove_dir_all(&dir);
    }

    /// Check that the TLS versions served follow min_version and max_version.
    #[test]
    fn tls_versions_follow_the_configuration() {
        assert_eq!(protocol_versions(None, None).unwrap().len(), 2);
        let only13 = protocol_versions(Some("TLS13"), None).unwrap();
        assert_eq!(only13, vec![&rustls::version::TLS13]);
        assert!(protocol_versions(Some("TLS13"), Some("TLS12")).is_err());
        assert!(protocol_versions(Some("SSL3"), None).is_err());
    }
}
