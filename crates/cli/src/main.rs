//! `ec2-scheduler`: the command line. Parses arguments and hands over to the library
//! crates; exit codes: 0 ok, 1 invalid input, 2 usage.

mod cli;
mod render;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
