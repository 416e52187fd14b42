//! `completions`: the shell completion script for `pluvo-warehouse`, generated from the clap
//! definition in `cli/mod.rs` by `clap_complete` (so it never drifts from the real commands).

use anyhow::Result;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;
use crate::error::Exit;

/// Arguments of `completions`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Install, e.g.:
  bash: pluvo-warehouse completions bash > ~/.local/share/bash-completion/completions/pluvo-warehouse
  zsh:  pluvo-warehouse completions zsh > ~/.zfunc/_pluvo-warehouse   (with fpath+=~/.zfunc)
  fish: pluvo-warehouse completions fish > ~/.config/fish/completions/pluvo-warehouse.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Write the script for `args.shell` to `out`.
pub fn write(args: &CompletionsArgs, out: &mut impl std::io::Write) {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "pluvo-warehouse", out);
}

/// `completions`: print the script on stdout.
pub fn run(args: &CompletionsArgs) -> Result<Exit> {
    write(args, &mut std::io::stdout().lock());
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_complete_every_command() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            write(&CompletionsArgs { shell }, &mut out);
            let text = String::from_utf8(out).unwrap();
            for command in ["sync", "status", "doctor", "init", "completions"] {
                assert!(text.contains(command), "{shell:?} script lacks `{command}`");
            }
        }
    }
}
