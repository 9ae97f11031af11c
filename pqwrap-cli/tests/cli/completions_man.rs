//! `pqwrap completions`, `pqwrap man` and `pqwrap --version`, checked with the real shells
//! and the real `man`: bash and fish load the generated scripts and complete words, zsh parses
//! and registers its script, and `man -l` renders every page without a warning in an ASCII
//! and a UTF-8 locale. `.ci/run` installs fish, zsh, man-db and groff; where one is missing
//! here, its test prints a SKIPPED banner and checks nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use crate::common::{code, pqwrap, run, text};

fn skipped(test: &str, because: &str) {
    crate::common::skipped_banner(test, because, ".ci/run installs what it needs");
}

/// Whether `program` can be started at all.
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn completion_script(shell: &str, dir: &Path) -> std::path::PathBuf {
    let out = run(pqwrap().args(["completions", shell]));
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(!out.stdout.is_empty(), "empty {shell} script");
    let path = dir.join(format!("pqwrap.{shell}"));
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

/// Loads the script into a non-interactive bash, finds the function bash registered for
/// `pqwrap` (`complete -p`), and calls it as readline would with the cursor after `words`.
const BASH_DRIVER: &str = r#"
source "$1" || exit 10
spec=$(complete -p pqwrap) || exit 11
fn=${spec#* -F }
fn=${fn%% *}
shift
COMP_WORDS=("$@")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
prev=
(( COMP_CWORD > 0 )) && prev=${COMP_WORDS[COMP_CWORD-1]}
"$fn" pqwrap "${COMP_WORDS[COMP_CWORD]}" "$prev" || exit 12
printf '%s\n' "${COMPREPLY[@]}"
"#;

fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", BASH_DRIVER, "driver"])
        .arg(script)
        .args(words)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash driver for {words:?}: {}",
        text(&out)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_loads_the_completion_and_completes_commands_and_options() {
    if !have("bash") {
        return skipped("bash completion", "bash is not installed");
    }
    let dir = tempfile::tempdir().unwrap();
    let script = completion_script("bash", dir.path());
    assert_eq!(bash_complete(&script, &["pqwrap", "re"]), ["rewrap"]);
    assert_eq!(bash_complete(&script, &["pqwrap", "token", "i"]), ["issue"]);
    assert_eq!(
        bash_complete(&script, &["pqwrap", "rewrap", "--dr"]),
        ["--dry-run"]
    );
    assert_eq!(bash_complete(&script, &["pqwrap", "man", "--d"]), ["--dir"]);
    let shells = bash_complete(&script, &["pqwrap", "completions", ""]);
    for shell in ["bash", "zsh", "fish", "powershell"] {
        assert!(
            shells.iter().any(|s| s == shell),
            "{shell} not offered: {shells:?}"
        );
    }
    // A word no subcommand starts with completes to nothing.
    assert!(bash_complete(&script, &["pqwrap", "zz"]).is_empty());
}

#[test]
fn fish_loads_the_completion_and_completes_commands_and_options() {
    if !have("fish") {
        return skipped("fish completion", "fish is not installed");
    }
    let dir = tempfile::tempdir().unwrap();
    let script = completion_script("fish", dir.path());
    let complete = |line: &str| -> Vec<String> {
        let out = Command::new("fish")
            .arg("--no-config")
            .arg("-c")
            .arg(format!("source {}; complete -C '{line}'", script.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "fish for {line:?}: {}", text(&out));
        // Each candidate is `word<TAB>description`.
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split('\t').next().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(complete("pqwrap re"), ["rewrap"]);
    assert_eq!(complete("pqwrap token i"), ["issue"]);
    assert_eq!(complete("pqwrap rewrap --dr"), ["--dry-run"]);
}

#[test]
fn zsh_parses_the_completion_and_registers_it_for_pqwrap() {
    if !have("zsh") {
        return skipped("zsh completion", "zsh is not installed");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = run(pqwrap().args(["completions", "zsh"]));
    assert_eq!(code(&out), 0, "{}", text(&out));
    // zsh finds completion functions by file name on $fpath; `#compdef` binds them.
    std::fs::write(dir.path().join("_pqwrap"), &out.stdout).unwrap();
    let parse = Command::new("zsh")
        .arg("-n")
        .arg(dir.path().join("_pqwrap"))
        .output()
        .unwrap();
    assert!(parse.status.success(), "zsh -n: {}", text(&parse));
    let registered = Command::new("zsh")
        .arg("-f")
        .arg("-c")
        .arg(format!(
            "fpath=({} $fpath); autoload -U compinit; compinit -u -D; \
             print -r -- ${{_comps[pqwrap]}}; autoload +X _pqwrap && print loaded",
            dir.path().display()
        ))
        .output()
        .unwrap();
    assert!(registered.status.success(), "zsh: {}", text(&registered));
    assert_eq!(
        String::from_utf8_lossy(&registered.stdout),
        "_pqwrap\nloaded\n",
        "{}",
        text(&registered)
    );
}

#[test]
fn powershell_script_registers_a_completer_for_every_command() {
    // No PowerShell can be installed here: this checks only what the script declares.
    let out = run(pqwrap().args(["completions", "powershell"]));
    assert_eq!(code(&out), 0, "{}", text(&out));
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("Register-ArgumentCompleter -Native -CommandName 'pqwrap'"));
    for cmd in subcommands(&[]) {
        assert!(
            script.contains(&format!("'pqwrap;{cmd}'")),
            "no case for {cmd}"
        );
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = run(pqwrap().args(["completions", "tcsh"]));
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcsh"));
}

/// The subcommands `pqwrap PATH --help` lists, without `help`.
fn subcommands(path: &[&str]) -> Vec<String> {
    let out = run(pqwrap().args(path).arg("--help"));
    assert_eq!(code(&out), 0, "{}", text(&out));
    let help = String::from_utf8(out.stdout).unwrap();
    let Some((_, commands)) = help.split_once("Commands:\n") else {
        return Vec::new();
    };
    commands
        .lines()
        .take_while(|l| !l.trim().is_empty())
        // A command's own line is indented by two; its wrapped description, by more.
        .filter(|l| l.starts_with("  ") && !l[2..].starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// Every page `man --dir` must write: `pqwrap.1`, then one per subcommand, recursively; with
/// the command as it is typed (`pqwrap broker rotate-key`), which a page's name alone cannot
/// tell when a subcommand's name holds a hyphen.
fn expected_pages(path: &mut Vec<String>, out: &mut BTreeMap<String, String>) {
    out.insert(format!("{}.1", path.join("-")), path.join(" "));
    let args: Vec<&str> = path[1..].iter().map(String::as_str).collect();
    for sub in subcommands(&args) {
        path.push(sub);
        expected_pages(path, out);
        path.pop();
    }
}

#[test]
fn man_writes_a_page_for_every_subcommand_that_man_renders_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let out = run(pqwrap().arg("man").arg("--dir").arg(&pages));
    assert_eq!(code(&out), 0, "{}", text(&out));

    let mut typed_as = BTreeMap::new();
    expected_pages(&mut vec!["pqwrap".to_owned()], &mut typed_as);
    let expected: BTreeSet<String> = typed_as.keys().cloned().collect();
    assert!(expected.contains("pqwrap-rewrap.1") && expected.contains("pqwrap-token-issue.1"));
    let written: BTreeSet<String> = std::fs::read_dir(&pages)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(written, expected);
    // It prints the path of each page it wrote.
    let listed: BTreeSet<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let p = Path::new(l);
            assert_eq!(p.parent(), Some(pages.as_path()));
            p.file_name().unwrap().to_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(listed, expected);

    if !have("man") {
        return skipped("man -l of every page", "man (man-db) is not installed");
    }
    for page in &expected {
        let name = page.trim_end_matches(".1");
        // The ASCII device (LANG=C) has fewer glyphs than the UTF-8 one: both must be clean.
        for locale in ["C", "C.UTF-8"] {
            let out = Command::new("man")
                .args(["--warnings", "-l"])
                .arg(pages.join(page))
                .env("MANWIDTH", "80")
                .env("LC_ALL", locale)
                .env_remove("MANPAGER")
                .env_remove("PAGER")
                .output()
                .unwrap();
            assert!(out.status.success(), "man -l {page}: {}", text(&out));
            assert!(
                out.stderr.is_empty(),
                "man -l {page} under LC_ALL={locale} warned:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Justified lines stretch spaces: compare words.
            let shown = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            assert!(
                shown.starts_with(&format!("{}(1) pqwrap manual", name.to_uppercase()))
                    && shown.ends_with(&format!(
                        "pqwrap {} {}(1)",
                        env!("CARGO_PKG_VERSION"),
                        name.to_uppercase()
                    ))
                    && shown.contains("SYNOPSIS"),
                "{page} rendered as:\n{shown}"
            );
            // The synopsis names the command as it is typed.
            let typed = &typed_as[page];
            assert!(
                shown.contains(typed.as_str()),
                "{page}: no `{typed}` in\n{shown}"
            );
        }
    }
}

#[test]
fn man_prints_one_page_and_refuses_an_unknown_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(pqwrap().arg("man").arg("--dir").arg(dir.path()));
    assert_eq!(code(&out), 0, "{}", text(&out));

    let top = run(pqwrap().arg("man"));
    assert_eq!(code(&top), 0, "{}", text(&top));
    assert_eq!(
        top.stdout,
        std::fs::read(dir.path().join("pqwrap.1")).unwrap()
    );
    let issue = run(pqwrap().args(["man", "token", "issue"]));
    assert_eq!(code(&issue), 0, "{}", text(&issue));
    assert_eq!(
        issue.stdout,
        std::fs::read(dir.path().join("pqwrap-token-issue.1")).unwrap()
    );
    assert!(
        String::from_utf8_lossy(&issue.stdout)
            .contains("\n.TH PQWRAP-TOKEN-ISSUE 1 \"\" \"pqwrap ")
    );

    let bad = run(pqwrap().args(["man", "token", "nope"]));
    assert_eq!(code(&bad), 2, "{}", text(&bad));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("`pqwrap token` has no subcommand `nope`"),
        "{err}"
    );
    let both = run(pqwrap().args(["man", "rewrap", "--dir"]).arg(dir.path()));
    assert_eq!(code(&both), 2, "{}", text(&both));
}

#[test]
fn a_full_disk_under_standard_output_is_an_error_not_a_panic() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return skipped("writes to /dev/full", "there is no /dev/full");
    };
    for args in [&["completions", "bash"][..], &["man"][..]] {
        let out = pqwrap()
            .args(args)
            .stdout(full.try_clone().unwrap())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 1, "{args:?}: {err}");
        assert!(err.contains("No space left on device"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn version_names_every_cryptographic_backend() {
    let out = run(pqwrap().arg("--version"));
    assert_eq!(code(&out), 0, "{}", text(&out));
    let shown = String::from_utf8(out.stdout).unwrap();
    let mut lines = shown.lines();
    assert_eq!(
        lines.next(),
        Some(format!("pqwrap {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let rows: Vec<Vec<&str>> = lines
        .skip_while(|l| *l != "cryptographic backends:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.rsplitn(3, ' ').collect())
        .collect();
    let backends = pqwrap_core::backends();
    assert_eq!(rows.len(), backends.len(), "{shown}");
    for (row, b) in rows.iter().zip(backends) {
        // rsplitn: version, implementation, then the primitive with its padding.
        assert_eq!(row[0], b.version, "{shown}");
        assert_eq!(row[1], b.implementation, "{shown}");
        assert_eq!(row[2].trim(), b.primitive, "{shown}");
    }
    assert!(
        shown.contains("\nML-KEM-768 code path on this CPU: avx2\n")
            || shown.contains("\nML-KEM-768 code path on this CPU: portable\n"),
        "{shown}"
    );
    for needle in ["libcrux-ml-kem", "aws-lc-rs"] {
        assert!(shown.contains(needle), "{needle} missing:\n{shown}");
    }

    let short = run(pqwrap().arg("-V"));
    assert_eq!(
        String::from_utf8(short.stdout).unwrap(),
        format!("pqwrap {}\n", env!("CARGO_PKG_VERSION"))
    );
}
