//! A throwaway certificate authority for TLS tests: a CA, a server certificate for
//! `etcd.internal` and `127.0.0.1`, and a client certificate (CN `levee`), made with the
//! `openssl` command line in a fresh dir.
//!
//! Why: the docs tell operators to reach etcd over TLS with a client certificate; a test that
//! runs that exact Envoy block against an etcd requiring client certificates keeps it true.

use super::peers::peer_dir;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of one test CA.
pub struct Certs {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e})"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Signs `<name>.csr` with the CA into `<name>.crt`, with the extensions in `ext`.
fn sign(dir: &Path, name: &str, ext: &str) {
    fs::write(dir.join(format!("{name}.ext")), ext).unwrap_or_else(|e| panic!("{e}"));
    let (csr, crt, extfile) = (
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &extfile,
        ],
    );
}

impl Certs {
    /// A new CA with a server and a client certificate.
    pub fn generate() -> Certs {
        let dir = peer_dir("certs");
        let key_and_request = |name: &str, cn: &str| {
            let (key, csr, subj) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("/CN={cn}"),
            );
            openssl(
                &dir,
                &[
                    "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                    &subj,
                ],
            );
        };
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=levee-test-ca",
            ],
        );
        key_and_request("server", "etcd.internal");
        sign(
            &dir,
            "server",
            "subjectAltName=DNS:etcd.internal,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        );
        key_and_request("client", "levee");
        sign(&dir, "client", "extendedKeyUsage=clientAuth\n");
        Certs {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            dir,
        }
    }

    /// The etcd flags that serve TLS with the server certificate and require a client
    /// certificate signed by this CA.
    pub fn etcd_args(&self) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        vec![
            format!("--cert-file={}", path(&self.server_cert)),
            format!("--key-file={}", path(&self.server_key)),
            format!("--trusted-ca-file={}", path(&self.ca)),
            "--client-cert-auth".to_string(),
        ]
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}
