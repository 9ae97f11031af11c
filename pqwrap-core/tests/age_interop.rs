//! Interoperability with a real peer: Debian's `age` binary (classical X25519).
//! Files `age` writes decrypt here, and files written here decrypt in `age` — binary and
//! armored, single- and multi-chunk. Without `age` on PATH the test says so, loudly, and
//! passes (CI installs it: `apt-get install age`).

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use pqwrap_core::age;
use pqwrap_core::keys::Identity;

fn age_available() -> bool {
    Command::new("age")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 13) as u8).collect()
}

fn run_age(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("age")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn age");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&stdin));
    let out = child.wait_with_output().expect("age runs");
    writer.join().expect("writer thread").expect("write to age");
    assert!(
        out.status.success(),
        "age {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn interop_with_debian_age() {
    if !age_available() {
        eprintln!();
        eprintln!("**************************************************************");
        eprintln!("*** SKIPPED interop_with_debian_age: `age` is not installed ***");
        eprintln!("*** (apt-get install age) — nothing was checked against it  ***");
        eprintln!("**************************************************************");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let id = Identity::generate_x25519().expect("rng");
    let key_path = dir.path().join("key.txt");
    std::fs::write(
        &key_path,
        id.to_file_contents("2026-01-01T00:00:00Z").as_bytes(),
    )
    .expect("write key");
    let key = key_path.to_str().expect("UTF-8 path");
    let recipient = id.to_recipient().to_string();
    let mut checked = 0;

    for n in [
        0,
        1000,
        3 * age::stream::CHUNK_LEN + 17,
        16 * age::stream::CHUNK_LEN + 5,
    ] {
        let pt = data(n);
        for armor in [false, true] {
            // age → pqwrap
            let mut args = vec!["-e", "-r", recipient.as_str()];
            if armor {
                args.push("-a");
            }
            let file = run_age(&args, &pt);
            let dec = age::Decryptor::new(&file[..]).expect("header from age");
            assert_eq!(dec.armor() == age::Armor::Armored, armor);
            let mut out = Vec::new();
            dec.decrypt(std::slice::from_ref(&id), &[])
                .expect("unwrap age's stanza")
                .read_to_end(&mut out)
                .expect("payload from age");
            assert_eq!(out, pt, "age → pqwrap, {n} bytes, armor {armor}");

            // pqwrap → age
            let (fk, header) =
                age::new_header(&[id.to_recipient()], age::Mixing::Refuse).expect("header");
            let mut w = age::encrypt_writer(
                Vec::new(),
                &fk,
                &header,
                if armor {
                    age::Armor::Armored
                } else {
                    age::Armor::Binary
                },
            )
            .expect("writer");
            w.write_all(&pt).expect("write");
            let file = w.finish().expect("finish");
            let out = run_age(&["-d", "-i", key], &file);
            assert_eq!(out, pt, "pqwrap → age, {n} bytes, armor {armor}");
            checked += 2;
        }
    }
    // A key made by age-keygen, if present, parses and decrypts.
    if which_age_keygen() {
        let kp = dir.path().join("agekey.txt");
        let st = Command::new("age-keygen")
            .arg("-o")
            .arg(&kp)
            .stderr(Stdio::null())
            .status()
            .expect("age-keygen");
        assert!(st.success());
        let text = std::fs::read_to_string(&kp).expect("key");
        let ids = pqwrap_core::keys::parse_identities(&text).expect("age-keygen key parses");
        let file = run_age(
            &["-e", "-i", kp.to_str().expect("path")],
            b"from age-keygen",
        );
        let mut out = Vec::new();
        age::Decryptor::new(&file[..])
            .expect("header")
            .decrypt(&ids, &[])
            .expect("unwrap")
            .read_to_end(&mut out)
            .expect("payload");
        assert_eq!(out, b"from age-keygen");
        checked += 1;
    }
    println!("interop with Debian age: {checked} cross-decryptions checked");
}

fn which_age_keygen() -> bool {
    Command::new("age-keygen")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn script_available() -> bool {
    Command::new("script")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `age_cmd` under a pseudo-terminal (age reads passphrases only from a terminal),
/// typing `passphrase` `times` times.
fn age_with_tty(age_cmd: &str, passphrase: &str, times: usize) {
    let typing: String = (0..times)
        .map(|_| format!("sleep 0.5; printf '%s\\n' '{passphrase}'; "))
        .collect();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("({typing}) | script -qfec \"{age_cmd}\" /dev/null"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sh runs");
    assert!(st.success(), "{age_cmd} under a pty failed");
}

#[test]
fn interop_scrypt_with_debian_age() {
    if !age_available() || !script_available() {
        eprintln!();
        eprintln!("*****************************************************************");
        eprintln!("*** SKIPPED interop_scrypt_with_debian_age: needs `age` and   ***");
        eprintln!("*** `script` (util-linux) — nothing was checked against age  ***");
        eprintln!("*****************************************************************");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("UTF-8 path");
    let pw = "correct horse battery";
    let pt = data(age::stream::CHUNK_LEN + 10);

    // pqwrap → age
    let fk = age::FileKey::generate().expect("rng");
    let header =
        age::Header::wrap_passphrase(&fk, &age::Passphrase::new(pw.into()), 12).expect("wrap");
    let mut w = age::encrypt_writer(Vec::new(), &fk, &header, age::Armor::Binary).expect("writer");
    w.write_all(&pt).expect("write");
    std::fs::write(dir.path().join("a.age"), w.finish().expect("finish")).expect("write");
    age_with_tty(&format!("age -d -o {d}/a.out {d}/a.age"), pw, 1);
    assert_eq!(
        std::fs::read(dir.path().join("a.out")).expect("age output"),
        pt
    );

    // age → pqwrap (age asks for the passphrase twice; work factor 18)
    std::fs::write(dir.path().join("b.txt"), &pt).expect("write");
    age_with_tty(&format!("age -p -o {d}/b.age {d}/b.txt"), pw, 2);
    let file = std::fs::read(dir.path().join("b.age")).expect("age wrote");
    let mut out = Vec::new();
    age::Decryptor::new(&file[..])
        .expect("header")
        .decrypt(&[], &[age::Passphrase::new(pw.into())])
        .expect("scrypt unwrap")
        .read_to_end(&mut out)
        .expect("payload");
    assert_eq!(out, pt);
    println!("interop with Debian age: scrypt both ways checked");
}
