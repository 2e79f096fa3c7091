//! `ec2-scheduler`: the command line. Parses arguments and hands over to the library
//! crates; exit codes: 0 ok, 1 invalid input (or a failure
//! to reach the store or cloud), 2 usage, 3 a run that did not succeed.

mod cli;
mod demo;
mod files;
mod ops;
mod progress;
mod render;
mod term;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
