//! Digest authentication: published vectors, then the whole check as a
//! function of (request, subscribers, nonce table, now).

use super::*;
use crate::testutil::*;
use regmesh_sip::Message;

#[test]
fn rfc2617_section_3_5_md5_vector() {
    // RFC 2617 §3.5: Mufasa / "Circle Of Life" on testrealm@host.com.
    let (md5, sha) = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
    assert_eq!(md5, "939e7578ed9e3c518a452acee763bce9");
    assert_eq!(sha.len(), 64);
    let r = response(&DigestInput {
        algorithm: Algorithm::Md5,
        ha1: &md5,
        nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        method: "GET",
        uri: "/dir/index.html",
        qop: Some(("auth", "00000001", "0a4f113b")),
    });
    assert_eq!(r, "6629fae49393a05397450978507c4ef1");
}

#[test]
fn rfc7616_section_3_9_1_vectors() {
    // RFC 7616 §3.9.1: the same request answered with SHA-256 and with MD5.
    let (md5, sha) = ha1("Mufasa", "http-auth@example.org", "Circle of Life");
    let input = |algorithm, ha1| DigestInput {
        algorithm,
        ha1,
        nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        method: "GET",
        uri: "/dir/index.html",
        qop: Some((
            "auth",
            "00000001",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        )),
    };
    assert_eq!(
        response(&input(Algorithm::Sha256, &sha)),
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
    assert_eq!(
        response(&input(Algorithm::Md5, &md5)),
        "8ca523f5e9506fed4657c9700eebdbec"
    );
}

#[test]
fn rfc2069_response_without_qop() {
    // RFC 2069 §2.1.1: response = H(HA1:nonce:H(A2)).
    let (md5, _) = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
    let r = response(&DigestInput {
        algorithm: Algorithm::Md5,
        ha1: &md5,
        nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        method: "GET",
        uri: "/dir/index.html",
        qop: None,
    });
    let ha2 = Algorithm::Md5.hex(&["GET", "/dir/index.html"]);
    assert_eq!(
        r,
        Algorithm::Md5.hex(&[&md5, "dcd98b7102dd2f0e8b11d0f600bfb0c093", &ha2])
    );
    assert_eq!(r.len(), 32);
}

#[test]
fn constant_time_eq_compares_whole_values() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(constant_time_eq(b"", b""));
}

const SECRET: &[u8] = b"cluster-secret-0123456789";

fn config() -> AuthConfig {
    AuthConfig {
        enabled: true,
        realm: None,
        secret: SECRET.to_vec(),
        nonce_ttl: 300,
        match_aor: true,
        algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
    }
}

#[test]
fn challenges_offer_sha256_then_md5_with_one_nonce() {
    // RFC 7616 §3.3 fields; §3.7 preference order.
    let ch = challenges(
        "example.com",
        SECRET,
        &[Algorithm::Sha256, Algorithm::Md5],
        now(),
        [3; 8],
        false,
    );
    assert_eq!(ch.len(), 2);
    assert!(ch.iter().all(|(n, _)| *n == "WWW-Authenticate"));
    let nonce = ch[0]
        .1
        .split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("nonce");
    assert_eq!(
        ch[0].1,
        format!("Digest realm=\"example.com\", nonce=\"{nonce}\", algorithm=SHA-256, qop=\"auth\"")
    );
    assert_eq!(
        ch[1].1,
        format!("Digest realm=\"example.com\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"")
    );
    assert!(nonce::verify(SECRET, nonce, now(), 300).is_some());
    let stale = challenges("ex\"ample", SECRET, &[Algorithm::Md5], now(), [3; 8], true);
    assert_eq!(stale.len(), 1);
    assert!(stale[0].1.contains("algorithm=MD5"));
    assert!(stale[0].1.ends_with(", stale=true"));
    assert!(stale[0].1.starts_with("Digest realm=\"ex\\\"ample\""));
}

/// A subscriber table with alice@example.com ("secret") and bob@example.com.
fn lookup(user: &str, domain: &str) -> Option<Subscriber> {
    let password = match (user, domain) {
        ("alice", "example.com") => "secret",
        ("bob", "example.com") => "bobpass",
        _ => return None,
    };
    let (ha1_md5, ha1_sha256) = ha1(user, "example.com", password);
    Some(Subscriber {
        user: user.to_owned(),
        domain: domain.to_owned(),
        realm: "example.com".to_owned(),
        ha1_md5,
        ha1_sha256,
    })
}

/// What the client puts in Authorization.
#[derive(Clone)]
struct Client {
    user: &'static str,
    password: &'static str,
    realm: &'static str,
    algorithm: Option<&'static str>,
    qop: Option<&'static str>,
    nc: &'static str,
    uri: &'static str,
    nonce: String,
    upper: bool,
}

fn client(nonce: String) -> Client {
    Client {
        user: "alice",
        password: "secret",
        realm: "example.com",
        algorithm: Some("MD5"),
        qop: Some("auth"),
        nc: "00000001",
        uri: "sip:example.com",
        nonce,
        upper: false,
    }
}

impl Client {
    fn header(&self) -> String {
        let alg = Algorithm::from_param(self.algorithm).unwrap_or(Algorithm::Md5);
        let ha1 = alg.hex(&[self.user, self.realm, self.password]);
        let mut resp = response(&DigestInput {
            algorithm: alg,
            ha1: &ha1,
            nonce: &self.nonce,
            method: "REGISTER",
            uri: self.uri,
            qop: self.qop.map(|q| (q, self.nc, "c0ffee")),
        });
        if self.upper {
            resp = resp.to_ascii_uppercase();
        }
        let mut h = format!(
            "Authorization: Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{resp}\"",
            self.user, self.realm, self.nonce, self.uri
        );
        if let Some(a) = self.algorithm {
            h.push_str(&format!(", algorithm={a}"));
        }
        if let Some(q) = self.qop {
            h.push_str(&format!(", qop={q}, nc={}, cnonce=\"c0ffee\"", self.nc));
        }
        h
    }
}

fn fresh_nonce() -> String {
    nonce::mint(SECRET, now(), rand::random())
}

fn check_with(
    header: Option<String>,
    cfg: &AuthConfig,
    counts: &NonceCounts,
) -> Result<Subscriber, RegisterError> {
    let mut r = reg().contact("<sip:alice@192.0.2.10:5062>");
    if let Some(h) = header {
        r = r.header(&h);
    }
    let bytes = r.build();
    let Ok(Message::Request(req)) = regmesh_sip::parse(&bytes) else {
        panic!("request does not parse");
    };
    let to = req.to().expect("To");
    let a = Authenticator {
        config: cfg,
        counts,
        now: now(),
    };
    authenticate(&req, &to, &a, lookup)
}

fn check(c: &Client, counts: &NonceCounts) -> Result<Subscriber, RegisterError> {
    check_with(Some(c.header()), &config(), counts)
}

#[test]
fn no_credentials_is_a_challenge() {
    // RFC 3261 §22.1, §10.3 step 3.
    let e = check_with(None, &config(), &NonceCounts::default()).expect_err("challenge");
    assert_eq!(e, RegisterError::MissingCredentials);
    assert!(e.is_challenge() && !e.is_stale());
}

#[test]
fn md5_and_sha256_with_qop_auth_are_accepted() {
    // RFC 7616 §3.4.1 with qop=auth.
    let counts = NonceCounts::default();
    let s = check(&client(fresh_nonce()), &counts).expect("md5");
    assert_eq!(
        (s.user.as_str(), s.domain.as_str()),
        ("alice", "example.com")
    );
    let mut c = client(fresh_nonce());
    c.algorithm = Some("SHA-256");
    check(&c, &counts).expect("sha-256");
    // No algorithm parameter means MD5 (RFC 7616 §3.4); hex case is not significant.
    let mut c = client(fresh_nonce());
    c.algorithm = None;
    c.upper = true;
    check(&c, &counts).expect("default md5, uppercase hex");
}

#[test]
fn responses_without_qop_are_refused() {
    // RFC 2617 §3.2.2: qop was offered, so it must be used; without it a
    // captured header would be replayable for the nonce's lifetime.
    let counts = NonceCounts::default();
    let mut c = client(fresh_nonce());
    c.qop = None;
    let e = check(&c, &counts).expect_err("no qop");
    assert_eq!(e, RegisterError::MissingQop);
    assert_eq!(e.status(), 400);
    assert!(counts.is_empty());
}

#[test]
fn nonce_count_replay_is_refused() {
    // RFC 7616 §3.4 (nc) and §5.4 (replay attacks).
    let counts = NonceCounts::default();
    let mut c = client(fresh_nonce());
    check(&c, &counts).expect("nc=1");
    assert_eq!(check(&c, &counts), Err(RegisterError::NonceReplay));
    c.nc = "00000002";
    check(&c, &counts).expect("nc=2");
    c.nc = "00000002";
    assert_eq!(check(&c, &counts), Err(RegisterError::NonceReplay));
}

#[test]
fn a_forged_response_does_not_burn_the_clients_count() {
    let counts = NonceCounts::default();
    let mut forged = client(fresh_nonce());
    forged.password = "guess";
    forged.nc = "ffffffff";
    assert_eq!(
        check(&forged, &counts),
        Err(RegisterError::WrongCredentials)
    );
    let mut real = forged.clone();
    real.password = "secret";
    real.nc = "00000001";
    check(&real, &counts).expect("the real client still gets in");
}

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    let counts = NonceCounts::default();
    let mut c = client(fresh_nonce());
    c.password = "wrong";
    assert_eq!(check(&c, &counts), Err(RegisterError::WrongCredentials));
    let cfg = AuthConfig {
        match_aor: false,
        ..config()
    };
    let mut c = client(fresh_nonce());
    c.user = "mallory";
    assert_eq!(
        check_with(Some(c.header()), &cfg, &counts),
        Err(RegisterError::WrongCredentials)
    );
}

#[test]
fn stale_only_for_a_correct_response_over_an_old_nonce() {
    // RFC 7616 §3.3: stale=true means "the credentials were right, the nonce old".
    let counts = NonceCounts::default();
    let old = nonce::mint(SECRET, now().saturating_sub_secs(301), [1; 8]);
    let e = check(&client(old.clone()), &counts).expect_err("stale");
    assert_eq!(e, RegisterError::StaleNonce);
    assert!(e.is_challenge() && e.is_stale());
    let mut wrong = client(old);
    wrong.password = "nope";
    assert_eq!(check(&wrong, &counts), Err(RegisterError::WrongCredentials));
    // Within the lifetime it is fine.
    let recent = nonce::mint(SECRET, now().saturating_sub_secs(299), [1; 8]);
    check(&client(recent), &counts).expect("fresh enough");
}

#[test]
fn a_nonce_from_another_secret_is_invalid() {
    let foreign = nonce::mint(b"some other cluster secret", now(), [1; 8]);
    let e = check(&client(foreign), &NonceCounts::default()).expect_err("forged");
    assert_eq!(e, RegisterError::InvalidNonce);
    assert!(e.is_challenge() && !e.is_stale());
    let e = check(
        &client("dcd98b7102dd2f0e8b11d0f600bfb0c093".to_owned()),
        &NonceCounts::default(),
    );
    assert_eq!(e, Err(RegisterError::InvalidNonce));
}

#[test]
fn realm_is_the_configured_one_or_the_to_domain() {
    let counts = NonceCounts::default();
    let mut c = client(fresh_nonce());
    c.realm = "elsewhere.org";
    assert_eq!(check(&c, &counts), Err(RegisterError::WrongRealm));
    // A configured realm that names the domain: subscribers are found by
    // the AoR domain and their HA1 was computed with that realm.
    let cfg = AuthConfig {
        realm: Some("example.com".to_owned()),
        ..config()
    };
    check_with(Some(client(fresh_nonce()).header()), &cfg, &counts).expect("configured realm");
    let cfg = AuthConfig {
        realm: Some("other-realm".to_owned()),
        ..config()
    };
    assert_eq!(
        check_with(Some(client(fresh_nonce()).header()), &cfg, &counts),
        Err(RegisterError::WrongRealm)
    );
}

#[test]
fn authenticated_user_must_match_the_aor_unless_configured_otherwise() {
    // RFC 3261 §10.3 step 4: bob may not register alice's AoR.
    let counts = NonceCounts::default();
    let mut c = client(fresh_nonce());
    c.user = "bob";
    c.password = "bobpass";
    let e = check(&c, &counts).expect_err("mismatch");
    assert_eq!(e, RegisterError::UserMismatch);
    assert_eq!(e.status(), 403);
    let cfg = AuthConfig {
        match_aor: false,
        ..config()
    };
    let mut c = client(fresh_nonce());
    c.user = "bob";
    c.password = "bobpass";
    let s = check_with(Some(c.header()), &cfg, &counts).expect("third-party registration allowed");
    assert_eq!(s.user, "bob");
}

#[test]
fn digest_uri_must_be_the_request_uri() {
    // RFC 2617 §3.2.2.5: 400 when the digest-uri names another resource.
    let mut c = client(fresh_nonce());
    c.uri = "sip:other.example.com";
    let e = check(&c, &NonceCounts::default()).expect_err("uri");
    assert_eq!(e, RegisterError::DigestUriMismatch);
    assert_eq!(e.status(), 400);
    // An equivalent URI (case of the host) is the same resource.
    let mut c = client(fresh_nonce());
    c.uri = "sip:EXAMPLE.com";
    check(&c, &NonceCounts::default()).expect("equivalent uri");
}

#[test]
fn unsupported_algorithm_or_qop_and_malformed_fields() {
    let counts = NonceCounts::default();
    let mut c = client(fresh_nonce());
    c.algorithm = Some("MD5-sess");
    assert_eq!(check(&c, &counts), Err(RegisterError::UnsupportedDigest));
    let mut c = client(fresh_nonce());
    c.qop = Some("auth-int");
    assert_eq!(check(&c, &counts), Err(RegisterError::UnsupportedDigest));
    let mut c = client(fresh_nonce());
    c.nc = "1";
    assert_eq!(check(&c, &counts), Err(RegisterError::MalformedCredentials));
    let mut c = client(fresh_nonce());
    c.nc = "00000000";
    assert_eq!(check(&c, &counts), Err(RegisterError::MalformedCredentials));
    let h = "Authorization: Digest username=\"alice\", realm=\"example.com\"".to_owned();
    assert_eq!(
        check_with(Some(h), &config(), &counts),
        Err(RegisterError::MalformedCredentials)
    );
    let h = "Authorization: Basic YWxpY2U6c2VjcmV0".to_owned();
    assert_eq!(
        check_with(Some(h), &config(), &counts),
        Err(RegisterError::UnsupportedDigest)
    );
}

#[test]
fn algorithms_not_configured_are_refused() {
    // An operator who offers only SHA-256 must not accept MD5 answers,
    // or a downgrade would be one header away.
    let counts = NonceCounts::default();
    let cfg = AuthConfig {
        algorithms: vec![Algorithm::Sha256],
        ..config()
    };
    let md5 = client(fresh_nonce());
    assert_eq!(
        check_with(Some(md5.header()), &cfg, &counts),
        Err(RegisterError::UnsupportedDigest)
    );
    let mut sha = client(fresh_nonce());
    sha.algorithm = Some("SHA-256");
    check_with(Some(sha.header()), &cfg, &counts).expect("SHA-256 is offered");
}
