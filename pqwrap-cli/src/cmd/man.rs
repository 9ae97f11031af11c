//! `pqwrap man`: manual pages (roff) generated from the clap definition, one per command and
//! subcommand (`pqwrap.1`, `pqwrap-rewrap.1`, `pqwrap-token-issue.1`, …).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::exit::Status;

/// Print a manual page, or write every page into a directory.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    pqwrap man | man -l -                  the pqwrap(1) page\n  \
    pqwrap man token issue | man -l -      the pqwrap-token-issue(1) page\n  \
    pqwrap man --dir /usr/local/share/man/man1")]
pub struct Args {
    /// Write every page, one file per command, into DIR (created if missing), and print
    /// the path of each file written.
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    dir: Option<PathBuf>,

    /// The (sub)command whose page to print (default: pqwrap itself).
    #[arg(value_name = "COMMAND")]
    command: Vec<String>,
}

/// Runs `pqwrap man`.
pub fn run(args: Args) -> Result<Status> {
    let root = root_command();
    match &args.dir {
        Some(dir) => write_all(&root, dir),
        None => print_one(&root, &args.command),
    }
}

/// The command tree as the pages show it: built (so that each subcommand knows its full
/// name), without clap's `help` subcommand, which has no page of its own.
fn root_command() -> clap::Command {
    let mut cmd = crate::Cli::command()
        .disable_help_subcommand(true)
        // The backend list of `--version` is a table; a page's VERSION section is one
        // paragraph, so it gets the plain version.
        .long_version(None);
    cmd.build();
    cmd
}

/// Every command that gets a page: `cmd` and its visible subcommands, depth first.
fn pages(cmd: &clap::Command, out: &mut Vec<clap::Command>) {
    out.push(cmd.clone());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub, out);
    }
}

fn render(cmd: clap::Command) -> Result<(String, Vec<u8>)> {
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut page)
        .with_context(|| format!("cannot render the page for {name}"))?;
    let page = String::from_utf8(page).context("clap_mangen wrote a page that is not UTF-8")?;
    // clap_mangen writes an empty date as nothing at all, which shifts the source and manual
    // names into the wrong `.TH` fields; an explicit "" keeps the page date-free, so the
    // same binary always writes the same bytes.
    let title = format!(
        ".TH {} 1 \"\" \"pqwrap {}\" \"pqwrap manual\"",
        name.to_uppercase(),
        env!("CARGO_PKG_VERSION")
    );
    let page: String = page
        .lines()
        .map(|l| {
            if l.starts_with(".TH ") {
                title.as_str()
            } else {
                l
            }
        })
        .flat_map(|l| [l, "\n"])
        .collect();
    Ok((name, portable_roff(&page).into_bytes()))
}

/// groff renders a page in the reader's locale, and under `LANG=C` (the ASCII device) it
/// warns about every character that device lacks. The help texts use a few typographic
/// characters; these become the groff escapes that every output device can draw.
fn portable_roff(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    for c in page.chars() {
        match c {
            '…' => out.push_str("..."),
            '—' => out.push_str("\\(em"),
            '–' => out.push_str("\\(en"),
            '‘' => out.push_str("\\(oq"),
            '’' => out.push_str("\\(cq"),
            '“' => out.push_str("\\(lq"),
            '”' => out.push_str("\\(rq"),
            '×' => out.push_str("\\(mu"),
            '≤' => out.push_str("\\(<="),
            '≥' => out.push_str("\\(>="),
            '→' => out.push_str("\\(->"),
            c => out.push(c),
        }
    }
    out
}

fn write_all(root: &clap::Command, dir: &Path) -> Result<Status> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    let mut all = Vec::new();
    pages(root, &mut all);
    let mut out = std::io::stdout().lock();
    for cmd in all {
        let (name, page) = render(cmd)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, page)
            .with_context(|| format!("cannot write the page {}", path.display()))?;
        writeln!(out, "{}", path.display())?;
    }
    Ok(Status::Success)
}

fn print_one(root: &clap::Command, path: &[String]) -> Result<Status> {
    let mut cmd = root;
    for (i, word) in path.iter().enumerate() {
        match cmd
            .get_subcommands()
            .find(|s| !s.is_hide_set() && s.get_name() == word)
        {
            Some(sub) => cmd = sub,
            None => {
                let parent = std::iter::once("pqwrap")
                    .chain(path[..i].iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(" ");
                eprintln!(
                    "pqwrap: error: `{parent}` has no subcommand `{word}`; try `{parent} --help`"
                );
                return Ok(Status::Usage);
            }
        }
    }
    let (_, page) = render(cmd.clone())?;
    let mut out = std::io::stdout().lock();
    out.write_all(&page)
        .and_then(|()| out.flush())
        .context("cannot write the page to standard output")?;
    Ok(Status::Success)
}
