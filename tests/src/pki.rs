//! A throw-away certificate authority for tests (rcgen): certificates for the
//! API's `--tls-cert` and for user TLS secrets, valid, expired or for the
//! wrong host, as each test needs.

use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

/// A CA made for one test.
pub struct TestCa {
    /// The CA certificate, PEM: what clients trust.
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its key, PEM.
pub struct Leaf {
    /// The certificate, then the CA's (a chain as servers send it).
    pub chain_pem: String,
    /// The certificate alone.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `hosts` (DNS names or IP addresses), valid from a day ago for 90 days.
    pub fn leaf(&self, hosts: &[&str]) -> Leaf {
        let now = time::OffsetDateTime::now_utc();
        self.leaf_valid(
            hosts,
            now - Duration::from_secs(86_400),
            now + Duration::from_secs(90 * 86_400),
        )
    }

    /// A leaf that expired yesterday.
    pub fn expired_leaf(&self, hosts: &[&str]) -> Leaf {
        let now = time::OffsetDateTime::now_utc();
        self.leaf_valid(
            hosts,
            now - Duration::from_secs(30 * 86_400),
            now - Duration::from_secs(86_400),
        )
    }

    /// A leaf for `hosts` valid from `not_before` to `not_after`.
    pub fn leaf_valid(
        &self,
        hosts: &[&str],
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, hosts.first().copied().unwrap_or("leaf"));
        for host in hosts {
            let san = match host.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*host).try_into().expect("DNS name")),
            };
            params.subject_alt_names.push(san);
        }
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf certificate");
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}
