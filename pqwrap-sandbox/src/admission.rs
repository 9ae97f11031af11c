//! Admission: the token verifies, is live and not revoked, and the command resolves to exactly
//! a granted command. Nothing runs otherwise.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use pqwrap_core::token::enforce::Allowed;
use pqwrap_core::token::manifest::validate_abs_path;
use pqwrap_core::token::{Denied, Reason, Request, TrustSet, VerifiedToken, Verifier};

use crate::error::AdmissionError;
use crate::revocation::{RevocationSource, Status};

/// A token and command that passed admission.
#[derive(Debug)]
pub struct Admitted {
    /// The verified token.
    pub token: VerifiedToken,
    /// The absolute, lexically normalised command path, exactly as granted.
    pub command: String,
}

/// How the command runs, from the token's `shell.interactive`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Terminal {
    /// No controlling terminal (a new session) and standard input from /dev/null.
    Detached,
    /// The caller's terminal and standard input are kept.
    Interactive,
}

impl Admitted {
    /// Whether the command keeps the caller's terminal.
    pub fn terminal(&self) -> Terminal {
        match &self.token.claims().capabilities.shell {
            Some(s) if s.interactive => Terminal::Interactive,
            _ => Terminal::Detached,
        }
    }
}

/// What admission looks at.
pub struct Candidate<'a> {
    /// The token's text form.
    pub token_text: &'a str,
    /// The pinned broker keys.
    pub trust: TrustSet,
    /// This enforcement point's audience.
    pub audience: &'a str,
    /// Seconds since the Unix epoch.
    pub now: u64,
    /// The command as given (a name looked up on `path_env`, or a path).
    pub command: &'a OsStr,
    /// The caller's `PATH`.
    pub path_env: Option<&'a OsStr>,
    /// The directory a relative command path is taken from.
    pub cwd: &'a Path,
}

/// Verifies the token against the pinned keys for the audience at `now`, asks every
/// revocation source about it (each must answer "valid"), and resolves the command
/// ([`resolve_command`]). The resolved absolute path must be a granted command.
pub fn admit(
    c: Candidate<'_>,
    revocation: &mut [Box<dyn RevocationSource>],
) -> Result<Admitted, AdmissionError> {
    let now = c.now;
    let token = Verifier::new(c.trust, c.audience).verify_text(c.token_text, now)?;
    // The verifier's leeway lets a just-expired token verify; nothing starts after exp.
    let exp = token.claims().exp;
    if now >= exp {
        return Err(AdmissionError::Expired { exp, now });
    }
    for r in revocation.iter_mut() {
        match r.status(&token) {
            Status::Valid => {}
            Status::Revoked(why) => return Err(AdmissionError::Revoked(why)),
            Status::Unknown(why) => return Err(AdmissionError::RevocationUnknown(why)),
        }
    }
    let command = resolve_command(c.command, c.path_env, c.cwd)?;
    let interactive = token
        .claims()
        .capabilities
        .shell
        .as_ref()
        .is_some_and(|s| s.interactive);
    let granted = match token.check(&Request::Exec {
        command: &command,
        interactive,
    }) {
        // What runs is the token's own string (equal to the resolved one).
        Ok(Allowed::Exec(g)) => g.path().to_owned(),
        // An exec request is only ever answered with an exec grant.
        Ok(_) => return Err(AdmissionError::Denied(Denied(Reason::Shell))),
        Err(d) => return Err(AdmissionError::Denied(d)),
    };
    Ok(Admitted {
        token,
        command: granted,
    })
}

/// Resolves a command name to an absolute canonical path the way a shell does: a name with
/// a `/` is taken relative to `cwd`; a bare name is looked up in the absolute directories of
/// `path_env`. Only existing regular files with an execute bit count. `.` and empty
/// components are dropped (they name the directory they are in, so the file reached is the
/// same); a `..` is refused, as in the token's own checks: after a symlink it does not undo
/// the step the string suggests, so the tidied string might not name the file run.
pub fn resolve_command(
    command: &OsStr,
    path_env: Option<&OsStr>,
    cwd: &Path,
) -> Result<String, AdmissionError> {
    let lossy = || command.to_string_lossy().into_owned();
    let name = command
        .to_str()
        .ok_or_else(|| AdmissionError::NotUtf8(lossy()))?;
    if name.is_empty() {
        return Err(AdmissionError::NotFound(String::new()));
    }
    if name.contains('/') {
        let joined = if name.starts_with('/') {
            name.to_owned()
        } else {
            let cwd = cwd
                .to_str()
                .ok_or_else(|| AdmissionError::NotUtf8(lossy()))?;
            format!("{cwd}/{name}")
        };
        let path = without_dot_components(&joined);
        validate_abs_path("command", &path)
            .map_err(|e| AdmissionError::NotCanonical(e.problem.to_string()))?;
        return if is_executable_file(Path::new(&path)) {
            Ok(path)
        } else {
            Err(AdmissionError::NotFound(name.to_owned()))
        };
    }
    std::env::split_paths(path_env.unwrap_or(OsStr::new("")))
        .filter_map(|d| d.to_str().map(without_dot_components))
        .map(|d| format!("{}/{name}", d.trim_end_matches('/')))
        .filter(|p| validate_abs_path("command", p).is_ok())
        .find(|p| is_executable_file(Path::new(p)))
        .ok_or_else(|| AdmissionError::NotFound(name.to_owned()))
}

/// `p` without `.` and empty components (absolute if `p` is).
fn without_dot_components(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let joined = parts.join("/");
    if p.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_follows_path_and_refuses_dotdot() {
        let sh = resolve_command(
            OsStr::new("sh"),
            Some(OsStr::new("rel:/nonexistent:/bin")),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(sh, "/bin/sh");
        let here = resolve_command(OsStr::new("./sh"), None, Path::new("/bin")).unwrap();
        assert_eq!(here, "/bin/sh");
        let dots = resolve_command(OsStr::new("/bin/.//sh"), None, Path::new("/")).unwrap();
        assert_eq!(dots, "/bin/sh");
        // `..` is refused, not resolved on the string.
        assert!(matches!(
            resolve_command(OsStr::new("../bin/sh"), None, Path::new("/usr")),
            Err(AdmissionError::NotCanonical(_))
        ));
        // Relative PATH entries are skipped.
        assert!(
            resolve_command(OsStr::new("sh"), Some(OsStr::new("bin")), Path::new("/")).is_err()
        );
        assert!(matches!(
            resolve_command(
                OsStr::new("no-such-command-here"),
                Some(OsStr::new("/bin")),
                Path::new("/")
            ),
            Err(AdmissionError::NotFound(_))
        ));
        // A directory is not a command.
        assert!(resolve_command(OsStr::new("/usr"), None, Path::new("/")).is_err());
    }
}
