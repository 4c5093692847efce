//! Throwaway TLS material for tests, made with the `openssl` CLI.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Writes a self-signed ECDSA P-256 certificate for `localhost` (SAN
/// `DNS:localhost`, `IP:127.0.0.1`) and its key into `dir`; returns
/// `(cert_path, key_path)`.
///
/// The certificate is an end-entity one (`CA:FALSE`, serverAuth) so that
/// rustls/webpki accept it as a server certificate; clients trust it by
/// using the same file as their root (`sslrootcert=` for libpq). The key
/// is mode 0600, as PostgreSQL demands for `ssl_key_file` (chown it if the
/// server runs as another user).
pub fn gen_tls_cert(dir: &Path) -> (PathBuf, PathBuf) {
    fs::create_dir_all(dir).expect("create cert dir");
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "30", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "keyUsage=critical,digitalSignature"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .expect("spawn openssl; run scripts/install-deps.sh");
    if !out.status.success() {
        panic!(
            "openssl req failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod key");
    (cert, key)
}
