//! Asking a person: the policy's consent command, run with a plain-language summary.
//!
//! The command is run without a shell, `{summary}` in any argument replaced by the summary
//! (which is also in the environment as `PQWRAP_CONSENT_SUMMARY`), standard input closed.
//! Only an exit status of 0 **and** a first line of output that is exactly `yes` grant; any
//! other answer, a crash, or no answer within the timeout is "no" (the command is then
//! killed). A desktop dialog such as `zenity --question` answers with its exit status only,
//! so it is wrapped: `["/bin/sh", "-c", "zenity --question --text \"$1\" && echo yes", "-", "{summary}"]`.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::policy::ConsentCommand;

/// What the person (or the command) said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// "yes".
    Yes,
    /// Anything else: the reason, for the audit log.
    No(String),
}

impl Answer {
    /// The answer as one word for audit records.
    pub fn word(&self) -> &'static str {
        match self {
            Answer::Yes => "yes",
            Answer::No(_) => "no",
        }
    }
}

/// Most output read from the command.
const MAX_OUTPUT: u64 = 4096;

/// Runs the consent command for `summary` and waits at most its timeout.
pub fn ask(cmd: &ConsentCommand, summary: &str) -> Answer {
    let Some((prog, args)) = cmd.argv.split_first() else {
        return Answer::No("no consent command".into());
    };
    let mut child = match Command::new(prog)
        .args(args.iter().map(|a| a.replace("{summary}", summary)))
        .env("PQWRAP_CONSENT_SUMMARY", summary)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Answer::No(format!("cannot run the consent command {prog}: {e}")),
    };
    let deadline = Instant::now() + cmd.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Answer::No(format!(
                    "no answer within {}",
                    humantime::format_duration(cmd.timeout)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Answer::No(format!("cannot wait for the consent command: {e}"));
            }
        }
    };
    let mut out = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = stdout.take(MAX_OUTPUT).read_to_string(&mut out);
    }
    let first = out.lines().next().unwrap_or("").trim();
    if status.success() && first == "yes" {
        Answer::Yes
    } else if !status.success() {
        Answer::No(format!("the consent command answered no ({status})"))
    } else {
        Answer::No(format!(
            "the consent command answered {first:?}, not \"yes\""
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout_ms: u64) -> ConsentCommand {
        ConsentCommand {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                script.into(),
                "-".into(),
                "{summary}".into(),
            ],
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[test]
    fn only_yes_grants() {
        assert_eq!(ask(&sh("echo yes", 5000), "s"), Answer::Yes);
        assert!(matches!(ask(&sh("echo no", 5000), "s"), Answer::No(_)));
        assert!(matches!(
            ask(&sh("echo yes; exit 1", 5000), "s"),
            Answer::No(_)
        ));
        assert!(matches!(ask(&sh("echo YES", 5000), "s"), Answer::No(_)));
        // The summary reaches the command as an argument and in the environment.
        assert_eq!(
            ask(
                &sh(
                    "[ \"$1\" = \"$PQWRAP_CONSENT_SUMMARY\" ] && [ \"$1\" = 'a b' ] && echo yes",
                    5000
                ),
                "a b"
            ),
            Answer::Yes
        );
    }

    #[test]
    fn no_answer_in_time_is_no() {
        let t = Instant::now();
        let a = ask(&sh("sleep 30; echo yes", 300), "s");
        assert!(matches!(a, Answer::No(m) if m.contains("no answer")));
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
