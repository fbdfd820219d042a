//! Certificates for tests and benches (feature `test-certs`): a throwaway cluster CA and
//! leaf certificates signed by it, written where a `[tls]` table can name them.

use super::TlsSection;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::Path;

/// A CA of its own; two `TestCa`s do not trust each other's certificates.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    serial: u64,
}

impl TestCa {
    pub fn new(common_name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("a key");
        TestCa { issuer: CertifiedIssuer::self_signed(params, key).expect("a CA certificate"), serial: 1 }
    }

    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` (DNS names or IP addresses) that serves as both a server's
    /// and a client's, as every component's does; (certificate PEM, key PEM).
    pub fn leaf(&mut self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("valid names");
        params.distinguished_name.push(DnType::CommonName, names.first().cloned().unwrap_or_default());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        self.serial += 1;
        params.serial_number = Some(self.serial.into());
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.issuer).expect("a signed certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// Writes `DIR/ca.pem`, `DIR/NAME.crt` and `DIR/NAME.key` (a leaf for `names`) and
    /// returns the `[tls]` table naming them, with `server_name` as given.
    pub fn write(&mut self, dir: &Path, name: &str, names: &[&str], server_name: Option<&str>) -> TlsSection {
        let (cert, key) = self.leaf(names);
        let section = TlsSection {
            cert_file: dir.join(format!("{name}.crt")),
            key_file: dir.join(format!("{name}.key")),
            ca_file: dir.join("ca.pem"),
            server_name: server_name.map(str::to_string),
        };
        std::fs::write(&section.ca_file, self.ca_pem()).expect("write ca.pem");
        std::fs::write(&section.cert_file, cert).expect("write the certificate");
        std::fs::write(&section.key_file, key).expect("write the key");
        section
    }
}

impl TlsSection {
    /// The table as TOML lines (`[tls]` and its keys).
    pub fn to_toml(&self) -> String {
        let mut s = format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\nca_file = {:?}\n",
            self.cert_file.display().to_string(),
            self.key_file.display().to_string(),
            self.ca_file.display().to_string()
        );
        if let Some(name) = &self.server_name {
            s.push_str(&format!("server_name = {name:?}\n"));
        }
        s
    }
}
