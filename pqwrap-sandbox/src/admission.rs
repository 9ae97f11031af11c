//! Admission: the token verifies, is live and not revoked, and the command resolves to exactly
//! a granted command. Nothing runs otherwise.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use pqwrap_core::token::enforce::normalize;
use pqwrap_core::token::{Request, TrustSet, VerifiedToken, Verifier};

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

/// Verifies the token against the pinned keys for the audience at `now`, asks `revocation`
/// about it, and resolves the command ([`resolve_command`]). The resolved absolute path must
/// be a granted command.
pub fn admit(
    c: Candidate<'_>,
    revocation: Option<&mut dyn RevocationSource>,
) -> Result<Admitted, AdmissionError> {
    let now = c.now;
    let token = Verifier::new(c.trust, c.audience).verify_text(c.token_text, now)?;
    // The verifier's leeway lets a just-expired token verify; nothing starts after exp.
    let exp = token.claims().exp;
    if now >= exp {
        return Err(AdmissionError::Expired { exp, now });
    }
    if let Some(r) = revocation
        && let Status::Revoked(why) = r.status(&token)
    {
        return Err(AdmissionError::Revoked(why));
    }
    let command = resolve_command(c.command, c.path_env, c.cwd)?;
    let interactive = token
        .claims()
        .capabilities
        .shell
        .as_ref()
        .is_some_and(|s| s.interactive);
    token
        .check(&Request::Exec {
            command: &command,
            interactive,
        })
        .map_err(AdmissionError::Denied)?;
    Ok(Admitted { token, command })
}

/// Resolves a command name to an absolute, lexically normalised path the way a shell does:
/// a name with a `/` is taken relative to `cwd`; a bare name is looked up in the absolute
/// directories of `path_env`. Only existing regular files with an execute bit count.
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
    let candidate = if name.contains('/') {
        let joined = cwd.join(name);
        let s = joined
            .to_str()
            .ok_or_else(|| AdmissionError::NotUtf8(lossy()))?;
        normalize(s).filter(|p| is_executable_file(Path::new(p)))
    } else {
        std::env::split_paths(path_env.unwrap_or(OsStr::new("")))
            .filter(|d| d.is_absolute())
            .filter_map(|d| d.join(name).to_str().and_then(normalize))
            .find(|p| is_executable_file(Path::new(p)))
    };
    candidate.ok_or_else(|| AdmissionError::NotFound(name.to_owned()))
}

fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_follows_path_and_normalises() {
        let sh = resolve_command(
            OsStr::new("sh"),
            Some(OsStr::new("rel:/nonexistent:/bin")),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(sh, "/bin/sh");
        let up = resolve_command(OsStr::new("../bin/./sh"), None, Path::new("/usr")).unwrap();
        assert_eq!(up, "/bin/sh");
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
