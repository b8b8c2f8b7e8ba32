//! Man pages and shell completions, generated from the clap definition so
//! they cannot drift from `--help` (`make install` writes them).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;

/// `kmm-day1 completions <shell>`: the script on stdout.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) -> Result<()> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "kmm-day1", &mut script);
    let mut script = String::from_utf8(script).context("clap_complete wrote non-UTF-8")?;
    if shell == clap_complete::Shell::Bash {
        // clap_complete 4.6 names the state of a subcommand of a binary with
        // a `-` in its name two ways (`kmm__day1__subcmd__generate` where it
        // walks the words, `kmm__subcmd__day1__subcmd__generate` in the case
        // that offers options), so no subcommand's options would complete.
        // The test `completions_parse_in_their_shells` completes one.
        script = script.replace("kmm__subcmd__day1", "kmm__day1");
    }
    out.write_all(script.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the completion script")
}

/// `kmm-day1 manpages DIR`: `kmm-day1.1` and one page per visible
/// subcommand (`kmm-day1-generate.1`, …), each written atomically.
pub fn manpages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = Cli::command().name("kmm-day1");
    let mut pages = vec![("kmm-day1", cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // clap names are `&'static str` without its `string` feature; a
        // handful of page names leaked once, in a run that then exits.
        let name: &'static str = Box::leak(format!("kmm-day1-{}", sub.get_name()).into_boxed_str());
        // The page's NAME and SYNOPSIS show the full command.
        let sub = sub
            .clone()
            .name(name)
            .bin_name(format!("kmm-day1 {}", sub.get_name()));
        pages.push((name, sub));
    }
    for (name, cmd) in pages {
        let mut roff = Vec::new();
        clap_mangen::Man::new(cmd)
            .section("1")
            .manual("kmm-day1")
            .render(&mut roff)
            .with_context(|| format!("rendering {name}.1"))?;
        let roff = String::from_utf8(roff).context("clap_mangen wrote non-UTF-8 roff")?;
        crate::write::emit(&roff, Some(&dir.join(format!("{name}.1"))))?;
    }
    Ok(())
}
