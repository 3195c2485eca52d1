//! `leakscope run --web-config-file`: the metrics over TLS with basic authentication, as
//! they leave the node in a cluster. A real Prometheus (Debian's) scrapes the daemon
//! over TLS with the right password, with a wrong one and in plain HTTP; `curl` checks
//! each answer; idle connections to the TLS port cannot lock a scrape out.

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    Background, Program, Spawned, TempDir, free_port, http_get, require_root, run_leakscope,
    wait_for,
};
use crate::daemon::{Prometheus, prom_query, sample_value, tool};

pub const USER: &str = "prometheus";
pub const PASSWORD: &str = "correct horse battery staple";

/// A CA, and a server certificate it signed for `localhost` and 127.0.0.1, written as
/// `ca.crt`, `tls.crt` and `tls.key` into `dir`.
fn write_certificates(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "leakscope test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params =
        rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    fs::write(dir.join("tls.crt"), server_cert.pem()).unwrap();
    fs::write(dir.join("tls.key"), server_key.serialize_pem()).unwrap();
}

/// A web configuration with TLS and one user (bcrypt cost 10, as `htpasswd -B` makes).
pub fn write_web_config(dir: &Path) -> std::path::PathBuf {
    write_certificates(dir);
    let hash = bcrypt::hash(PASSWORD, 10).unwrap();
    let path = dir.join("web-config.yml");
    fs::write(
        &path,
        format!(
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n\
             basic_auth_users:\n  {USER}: '{hash}'\n"
        ),
    )
    .unwrap();
    path
}

/// What one `curl` did: its exit code, the HTTP status (0 for none), the headers and
/// the body.
#[derive(Debug)]
pub struct Curl {
    pub exit_code: i32,
    pub status: u16,
    pub headers: String,
    pub body: String,
}

/// `curl` with `args` (and a 10 s limit), the body and headers captured.
fn curl(args: &[&str]) -> Curl {
    let out = Command::new(tool("curl"))
        .args(["-sS", "--max-time", "10", "-D", "-", "-o", "-"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Curl {
        exit_code: out.status.code().unwrap_or(-1),
        status,
        headers: headers.to_string(),
        body: format!("{body}{}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// `curl` over HTTPS to the daemon, trusting the test CA.
pub fn curl_tls(dir: &Path, port: u16, path: &str, extra: &[&str]) -> Curl {
    let ca = dir.join("ca.crt").display().to_string();
    let url = format!("https://localhost:{port}{path}");
    let mut args = vec!["--cacert", ca.as_str()];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

/// Prometheus's view of its targets: job name to (health, last error).
fn prom_targets(port: u16) -> Vec<(String, String, String)> {
    let Ok((_, body)) = http_get(port, "/api/v1/targets") else {
        return Vec::new();
    };
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["activeTargets"]
        .as_array()
        .map(|targets| {
            targets
                .iter()
                .map(|t| {
                    let text = |k: &str| t[k].as_str().unwrap_or_default().to_string();
                    (
                        t["labels"]["job"].as_str().unwrap_or_default().to_string(),
                        text("health"),
                        text("lastError"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A Prometheus scraping the daemon on `daemon_port` three ways: over TLS with the
/// right password (`leakscope`), with a wrong one, and in plain HTTP.
fn start_prometheus(scratch: &TempDir, dir: &Path, daemon_port: u16) -> Prometheus {
    // 3 s between scrapes: a wrong password's bcrypt check and the pause after it must
    // fit in the scrape timeout on a loaded machine.
    let job = |name: &str, scheme: &str, password: &str| {
        format!(
            "  - job_name: {name}\n    scrape_interval: 3s\n    scrape_timeout: 3s\n    scheme: {scheme}\n    tls_config:\n      ca_file: {ca}\n      server_name: localhost\n\
             \x20   basic_auth:\n      username: {USER}\n      password: '{password}'\n\
             \x20   static_configs:\n      - targets: ['127.0.0.1:{daemon_port}']\n",
            ca = dir.join("ca.crt").display()
        )
    };
    let jobs = format!(
        "{}{}{}",
        job("leakscope", "https", PASSWORD),
        job("wrong-password", "https", "wrong"),
        job("plain-http", "http", PASSWORD),
    );
    Prometheus::start_with(scratch, &jobs, "groups: []\n")
}

/// A `leakscope run` with `web_config`, watching `pid` every `interval` seconds, on a
/// free port, its lock and log in `dir`; returned once `/healthz` answers 200 over TLS
/// (`curl_args` are what the handshake needs, e.g. a client certificate).
fn start_tls_daemon(
    dir: &Path,
    web_config: &Path,
    pid: u32,
    interval: &str,
    curl_args: &[&str],
) -> (Background, u16) {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_leakscope"));
    command
        .args(["run", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--interval", interval, "--window", "30"])
        .args(["--pid", &pid.to_string()])
        .arg("--lock-file")
        .arg(dir.join("leakscope.lock"))
        .arg("--web-config-file")
        .arg(web_config);
    let mut daemon = Background::start("leakscope run", command, dir.join("daemon.log"));
    let healthy = wait_for(Duration::from_secs(60), || {
        daemon.assert_running();
        (curl_tls(dir, port, "/healthz", curl_args).status == 200).then_some(())
    });
    assert!(healthy.is_some(), "never healthy:\n{}", daemon.log());
    (daemon, port)
}

/// Check that with a web configuration of TLS and basic authentication a real
/// Prometheus scrapes the daemon over TLS with the right password and sees the leak,
/// while its scrapes with a wrong password fail with 401 and in plain HTTP with 400;
/// that curl without credentials or with a wrong password gets 401 with a Basic
/// challenge, without the test CA fails verification, in plain HTTP gets the plain
/// 400 saying the port speaks HTTPS, and that /healthz answers without credentials.
#[test]
fn prometheus_scrapes_over_tls_with_basic_auth() {
    require_root();
    let scratch = TempDir::new("leakscope-web");
    let dir = scratch.path().to_path_buf();
    let web_config = write_web_config(&dir);
    let leaker = Spawned::start(Program::MutexLeak);
    let (mut daemon, port) = start_tls_daemon(&dir, &web_config, leaker.pid(), "1", &[]);
    assert!(
        daemon.log().contains("TLS, basic authentication"),
        "{}",
        daemon.log()
    );

    let credentials = format!("{USER}:{PASSWORD}");
    let metrics = curl_tls(&dir, port, "/metrics", &["-u", &credentials]);
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert!(
        metrics.body.contains("leakscope_scans_total"),
        "{metrics:?}"
    );
    for args in [
        vec![],
        vec!["-u", "prometheus:wrong"],
        vec!["-u", "nobody:x"],
    ] {
        let denied = curl_tls(&dir, port, "/metrics", &args);
        assert_eq!(denied.status, 401, "{args:?}: {denied:?}");
        assert!(
            denied
                .headers
                .contains("WWW-Authenticate: Basic realm=\"leakscope\""),
            "{denied:?}"
        );
        assert!(!denied.body.contains("leakscope_"), "{denied:?}");
    }
    assert_eq!(curl_tls(&dir, port, "/nothing", &[]).status, 401);
    let untrusted = curl(&[&format!("https://localhost:{port}/healthz")]);
    assert_eq!(
        untrusted.exit_code, 60,
        "certificate not verified? {untrusted:?}"
    );
    let plain = curl(&[&format!("http://127.0.0.1:{port}/metrics")]);
    assert_eq!(plain.status, 400, "{plain:?}");
    assert!(plain.body.contains("HTTPS server"), "{plain:?}");

    let mut prometheus = start_prometheus(&scratch, &dir, port);
    let prom_port = prometheus.port;
    // Each job's expected health and what its last error must contain.
    let expected = [
        ("leakscope", "up", ""),
        ("wrong-password", "down", "401"),
        ("plain-http", "down", "400"),
    ];
    let seen = |targets: &[(String, String, String)]| {
        expected.iter().all(|(job, health, error)| {
            targets
                .iter()
                .any(|(j, h, e)| j == job && h == health && e.contains(error))
        })
    };
    let scraped = wait_for(Duration::from_secs(60), || {
        prometheus.assert_running();
        daemon.assert_running();
        seen(&prom_targets(prom_port)).then_some(())
    });
    assert!(
        scraped.is_some(),
        "targets: {:#?}\nprometheus:\n{}",
        prom_targets(prom_port),
        prometheus.log()
    );
    let leak = wait_for(Duration::from_secs(60), || {
        let query = format!(
            "leakscope_process_leak{{job=\"leakscope\",pid=\"{}\"}}",
            leaker.pid()
        );
        prom_query(prom_port, &query)
            .iter()
            .any(|sample| sample_value(sample) == 1.0)
            .then_some(())
    });
    assert!(
        leak.is_some(),
        "Prometheus never saw the leak over TLS:\n{}",
        daemon.log()
    );
}

/// Check that idle connections to the TLS port (no handshake ever sent) do not lock a
/// scrape out, that one is closed by the head deadline, and that a web configuration
/// the daemon cannot use stops it at start with status 2 and one line naming why.
#[test]
fn tls_port_is_bounded_and_bad_configurations_stop_the_daemon() {
    require_root();
    let scratch = TempDir::new("leakscope-web-bounds");
    let dir = scratch.path().to_path_buf();
    let web_config = write_web_config(&dir);
    let pool = Spawned::start(Program::IdlePool);
    let (mut daemon, port) = start_tls_daemon(&dir, &web_config, pool.pid(), "0.5", &[]);

    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let credentials = format!("{USER}:{PASSWORD}");
    for _ in 0..5 {
        let scrape = curl_tls(&dir, port, "/metrics", &["-u", &credentials]);
        assert_eq!(scrape.status, 200, "with 200 idle connections: {scrape:?}");
    }
    drop(idle);
    // One connection that never starts its handshake is closed by the head deadline
    // (5 s from its accept), not kept.
    let mut lone = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let opened = Instant::now();
    lone.set_read_timeout(Some(Duration::from_secs(12)))
        .unwrap();
    let closed = std::io::Read::read(&mut lone, &mut [0u8; 1]);
    let after = opened.elapsed();
    assert!(
        matches!(closed, Ok(0))
            || closed
                .as_ref()
                .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock),
        "{closed:?} after {after:?}"
    );
    assert!(
        (Duration::from_secs(4)..Duration::from_secs(9)).contains(&after),
        "a connection without a handshake was closed after {after:?}"
    );
    daemon.assert_running();
    drop(daemon);

    for (config, why) in [
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: tls.key\n",
            "missing.crt",
        ),
        ("basic_auth_users:\n  u: notbcrypt\n", "bcrypt"),
        (
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  cipher_suites: [x]\n",
            "cipher_suites",
        ),
    ] {
        let path = dir.join("bad.yml");
        fs::write(&path, config).unwrap();
        let run = run_leakscope(
            &[
                "run".into(),
                "--listen".into(),
                format!("127.0.0.1:{}", free_port()),
                "--lock-file".into(),
                dir.join("other.lock").display().to_string(),
                "--web-config-file".into(),
                path.display().to_string(),
            ],
            Duration::from_secs(30),
        );
        assert_eq!(run.exit_code, 2, "{config}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
        assert!(run.stderr.contains(why), "{config}: {run:?}");
    }
}

/// A CA and a certificate it signed for a client, written as `NAME-ca.crt`,
/// `NAME.crt` and `NAME.key` into `dir`.
fn write_client_certificate(dir: &Path, name: &str) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    fs::write(dir.join(format!("{name}-ca.crt")), ca_cert.pem()).unwrap();
    fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
    fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

/// curl's arguments presenting the client certificate `name`.
fn client_certificate_args(dir: &Path, name: &str) -> Vec<String> {
    vec![
        "--cert".into(),
        dir.join(format!("{name}.crt")).display().to_string(),
        "--key".into(),
        dir.join(format!("{name}.key")).display().to_string(),
    ]
}

/// Check that with `client_auth_type: RequireAndVerifyClientCert` a client presenting
/// a certificate of the configured CA is served, while one presenting none, or one of
/// another CA, cannot even complete the handshake.
#[test]
fn client_certificates_are_required_when_configured() {
    require_root();
    let scratch = TempDir::new("leakscope-web-mtls");
    let dir = scratch.path().to_path_buf();
    write_certificates(&dir);
    write_client_certificate(&dir, "prometheus");
    write_client_certificate(&dir, "stranger");
    let web_config = dir.join("web-config.yml");
    fs::write(
        &web_config,
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: prometheus-ca.crt\n",
    )
    .unwrap();
    let pool = Spawned::start(Program::IdlePool);
    let trusted = client_certificate_args(&dir, "prometheus");
    let trusted: Vec<&str> = trusted.iter().map(String::as_str).collect();
    let (mut daemon, port) = start_tls_daemon(&dir, &web_config, pool.pid(), "0.5", &trusted);

    let metrics = curl_tls(&dir, port, "/metrics", &trusted);
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert!(
        metrics.body.contains("leakscope_scans_total"),
        "{metrics:?}"
    );
    let stranger = client_certificate_args(&dir, "stranger");
    let stranger: Vec<&str> = stranger.iter().map(String::as_str).collect();
    for args in [vec![], stranger] {
        let refused = curl_tls(&dir, port, "/metrics", &args);
        assert_eq!(refused.status, 0, "{args:?} was answered: {refused:?}");
        assert_ne!(refused.exit_code, 0, "{refused:?}");
        assert!(!refused.body.contains("leakscope_"), "{refused:?}");
    }
    daemon.assert_running();
}
