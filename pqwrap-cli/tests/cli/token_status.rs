//! `pqwrap token verify|check --status-list FILE`: a signed Token Status List refuses the
//! tokens it marks revoked, and a list that is forged, expired or for another key is an error.

use std::time::Duration;

use crate::common::{code, pqwrap, run, text};
use pqwrap_core::token::status::{Bits, Status, StatusList, StatusListClaims, StatusRef};
use pqwrap_core::token::{Algorithm, Issuer, Manifest, SigningKey, encode_text, unix_now};

const URI: &str = "urn:pqwrap:test:status";

struct Fixture {
    dir: tempfile::TempDir,
    issuer: Issuer,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_seed(Algorithm::MlDsa65, &[5; 32]);
        std::fs::write(dir.path().join("broker.pub"), key.public_key().to_jwk()).unwrap();
        Fixture {
            dir,
            issuer: Issuer::new(key),
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn token(&self, name: &str, idx: u64) -> std::path::PathBuf {
        let m = Manifest::from_json(
            r#"{"agent": "a", "capabilities": {"fileAccess": [{"path": "/srv", "mode": "read"}]}}"#,
        )
        .unwrap();
        let t = self
            .issuer
            .issue_with_status(
                &m,
                "files.local",
                Duration::from_secs(600),
                unix_now(),
                None,
                StatusRef::new(URI, idx).unwrap(),
            )
            .unwrap();
        let p = self.path(name);
        std::fs::write(&p, t.to_text()).unwrap();
        p
    }

    fn list(&self, issuer: &Issuer, revoked: &[u64], exp: Option<u64>) -> std::path::PathBuf {
        let mut l = StatusList::new(Bits::One, 128).unwrap();
        for i in revoked {
            l.set(*i, Status::Invalid).unwrap();
        }
        let mut c = StatusListClaims::new(URI, unix_now() - 1000, l);
        c.exp = exp;
        let p = self.path("status.cwt");
        std::fs::write(&p, encode_text(&issuer.sign_status_list(&c).unwrap())).unwrap();
        p
    }

    fn verify(&self, token: &std::path::Path, list: &std::path::Path) -> std::process::Output {
        run(pqwrap()
            .args(["token", "verify", "--aud", "files.local", "--trust"])
            .arg(self.path("broker.pub"))
            .arg("--status-list")
            .arg(list)
            .arg(token))
    }
}

#[test]
fn verify_and_check_refuse_what_the_status_list_revokes() {
    let f = Fixture::new();
    let good = f.token("good.tok", 1);
    let bad = f.token("bad.tok", 2);
    let list = f.list(&f.issuer, &[2], Some(unix_now() + 3600));

    let o = f.verify(&good, &list);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"idx\": 1"));
    let o = f.verify(&bad, &list);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("revoked"),
        "{}",
        text(&o)
    );

    let check = |tok: &std::path::Path| {
        run(pqwrap()
            .args(["token", "check", "--aud", "files.local", "--trust"])
            .arg(f.path("broker.pub"))
            .arg("--status-list")
            .arg(&list)
            .arg(tok)
            .args(["--read", "/srv/x"]))
    };
    assert_eq!(code(&check(&good)), 0);
    let o = check(&bad);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("revoked"));
}

#[test]
fn a_status_list_that_does_not_verify_is_an_error() {
    let f = Fixture::new();
    let good = f.token("good.tok", 1);
    // Signed by a key that is not trusted.
    let stranger = Issuer::new(SigningKey::from_seed(Algorithm::MlDsa65, &[6; 32]));
    let list = f.list(&stranger, &[], None);
    let o = f.verify(&good, &list);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("invalid status list"),
        "{}",
        text(&o)
    );
    // Expired.
    let list = f.list(&f.issuer, &[], Some(unix_now() - 100));
    let o = f.verify(&good, &list);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("expired"));
    // Not a status list at all: the token itself.
    let o = f.verify(&good, &good);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid status list"));
}
