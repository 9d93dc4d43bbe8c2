//! Writes pwru's man page (pwru.8) and its bash, zsh and fish completions, generated from
//! the clap definition of the command line so that they can never drift from `--help`.
//!
//! ```text
//! man_and_completions OUT_DIR [--date YYYY-MM-DD]
//! ```
//!
//! writes `OUT_DIR/pwru.8` and `OUT_DIR/completions/{pwru.bash,_pwru,pwru.fish}`; the
//! date goes into the man page's title line (scripts/dist.sh passes the day of
//! SOURCE_DATE_EPOCH, so the page is reproducible; without `--date` the line has none).
//! It is an example, not a binary of the package, so that clap_mangen and clap_complete
//! stay dev-dependencies: `cargo install` and the shipped `pwru` do not build them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Command;
use clap_complete::{Generator, Shell};
use clap_mangen::roff::{roman, Roff};
use clap_mangen::Man;

/// The only place this generator names the command line's definition.
fn pwru_command() -> Command {
    pwru::cli::command()
}

/// Section 8: pwru is a system administration tool that needs root.
const MAN_SECTION: &str = "8";

const USAGE: &str = "usage: man_and_completions OUT_DIR [--date YYYY-MM-DD]";

struct Request {
    out_dir: PathBuf,
    date: Option<String>,
}

fn main() -> ExitCode {
    let request = match parse_args(std::env::args().skip(1)) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("man_and_completions: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match write_all(&request) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("man_and_completions: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Request> {
    let mut out_dir = None;
    let mut date = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--date" => {
                let value = args.next().context("--date needs a value (YYYY-MM-DD)")?;
                if !is_iso_date(&value) {
                    bail!("--date {value}: not a date in the form YYYY-MM-DD");
                }
                date = Some(value);
            }
            "-h" | "--help" => bail!("writes pwru.8 and completions/ into OUT_DIR"),
            _ if arg.starts_with('-') => bail!("unknown option {arg}"),
            _ if out_dir.is_some() => bail!("one OUT_DIR only (got a second: {arg})"),
            _ => out_dir = Some(PathBuf::from(arg)),
        }
    }
    let out_dir = out_dir.context("missing OUT_DIR")?;
    Ok(Request { out_dir, date })
}

fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

fn write_all(request: &Request) -> Result<()> {
    let completions = request.out_dir.join("completions");
    fs::create_dir_all(&completions)
        .with_context(|| format!("creating {}", completions.display()))?;
    let man_path = request.out_dir.join(format!("pwru.{MAN_SECTION}"));
    write_file(
        &man_path,
        &man_page(pwru_command(), request.date.as_deref())?,
    )?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut pwru_command(), "pwru", &mut script);
        write_file(&completions.join(shell.file_name("pwru")), &script)?;
    }
    Ok(())
}

fn write_file(path: &Path, contents: &[u8]) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// clap_mangen's page, except that the text after the options (`after_long_help`, whose
/// first line is a heading such as "Examples:") becomes its own section with its line
/// breaks kept, followed by SEE ALSO.
fn man_page(cmd: Command, date: Option<&str>) -> Result<Vec<u8>> {
    let after_help = cmd.get_after_long_help().map(|text| text.to_string());
    let mut man = Man::new(cmd).section(MAN_SECTION);
    if let Some(date) = date {
        man = man.date(date);
    }
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    let mut extra = Roff::new();
    if let Some(text) = after_help {
        let (heading, body) = split_heading(&text);
        extra.control("SH", [heading.to_uppercase().as_str()]);
        extra.control("nf", []);
        for line in body.lines() {
            extra.text([roman(line)]);
        }
        extra.control("fi", []);
    }
    extra.control("SH", ["SEE ALSO"]);
    extra.text([roman("pcap-filter(7), tcpdump(8), bpftool(8)")]);
    // to_writer, not to_roff: it writes apostrophes as \*(Aq, so that the examples can
    // be copied from the rendered page (a bare ' becomes a typographic quote).
    extra.to_writer(&mut page)?;
    man.render_version_section(&mut page)?;
    Ok(page)
}

/// "Examples:\n  ..." -> ("Examples", "  ..."); text without a heading line is "NOTES".
fn split_heading(text: &str) -> (&str, &str) {
    match text.split_once('\n') {
        Some((first, rest)) if first.ends_with(':') && !first.starts_with(' ') => {
            (first.trim_end_matches(':'), rest)
        }
        _ => ("Notes", text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heading_line_becomes_the_section_name() {
        assert_eq!(
            split_heading("Examples:\n  pwru icmp"),
            ("Examples", "  pwru icmp")
        );
        assert_eq!(split_heading("  pwru icmp\n"), ("Notes", "  pwru icmp\n"));
    }

    #[test]
    fn dates_are_checked() {
        assert!(is_iso_date("2026-05-01"));
        assert!(!is_iso_date("2026-5-01"));
        assert!(!is_iso_date("yesterday!"));
    }

    #[test]
    fn man_page_keeps_every_visible_flag_and_the_examples() {
        let page = String::from_utf8(man_page(pwru_command(), Some("2026-01-02")).unwrap())
            .expect("roff is UTF-8");
        assert!(page.starts_with(".ie \\n(.g .ds Aq"), "roff preamble first");
        assert!(
            page.contains("\n.TH pwru 8 2026-01-02 "),
            "title line: {page:.300}"
        );
        assert!(
            page.contains("  pwru \\-\\-output\\-meta=false udp\n"),
            "examples keep their lines"
        );
        assert!(!page.contains("'udp"), "apostrophes are written as \\*(Aq");
        assert!(page.contains(".SH EXAMPLES\n.nf\n"));
        assert!(page.contains(".SH \"SEE ALSO\"\n"));
        for arg in pwru_command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let spelled = format!("\\-\\-{}", long.replace('-', "\\-"));
            assert_eq!(
                page.contains(&spelled),
                !arg.is_hide_set(),
                "--{long} is in the page exactly when --help shows it"
            );
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let args = |v: &[&str]| parse_args(v.iter().map(|s| s.to_string()));
        assert!(args(&[]).is_err());
        assert!(args(&["a", "b"]).is_err());
        assert!(args(&["out", "--date"]).is_err());
        assert!(args(&["out", "--date", "soon"]).is_err());
        assert!(args(&["--frobnicate", "out"]).is_err());
        let ok = args(&["out", "--date", "2026-01-02"]).unwrap();
        assert_eq!(ok.out_dir, PathBuf::from("out"));
        assert_eq!(ok.date.as_deref(), Some("2026-01-02"));
    }
}
