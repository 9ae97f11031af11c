//! From a token's capabilities to kernel rules: a Landlock ruleset (files, TCP, scopes) and a
//! seccomp filter (socket families, io_uring), plus what the running kernel cannot enforce.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, LandlockStatus, NetPort,
    PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, Scope,
};
use pqwrap_core::token::{Capabilities, FileMode};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::error::SandboxError;

/// How a system path may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemAccess {
    /// Read files and list directories.
    ReadOnly,
    /// Also write to existing files (for devices such as /dev/null); never create or remove.
    ReadWriteFiles,
}

/// A path outside the token's grants that programs need in order to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemPath {
    /// Absolute path.
    pub path: PathBuf,
    /// What is allowed beneath it.
    pub access: SystemAccess,
}

/// Which system paths the sandbox may read (`--system-paths`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SystemPaths {
    /// [`default_system_paths`]; entries missing on this machine are left out.
    Default,
    /// None at all: only the token's grants (the command must then need nothing else).
    None,
    /// Exactly these, each of which must exist.
    Custom(Vec<SystemPath>),
}

/// Read-only: the installed software and libraries, the loader's cache, the name-service and
/// time zone files. Read-write files: the null-like devices. Nothing under /home, /tmp, /run,
/// /proc, /sys or /var, and no other device.
pub const DEFAULT_READ_ONLY: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/ssl/certs",
    "/dev/urandom",
    "/dev/random",
];

/// Devices every program may write to.
pub const DEFAULT_READ_WRITE_FILES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full"];

/// The default system set as [`SystemPath`]s (whether or not they exist here).
pub fn default_system_paths() -> Vec<SystemPath> {
    let ro = DEFAULT_READ_ONLY.iter().map(|p| SystemPath {
        path: PathBuf::from(p),
        access: SystemAccess::ReadOnly,
    });
    let rw = DEFAULT_READ_WRITE_FILES.iter().map(|p| SystemPath {
        path: PathBuf::from(p),
        access: SystemAccess::ReadWriteFiles,
    });
    ro.chain(rw).collect()
}

impl SystemPaths {
    /// Parses a system paths file: one `ro PATH` or `rw PATH` per line (absolute paths;
    /// `rw` only writes existing files); blank lines and `#` comments are ignored.
    pub fn parse(text: &str) -> Result<SystemPaths, SandboxError> {
        let mut out = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |what: &str| SandboxError::SystemPaths {
                line: i + 1,
                what: what.to_owned(),
            };
            let (mode, path) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad("expected `ro PATH` or `rw PATH`"))?;
            let access = match mode {
                "ro" => SystemAccess::ReadOnly,
                "rw" => SystemAccess::ReadWriteFiles,
                _ => return Err(bad("the mode must be `ro` or `rw`")),
            };
            let path = path.trim();
            if !path.starts_with('/') {
                return Err(bad("the path must be absolute"));
            }
            out.push(SystemPath {
                path: PathBuf::from(path),
                access,
            });
        }
        Ok(SystemPaths::Custom(out))
    }
}

/// The Landlock ABI of the running kernel (as far as the bindings know it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// 0 without Landlock, else the ABI version (capped at the newest the bindings know).
    pub abi: u8,
}

impl Kernel {
    /// Asks the running kernel. The bindings have no query call, but the status of
    /// `restrict_self` names the ABI, so a short-lived thread restricts itself (Landlock
    /// domains and `no_new_privs` belong to a thread and end with it) and reports it.
    pub fn probe() -> Kernel {
        let abi = std::thread::spawn(|| {
            let status = Ruleset::default()
                .handle_access(AccessFs::Execute)
                .ok()?
                .create()
                .ok()?
                .restrict_self()
                .ok()?;
            Some(match status.landlock {
                LandlockStatus::Available { effective_abi, .. } => abi_number(effective_abi),
                _ => 0,
            })
        })
        .join()
        .ok()
        .flatten()
        .unwrap_or(0);
        Kernel { abi }
    }

    fn landlock_abi(self) -> ABI {
        ABI::from(i32::from(self.abi))
    }
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.abi {
            0 => f.write_str("no Landlock"),
            n => write!(f, "Landlock ABI {n}"),
        }
    }
}

fn abi_number(abi: ABI) -> u8 {
    (0..=64u8)
        .find(|n| ABI::from(i32::from(*n)) == abi)
        .unwrap_or(0)
}

/// Whether the sandbox may start when the kernel cannot enforce everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforcement {
    /// Refuse to run unless every grant is enforced as written.
    Strict,
    /// Run with what the kernel can do, printing what is not enforced.
    BestEffort,
}

/// One file rule of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRule {
    /// The path it is opened at.
    pub path: PathBuf,
    /// What it allows.
    pub kind: RuleKind,
    /// Where it comes from (for messages).
    pub origin: String,
}

/// The kinds of file rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    /// A `fileAccess` grant.
    Grant(FileMode),
    /// A system path.
    System(SystemAccess),
    /// Execute (and read): an allowed command or its program interpreter.
    Execute,
    /// Read, write and device ioctls on the caller's terminal (interactive tokens).
    Terminal,
    /// A display socket or the X authority file (`clipboard: true`): read, and connect to
    /// it as a Unix socket where the kernel can tell (Landlock ABI 9).
    Display,
}

/// Whether display sockets are reachable (the token's `clipboard`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// No X11/Wayland socket; `DISPLAY` and `WAYLAND_DISPLAY` are removed.
    Denied,
    /// The X11 and Wayland sockets of the caller's session.
    Granted,
}

/// Everything the sandbox will enforce, before anything is applied.
#[derive(Debug)]
pub struct Plan {
    /// The kernel it was made for.
    pub kernel: Kernel,
    /// File rules, in order.
    pub files: Vec<FileRule>,
    /// The one TCP port the sandbox may connect to (the egress proxy's).
    pub proxy_port: u16,
    /// Display sockets.
    pub display: Display,
    /// What this kernel cannot enforce (empty when everything is).
    pub not_enforced: Vec<String>,
}

/// What the plan is made from.
pub struct PlanInput<'a> {
    /// The verified capabilities.
    pub caps: &'a Capabilities,
    /// System paths.
    pub system: &'a SystemPaths,
    /// The proxy's port.
    pub proxy_port: u16,
    /// Whether the caller's terminal is kept.
    pub interactive: bool,
    /// The display sockets and X authority file that `clipboard: true` grants (found by
    /// the caller from its environment).
    pub display_files: &'a [PathBuf],
}

impl Plan {
    /// Builds the plan for `input` on `kernel`.
    pub fn new(kernel: Kernel, input: PlanInput<'_>) -> Result<Plan, SandboxError> {
        let caps = input.caps;
        let mut files = Vec::new();
        match input.system {
            SystemPaths::Default => {
                for s in default_system_paths() {
                    if s.path.exists() {
                        files.push(system_rule(s, "default system path"));
                    }
                }
            }
            SystemPaths::None => {}
            SystemPaths::Custom(list) => {
                for s in list {
                    if !s.path.exists() {
                        return Err(SandboxError::RulePath {
                            path: s.path.clone(),
                            source: std::io::ErrorKind::NotFound.into(),
                        });
                    }
                    files.push(system_rule(s.clone(), "--system-paths"));
                }
            }
        }
        for (i, g) in caps.file_access.iter().enumerate() {
            files.push(FileRule {
                path: PathBuf::from(&g.path),
                kind: RuleKind::Grant(g.mode),
                origin: format!("fileAccess[{i}] ({})", g.mode.name()),
            });
        }
        if let Some(shell) = &caps.shell {
            for c in &shell.allowed_commands {
                let p = PathBuf::from(c);
                if let Some(interp) = program_interpreter(&p) {
                    files.push(FileRule {
                        path: interp,
                        kind: RuleKind::Execute,
                        origin: format!("program interpreter of {c}"),
                    });
                }
                files.push(FileRule {
                    path: p,
                    kind: RuleKind::Execute,
                    origin: "shell.allowedCommands".into(),
                });
            }
        }
        if input.interactive {
            files.push(FileRule {
                path: PathBuf::from("/dev/tty"),
                kind: RuleKind::Terminal,
                origin: "interactive terminal".into(),
            });
        }
        let display = if caps.clipboard {
            Display::Granted
        } else {
            Display::Denied
        };
        let mut not_enforced = Vec::new();
        let need = |n: u8, what: &str, v: &mut Vec<String>| {
            if kernel.abi < n {
                v.push(format!(
                    "{what} needs Landlock ABI {n} (this kernel has {kernel})"
                ));
            }
        };
        need(1, "every file rule", &mut not_enforced);
        need(
            2,
            "denying renames and links across grants",
            &mut not_enforced,
        );
        need(
            3,
            "denying truncation outside write grants",
            &mut not_enforced,
        );
        need(4, "TCP connect and bind rules", &mut not_enforced);
        need(5, "denying device ioctls", &mut not_enforced);
        need(
            6,
            "scoping abstract Unix sockets and signals",
            &mut not_enforced,
        );
        if display == Display::Granted && kernel.abi < 9 {
            not_enforced.push(format!(
                "granting only the display sockets (clipboard: true) needs Landlock ABI 9 \
                 (this kernel has {kernel}); without it every pathname Unix socket (D-Bus, \
                 agents) is reachable"
            ));
        }
        if display == Display::Granted {
            for s in input.display_files {
                files.push(FileRule {
                    path: s.clone(),
                    kind: RuleKind::Display,
                    origin: "display (clipboard: true)".into(),
                });
            }
        }
        Ok(Plan {
            kernel,
            files,
            proxy_port: input.proxy_port,
            display,
            not_enforced,
        })
    }

    /// Refuses under [`Enforcement::Strict`] when something is not enforced.
    pub fn check(&self, enforcement: Enforcement) -> Result<(), SandboxError> {
        if enforcement == Enforcement::Strict && !self.not_enforced.is_empty() {
            return Err(SandboxError::Unenforceable(self.not_enforced.clone()));
        }
        Ok(())
    }

    /// Opens every rule's path and builds the Landlock ruleset (not yet applied). A grant or
    /// allowed command whose path does not exist is left out and reported in the returned
    /// list: nothing beneath a missing path can be reached anyway.
    pub fn landlock(&self) -> Result<(RulesetCreated, Vec<String>), SandboxError> {
        let abi = self.kernel.landlock_abi();
        let handled_fs = AccessFs::from_all(abi);
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(handled_fs)?;
        if self.kernel.abi >= 4 {
            ruleset = ruleset.handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)?;
        }
        if self.kernel.abi >= 6 {
            ruleset = ruleset.scope(Scope::AbstractUnixSocket | Scope::Signal)?;
        }
        let mut created = ruleset.create()?;
        let mut skipped = Vec::new();
        for rule in &self.files {
            let fd = match PathFd::new(&rule.path) {
                Ok(fd) => fd,
                // A granted path or command that is not on this machine grants nothing.
                Err(_)
                    if matches!(
                        rule.kind,
                        RuleKind::Grant(_) | RuleKind::Display | RuleKind::Execute
                    ) =>
                {
                    skipped.push(format!(
                        "{} {}: does not exist or cannot be opened; nothing is granted there",
                        rule.origin,
                        rule.path.display()
                    ));
                    continue;
                }
                Err(e) => {
                    return Err(SandboxError::RulePath {
                        path: rule.path.clone(),
                        source: std::io::Error::other(e.to_string()),
                    });
                }
            };
            let is_dir = std::fs::metadata(&rule.path).is_ok_and(|m| m.is_dir());
            let mut access = rule_access(rule.kind) & handled_fs;
            if !is_dir {
                access &= AccessFs::from_file(abi);
            }
            if access.is_empty() {
                continue;
            }
            created = created.add_rule(PathBeneath::new(fd, access))?;
        }
        if self.kernel.abi >= 4 {
            created = created.add_rule(NetPort::new(self.proxy_port, AccessNet::ConnectTcp))?;
        }
        Ok((created, skipped))
    }

    /// The seccomp filter: sockets only of the families the plan allows (TCP over IPv4/IPv6,
    /// netlink, and Unix only when display sockets are granted on a kernel that cannot tell
    /// them apart), no io_uring (which opens sockets without `socket(2)`) and no
    /// `execveat(2)` (which runs a memfd).
    pub fn seccomp(&self) -> Result<BpfProgram, SandboxError> {
        let unix_allowed = self.display == Display::Granted && self.kernel.abi < 9;
        socket_filter(unix_allowed)
    }
}

fn system_rule(s: SystemPath, origin: &str) -> FileRule {
    FileRule {
        path: s.path,
        kind: RuleKind::System(s.access),
        origin: origin.into(),
    }
}

fn rule_access(kind: RuleKind) -> BitFlags<AccessFs> {
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let write = AccessFs::WriteFile
        | AccessFs::Truncate
        | AccessFs::MakeReg
        | AccessFs::MakeDir
        | AccessFs::MakeSym
        | AccessFs::MakeFifo
        | AccessFs::RemoveFile
        | AccessFs::RemoveDir
        | AccessFs::Refer;
    match kind {
        RuleKind::Grant(FileMode::Read) => read,
        RuleKind::Grant(FileMode::Write) => write,
        RuleKind::Grant(FileMode::ReadWrite) => read | write,
        RuleKind::System(SystemAccess::ReadOnly) => read,
        RuleKind::System(SystemAccess::ReadWriteFiles) => {
            read | AccessFs::WriteFile | AccessFs::Truncate
        }
        RuleKind::Execute => AccessFs::Execute | AccessFs::ReadFile,
        RuleKind::Terminal => {
            AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev
        }
        RuleKind::Display => AccessFs::ReadFile | AccessFs::ResolveUnix,
    }
}

/// The ELF program interpreter (`PT_INTERP`, the dynamic loader) of `path`, if it is a
/// dynamically linked ELF file. Reads at most the headers and the interpreter's name.
pub fn program_interpreter(path: &Path) -> Option<PathBuf> {
    const PT_INTERP: u32 = 3;
    let mut f = File::open(path).ok()?;
    let mut eh = [0u8; 64];
    f.read_exact(&mut eh).ok()?;
    if &eh[..4] != b"\x7fELF" || eh[5] != 1 {
        return None; // not ELF, or not little-endian
    }
    let u16_at = |b: &[u8], o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |b: &[u8], o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |b: &[u8], o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
    let class64 = match eh[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let (phoff, phentsize, phnum) = if class64 {
        (u64_at(&eh, 32)?, u16_at(&eh, 54)?, u16_at(&eh, 56)?)
    } else {
        (
            u64::from(u32_at(&eh, 28)?),
            u16_at(&eh, 42)?,
            u16_at(&eh, 44)?,
        )
    };
    let min_ent = if class64 { 56 } else { 32 };
    if usize::from(phentsize) < min_ent || phnum > 256 {
        return None;
    }
    let mut ph = vec![0u8; usize::from(phentsize)];
    for i in 0..u64::from(phnum) {
        f.read_exact_at(&mut ph, phoff.checked_add(i * u64::from(phentsize))?)
            .ok()?;
        if u32_at(&ph, 0)? != PT_INTERP {
            continue;
        }
        let (off, size) = if class64 {
            (u64_at(&ph, 8)?, u64_at(&ph, 32)?)
        } else {
            (u64::from(u32_at(&ph, 4)?), u64::from(u32_at(&ph, 16)?))
        };
        if size == 0 || size > 4096 {
            return None;
        }
        let mut name = vec![0u8; usize::try_from(size).ok()?];
        f.read_exact_at(&mut name, off).ok()?;
        let name = name.strip_suffix(b"\0").unwrap_or(&name);
        let s = std::str::from_utf8(name).ok()?;
        return s.starts_with('/').then(|| PathBuf::from(s));
    }
    None
}

fn socket_filter(unix_allowed: bool) -> Result<BpfProgram, SandboxError> {
    const AF_UNIX: u64 = 1;
    const AF_INET: u64 = 2;
    const AF_INET6: u64 = 10;
    const AF_NETLINK: u64 = 16;
    const SOCK_STREAM: u64 = 1;
    const IPPROTO_TCP: u64 = 6;
    let arch = target_arch();
    let dword = |arg: u8, op: SeccompCmpOp, v: u64| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, v)
    };
    // Each rule describes sockets that are refused; anything no rule matches is allowed.
    let mut other_family = vec![
        dword(0, SeccompCmpOp::Ne, AF_INET)?,
        dword(0, SeccompCmpOp::Ne, AF_INET6)?,
        dword(0, SeccompCmpOp::Ne, AF_NETLINK)?,
    ];
    if unix_allowed {
        other_family.push(dword(0, SeccompCmpOp::Ne, AF_UNIX)?);
    }
    let mut socket_rules = vec![SeccompRule::new(other_family)?];
    for family in [AF_INET, AF_INET6] {
        // Only TCP: Landlock's network rules see TCP alone, so UDP, SCTP, MPTCP and raw
        // sockets would pass them. The type's low nibble is the kind (the flags above it are
        // free); the protocol must be 0 or TCP.
        for kind in (0..16u64).filter(|k| *k != SOCK_STREAM) {
            socket_rules.push(SeccompRule::new(vec![
                dword(0, SeccompCmpOp::Eq, family)?,
                dword(1, SeccompCmpOp::MaskedEq(0xf), kind)?,
            ])?);
        }
        socket_rules.push(SeccompRule::new(vec![
            dword(0, SeccompCmpOp::Eq, family)?,
            dword(2, SeccompCmpOp::Ne, 0)?,
            dword(2, SeccompCmpOp::Ne, IPPROTO_TCP)?,
        ])?);
    }
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &n in nr::SOCKET {
        rules.insert(n, socket_rules.clone());
    }
    // An empty rule list refuses every call: io_uring opens sockets without socket(2), and
    // execveat(2) on a memfd would run code from no file at all (Landlock sees no path).
    for &n in nr::IO_URING_SETUP.iter().chain(nr::EXECVEAT) {
        rules.insert(n, vec![]);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(13), // EACCES, as Landlock answers
        arch,
    )?;
    Ok(filter.try_into()?)
}

/// System call numbers. On x86_64 the x32 ABI shares the audit architecture, with bit 30 set
/// in its numbers (and its own number for execveat), so both numberings are listed.
#[cfg(target_arch = "x86_64")]
mod nr {
    const X32: i64 = 0x4000_0000;
    pub const SOCKET: &[i64] = &[41, X32 | 41];
    pub const IO_URING_SETUP: &[i64] = &[425, X32 | 425];
    pub const EXECVEAT: &[i64] = &[322, X32 | 545];
}
#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
mod nr {
    pub const SOCKET: &[i64] = &[198];
    pub const IO_URING_SETUP: &[i64] = &[425];
    pub const EXECVEAT: &[i64] = &[281];
}

#[cfg(target_arch = "x86_64")]
fn target_arch() -> TargetArch {
    TargetArch::x86_64
}
#[cfg(target_arch = "aarch64")]
fn target_arch() -> TargetArch {
    TargetArch::aarch64
}
#[cfg(target_arch = "riscv64")]
fn target_arch() -> TargetArch {
    TargetArch::riscv64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_paths_file() {
        let s = SystemPaths::parse("# comment\n\nro /usr\nrw  /dev/null\n").unwrap();
        assert_eq!(
            s,
            SystemPaths::Custom(vec![
                SystemPath {
                    path: "/usr".into(),
                    access: SystemAccess::ReadOnly
                },
                SystemPath {
                    path: "/dev/null".into(),
                    access: SystemAccess::ReadWriteFiles
                },
            ])
        );
        for bad in ["/usr", "rx /usr", "ro usr"] {
            assert!(matches!(
                SystemPaths::parse(bad),
                Err(SandboxError::SystemPaths { line: 1, .. })
            ));
        }
    }

    #[test]
    fn interpreter_of_a_dynamic_binary() {
        // /bin/sh is dynamically linked on every distribution CI uses.
        let interp = program_interpreter(Path::new("/bin/sh")).expect("an interpreter");
        assert!(interp.is_absolute() && interp.exists(), "{interp:?}");
        assert_eq!(program_interpreter(Path::new("/etc/passwd")), None);
    }

    #[test]
    fn older_kernels_name_what_they_cannot_enforce() {
        let caps = Capabilities::default();
        let input = |system| PlanInput {
            caps: &caps,
            system,
            proxy_port: 1,
            interactive: false,
            display_files: &[],
        };
        let plan = Plan::new(Kernel { abi: 3 }, input(&SystemPaths::None)).unwrap();
        assert_eq!(plan.not_enforced.len(), 3, "{:?}", plan.not_enforced);
        assert!(plan.not_enforced[0].contains("TCP connect and bind rules needs Landlock ABI 4"));
        assert!(plan.not_enforced[0].contains("(this kernel has Landlock ABI 3)"));
        assert!(matches!(
            plan.check(Enforcement::Strict),
            Err(SandboxError::Unenforceable(v)) if v.len() == 3
        ));
        assert!(plan.check(Enforcement::BestEffort).is_ok());
        let plan = Plan::new(Kernel { abi: 0 }, input(&SystemPaths::None)).unwrap();
        assert!(plan.not_enforced[0].contains("(this kernel has no Landlock)"));
        let plan = Plan::new(Kernel { abi: 6 }, input(&SystemPaths::None)).unwrap();
        assert!(plan.not_enforced.is_empty());
        let clip = Capabilities {
            clipboard: true,
            ..Capabilities::default()
        };
        let plan = Plan::new(
            Kernel { abi: 7 },
            PlanInput {
                caps: &clip,
                ..input(&SystemPaths::None)
            },
        )
        .unwrap();
        assert_eq!(plan.not_enforced.len(), 1);
        assert!(plan.not_enforced[0].contains("needs Landlock ABI 9"));
    }

    #[test]
    fn the_probe_names_this_kernel() {
        let k = Kernel::probe();
        assert_eq!(k.landlock_abi(), ABI::from(i32::from(k.abi)));
        assert_eq!(abi_number(ABI::V7), 7);
        assert_eq!(abi_number(ABI::Unsupported), 0);
    }

    #[test]
    fn the_socket_filter_compiles() {
        assert!(!socket_filter(false).unwrap().is_empty());
        assert!(!socket_filter(true).unwrap().is_empty());
    }
}
