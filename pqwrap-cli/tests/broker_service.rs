//! `pqwrap broker serve` as a real process: the documented policy, peers of different users
//! (through setpriv), consent, SIGHUP reloads, quotas counted against parents, revocation
//! through the status list, key rotation, the audit log and the OCSF stream.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod broker_support;
mod common;

use std::process::Command;
use std::time::Duration;

use broker_support::*;
use common::skipped;

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// The first ```toml block of docs/BROKER.md, as written.
fn doc_policy() -> String {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/BROKER.md")).unwrap();
    doc.split("```toml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn doc_policy_grants_the_design_manifest() {
    let b = Broker::start(&doc_policy(), None);
    let o = b.request(None, "manifest.json", "files.local", "t");
    assert_eq!(code(&o), 0, "{}\n{}", out(&o), b.log());
    let tok = b.out_dir(None).join("t");
    let v = b.verify(&tok, "files.local");
    assert_eq!(code(&v), 0, "{}", out(&v));
    let claims: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    let design: serde_json::Value = serde_json::from_str(DESIGN_EXAMPLE).unwrap();
    // Exactly the design manifest's capabilities, for its agent, for its hour.
    let m = pqwrap_core::token::Manifest::from_json(DESIGN_EXAMPLE).unwrap();
    assert_eq!(claims["capabilities"], m.capabilities.to_json());
    assert_eq!(claims["sub"], design["agent"]);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
    assert_eq!(claims["iss"], "pqwrap-broker");
    assert!(
        claims["status"]["status_list"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("/status.cwt")
    );
    // Another audience is refused by that policy.
    let o = b.request(None, "manifest.json", "clipboard.local", "t2");
    assert_eq!(code(&o), 3, "{}", out(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not allow audience"));
}

#[test]
fn peers_of_other_users_are_attested_allowed_and_refused() {
    if let Err(why) = can_switch_users() {
        return skipped(
            "peers_of_other_users_are_attested_allowed_and_refused",
            &why,
        );
    }
    // The broker runs as 64001, an allowed agent as 64002, a stranger as 64003.
    let (broker, agent, stranger) = (64001u32, 64002u32, 64003u32);
    let b = Broker::start(
        &policy(&agent.to_string(), "\"self\"", "", ""),
        Some(broker),
    );
    let o = b.request(Some(agent), "manifest.json", "files.local", "t");
    assert_eq!(code(&o), 0, "{}\n{}", out(&o), b.log());
    let tok = b.out_dir(Some(agent)).join("t");
    assert_eq!(code(&b.verify(&tok, "files.local")), 0);

    let o = b.request(Some(stranger), "manifest.json", "files.local", "t");
    assert_eq!(code(&o), 3, "{}", out(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no policy rule matches") && err.contains(&format!("uid {stranger}")),
        "{err}"
    );

    // Revocation is for admins (the broker's own user here): the agent may not.
    let cti = b.cti_of(&tok, "files.local");
    let revoke = |as_user| {
        pqwrap_as(as_user)
            .args(["broker", "revoke", "--socket"])
            .arg(b.socket())
            .arg(&cti)
            .output()
            .unwrap()
    };
    let o = revoke(agent);
    assert_eq!(code(&o), 1, "{}", out(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not allowed"));
    let o = revoke(broker);
    assert_eq!(code(&o), 0, "{}", out(&o));
    assert_eq!(code(&b.verify(&tok, "files.local")), 1);

    // The audit log names who asked, as the kernel and /proc said.
    let audit = b.audit();
    let granted = audit.iter().find(|r| r["event"] == "token.issue").unwrap();
    assert_eq!(granted["peer"]["uid"], agent);
    assert_eq!(granted["peer"]["exe"], BIN);
    let refused = audit.iter().find(|r| r["event"] == "token.refuse").unwrap();
    assert_eq!(refused["peer"]["uid"], stranger);
}

#[test]
fn consent_grants_only_on_yes() {
    // The scripted "person" answers from the agent's name in the summary, and writes down
    // each summary it was shown.
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    let script = format!(
        "echo \"$1\" >> {}; case \"$1\" in *agent-yes*) echo yes;; *agent-slow*) sleep 30; echo yes;; *agent-exit*) echo yes; exit 1;; *) echo no;; esac",
        seen.display()
    );
    let broker = format!(
        "consent_command = [\"/bin/sh\", \"-c\", {script:?}, \"-\", \"{{summary}}\"]\nconsent_timeout = \"2s\""
    );
    let b = Broker::start(
        &policy("\"self\"", "\"self\"", &broker, "consent = \"always\""),
        None,
    );
    for agent in ["agent-yes", "agent-no", "agent-slow", "agent-exit"] {
        std::fs::write(
            b.path(&format!("{agent}.json")),
            DESIGN_EXAMPLE.replace("cowork-session-1234", agent),
        )
        .unwrap();
    }
    let t = std::time::Instant::now();
    assert_eq!(
        code(&b.request(None, "agent-yes.json", "files.local", "y")),
        0
    );
    for agent in ["agent-no", "agent-slow", "agent-exit"] {
        let o = b.request(None, &format!("{agent}.json"), "files.local", agent);
        assert_eq!(code(&o), 3, "{agent}: {}", out(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("consent was not given"));
    }
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the timeout did not cut the dialog"
    );
    let shown = std::fs::read_to_string(&seen).unwrap();
    assert!(
        shown.contains(
            "wants read-only access to /home/user/Documents/Contracts, network access to internal-api.company.local:443"
        ) && shown.contains("for 1h (for files.local)"),
        "{shown}"
    );
    let answers: Vec<String> = b
        .audit()
        .iter()
        .filter(|r| r["event"] == "broker.consent")
        .map(|r| r["answer"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(answers, ["yes", "no", "no", "no"]);
    let consent_events = b
        .ocsf()
        .into_iter()
        .filter(|e| e["activity_name"] == "Consent")
        .count();
    assert_eq!(consent_events, 4);
}

#[test]
fn sighup_reloads_the_policy_and_a_bad_one_is_kept_out() {
    let b = Broker::start(&policy("\"self\"", "\"self\"", "", ""), None);
    assert_eq!(
        code(&b.request(None, "manifest.json", "other.local", "a")),
        3
    );
    std::fs::write(
        b.path("policy.toml"),
        policy("\"self\"", "\"self\"", "", "").replace(
            "audiences = [\"files.local\"]\nmax_ttl",
            "audiences = [\"files.local\", \"other.local\"]\nmax_ttl",
        ),
    )
    .unwrap();
    b.signal(rustix::process::Signal::HUP);
    let reloaded = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        b.log().contains("policy reloaded")
    });
    assert!(reloaded, "{}", b.log());
    let o = b.request(None, "manifest.json", "other.local", "b");
    assert_eq!(code(&o), 0, "{}", out(&o));

    // A broken file: the broker says which line, and keeps the policy it had.
    std::fs::write(
        b.path("policy.toml"),
        "[broker]\ndefault_ttl = \"15m\"\nbogus = 1\n",
    )
    .unwrap();
    b.signal(rustix::process::Signal::HUP);
    let refused = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        b.log().contains("NOT reloaded")
    });
    assert!(refused, "{}", b.log());
    assert!(b.log().contains("line 3"), "{}", b.log());
    assert_eq!(
        code(&b.request(None, "manifest.json", "other.local", "c")),
        0
    );
    let reloads: Vec<_> = b
        .audit()
        .into_iter()
        .filter(|r| r["event"] == "broker.policy_reload")
        .collect();
    assert_eq!(reloads.len(), 2);
    assert_eq!(reloads[1]["decision"], "kept the old policy");
}

fn consume(b: &Broker, token: &std::path::Path) -> std::process::Output {
    pqwrap()
        .args(["broker", "consume", "--socket"])
        .arg(b.socket())
        .arg("--token")
        .arg(token)
        .arg("--quantum-job")
        .arg(b.path("job.json"))
        .output()
        .unwrap()
}

#[test]
fn quotas_are_counted_against_the_parent_and_survive_a_restart() {
    let mut b = Broker::start(&policy("\"self\"", "\"self\"", "", ""), None);
    std::fs::write(
        b.path("job.json"),
        r#"{"backend":"qpu-sim-1","algorithm":"vqe","qubits":8,"shots":100,"runtime":"60s"}"#,
    )
    .unwrap();
    // A parent for 20 minutes.
    std::fs::write(
        b.path("parent.json"),
        DESIGN_EXAMPLE.replace("3600s", "1200s"),
    )
    .unwrap();
    assert_eq!(
        code(&b.request(None, "parent.json", "files.local", "parent")),
        0
    );
    let parent = b.out_dir(None).join("parent");
    // Two children, each asking for the parent's whole maxJobs (5).
    let child_manifest = DESIGN_EXAMPLE.replace("cowork-session-1234", "cowork-child");
    std::fs::write(b.path("child.json"), &child_manifest).unwrap();
    // c2 asks for no ttl: the manifest's hour is longer than what is left of the parent's
    // 20 minutes, so it is shortened (and says so) rather than refused.
    for (name, ttl) in [("c1", &["--ttl", "10m"][..]), ("c2", &[][..])] {
        let o = pqwrap()
            .args(["token", "request", "--socket"])
            .arg(b.socket())
            .arg("--manifest")
            .arg(b.path("child.json"))
            .args(["--aud", "files.local"])
            .args(ttl)
            .arg("--parent")
            .arg(&parent)
            .arg("-o")
            .arg(b.out_dir(None).join(name))
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{}", out(&o));
        if name == "c2" {
            assert!(
                String::from_utf8_lossy(&o.stderr).contains("shortened to the parent's remaining"),
                "{}",
                out(&o)
            );
        }
    }
    let (c1, c2) = (b.out_dir(None).join("c1"), b.out_dir(None).join("c2"));
    // 3 jobs on one child, 2 on the other: the parent's 5 are used up for everyone.
    for t in [&c1, &c1, &c1, &c2, &c2] {
        let o = consume(&b, t);
        assert_eq!(code(&o), 0, "{}", out(&o));
    }
    let o = consume(&b, &c2);
    assert_eq!(code(&o), 3, "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("counted across the tokens narrowed from it"),
        "{}",
        out(&o)
    );
    assert_eq!(code(&consume(&b, &parent)), 3);

    // Use survives kill -9.
    b.kill9();
    b.spawn();
    for t in [&c1, &c2, &parent] {
        let o = consume(&b, t);
        assert_eq!(code(&o), 3, "{}", out(&o));
    }
    let decisions: Vec<_> = b
        .audit()
        .into_iter()
        .filter(|r| r["event"] == "quota.consume")
        .map(|r| r["decision"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(decisions.iter().filter(|d| *d == "allowed").count(), 5);
    assert_eq!(decisions.iter().filter(|d| *d == "refused").count(), 5);
}

#[test]
fn revoking_a_parent_revokes_its_children_and_agent_revocation_blocks_the_session() {
    let b = Broker::start(&policy("\"self\"", "\"self\"", "", ""), None);
    assert_eq!(
        code(&b.request(None, "manifest.json", "files.local", "parent")),
        0
    );
    let parent = b.out_dir(None).join("parent");
    let o = pqwrap()
        .args(["token", "request", "--socket"])
        .arg(b.socket())
        .arg("--manifest")
        .arg(b.path("manifest.json"))
        .args(["--aud", "files.local", "--ttl", "10m", "--parent"])
        .arg(&parent)
        .arg("-o")
        .arg(b.out_dir(None).join("child"))
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", out(&o));
    let child = b.out_dir(None).join("child");
    assert_eq!(code(&b.verify(&child, "files.local")), 0);
    let cti = b.cti_of(&parent, "files.local");
    let o = pqwrap()
        .args(["broker", "revoke", "--socket"])
        .arg(b.socket())
        .arg(&cti)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", out(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
    for t in [&parent, &child] {
        let v = b.verify(t, "files.local");
        assert_eq!(code(&v), 1, "{}", out(&v));
        assert!(String::from_utf8_lossy(&v.stderr).contains("revoked"));
    }

    // A second token of the session, then the whole session.
    assert_eq!(
        code(&b.request(None, "manifest.json", "files.local", "again")),
        0
    );
    let again = b.out_dir(None).join("again");
    assert_eq!(code(&b.verify(&again, "files.local")), 0);
    let o = pqwrap()
        .args(["broker", "revoke", "--socket"])
        .arg(b.socket())
        .args(["--agent", "cowork-session-1234"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", out(&o));
    assert_eq!(code(&b.verify(&again, "files.local")), 1);
    let o = b.request(None, "manifest.json", "files.local", "refused");
    assert_eq!(code(&o), 3, "{}", out(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is revoked"));
}

#[test]
fn key_rotation_keeps_old_tokens_valid_and_publishes_the_trust_set() {
    let b = Broker::start(&policy("\"self\"", "\"self\"", "", ""), None);
    assert_eq!(
        code(&b.request(None, "manifest.json", "files.local", "old")),
        0
    );
    assert_eq!(b.trust().len(), 1);
    let o = pqwrap()
        .args(["broker", "rotate-key", "--socket"])
        .arg(b.socket())
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", out(&o));
    let new_kid = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    assert_eq!(b.trust().len(), 2);
    assert_eq!(
        code(&b.request(None, "manifest.json", "files.local", "new")),
        0
    );
    for name in ["old", "new"] {
        let v = b.verify(&b.out_dir(None).join(name), "files.local");
        assert_eq!(code(&v), 0, "{name}: {}", out(&v));
    }
    let v = b.verify(&b.out_dir(None).join("new"), "files.local");
    let j: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(j["kid"], new_kid);
    // The status list is now signed by the new key alone, and still verifies.
    let new_only = b
        .trust()
        .into_iter()
        .find(|p| p.to_string_lossy().contains(&new_kid))
        .unwrap();
    let v = pqwrap()
        .args(["token", "verify", "--aud", "files.local", "--trust"])
        .arg(&new_only)
        .arg("--status-list")
        .arg(b.path("status.cwt"))
        .arg(b.out_dir(None).join("new"))
        .output()
        .unwrap();
    assert_eq!(code(&v), 0, "{}", out(&v));
    assert!(b.audit().iter().any(|r| r["event"] == "key.rotate"));
}

#[test]
fn every_decision_is_an_ocsf_event() {
    let b = Broker::start(&policy("\"self\"", "\"self\"", "", ""), None);
    assert_eq!(
        code(&b.request(None, "manifest.json", "files.local", "t")),
        0
    );
    assert_eq!(
        code(&b.request(None, "manifest.json", "nope.local", "u")),
        3
    );
    let events = b.ocsf();
    assert_eq!(events.len(), 2, "{events:?}");
    for e in &events {
        assert_eq!(e["class_uid"], 3003);
        assert_eq!(e["category_uid"], 3);
        assert_eq!(e["type_uid"], 300301);
        assert_eq!(e["metadata"]["version"], "1.3.0");
        assert_eq!(e["actor"]["process"]["file"]["path"], BIN);
        assert_eq!(
            e["actor"]["process"]["file"]["hashes"][0]["algorithm_id"],
            3
        );
        assert!(e["time"].as_u64().unwrap() > 1_700_000_000_000);
    }
    assert_eq!(events[0]["status_id"], 1);
    assert_eq!(events[0]["session"]["uid"], "cowork-session-1234");
    assert!(events[0]["unmapped"]["token_id"].as_str().unwrap().len() == 32);
    assert_eq!(events[1]["status_id"], 2);
    assert!(
        events[1]["status_detail"]
            .as_str()
            .unwrap()
            .contains("does not allow audience")
    );
}

#[test]
fn socket_activation_takes_the_socket_from_systemd() {
    if Command::new("systemd-socket-activate")
        .arg("--version")
        .output()
        .is_err()
    {
        return skipped(
            "socket_activation_takes_the_socket_from_systemd",
            "systemd-socket-activate (Debian package systemd) is not installed",
        );
    }
    let b = Broker::start_activated(&policy("\"self\"", "\"self\"", "", ""));
    let o = b.request(None, "manifest.json", "files.local", "t");
    assert_eq!(code(&o), 0, "{}\n{}", out(&o), b.log());
    assert!(b.log().contains("(socket activation)"), "{}", b.log());
    assert_eq!(
        code(&b.verify(&b.out_dir(None).join("t"), "files.local")),
        0
    );
}

#[test]
fn requests_are_rate_limited_per_identity() {
    let b = Broker::start(
        &policy(
            "\"self\"",
            "\"self\"",
            "rate_limit = { requests = 3, per = \"1h\" }",
            "",
        ),
        None,
    );
    for i in 0..3 {
        let o = b.request(None, "manifest.json", "files.local", &format!("t{i}"));
        assert_eq!(code(&o), 0, "{}", out(&o));
    }
    let o = b.request(None, "manifest.json", "files.local", "t3");
    assert_eq!(code(&o), 1, "{}", out(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("too many requests"));
    let rejected = b
        .audit()
        .into_iter()
        .filter(|r| r["event"] == "broker.reject" && r["code"] == "rate_limited")
        .count();
    assert_eq!(rejected, 1);
}

#[test]
fn executable_selectors_pin_path_and_content() {
    use sha2::Digest;
    let bin = std::fs::read(BIN).unwrap();
    let sha = pqwrap_core::token::keys::hex_lower(&sha2::Sha256::digest(&bin));
    // Rule 1 pins the path, rule 2 the content; a stranger binary matches neither.
    let rules = format!(
        r#"[broker]
socket_mode = "0600"

[[rule]]
name = "by path"
exe = "{BIN}"
audiences = ["path.local"]
max_ttl = "1h"
[rule.grant]
clipboard = true

[[rule]]
name = "by hash"
exe_sha256 = "{sha}"
audiences = ["hash.local"]
max_ttl = "1h"
[rule.grant]
clipboard = true
"#
    );
    let b = Broker::start(&rules, None);
    std::fs::write(
        b.path("clip.json"),
        r#"{"agent": "a", "capabilities": {"clipboard": true}}"#,
    )
    .unwrap();
    // The same binary at another path matches the hash rule only; with one byte more it
    // matches nothing.
    let copy = b.path("pqwrap-copy");
    std::fs::write(&copy, &bin).unwrap();
    let mut changed = bin.clone();
    changed.push(0);
    let other = b.path("pqwrap-changed");
    std::fs::write(&other, &changed).unwrap();
    for p in [&copy, &other] {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let ask = |exe: &std::path::Path, aud: &str| {
        Command::new(exe)
            .args(["token", "request", "--socket"])
            .arg(b.socket())
            .arg("--manifest")
            .arg(b.path("clip.json"))
            .args(["--aud", aud])
            .output()
            .unwrap()
    };
    assert_eq!(code(&ask(std::path::Path::new(BIN), "path.local")), 0);
    // The first matching rule decides: BIN matches "by path", which does not allow hash.local.
    assert_eq!(code(&ask(std::path::Path::new(BIN), "hash.local")), 3);
    assert_eq!(code(&ask(&copy, "hash.local")), 0);
    assert_eq!(code(&ask(&copy, "path.local")), 3);
    let o = ask(&other, "hash.local");
    assert_eq!(code(&o), 3, "{}", out(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no policy rule matches"));
}
