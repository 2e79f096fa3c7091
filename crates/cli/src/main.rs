//! `ec2-scheduler`: the command line. Parses arguments, calls the application layer
//! (`ec2-scheduler-app`) once per command and renders the result; exit codes in
//! [`error::CliError::exit_code`].

mod cli;
mod demo;
mod error;
mod progress;
mod render;
mod term;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
