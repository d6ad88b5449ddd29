//! `ekey`: the command-line client of ekey. This file only wires: arguments →
//! runtime → command → exit status.

#![forbid(unsafe_code)]

mod args;
mod cmd;
mod error;
mod input;
mod oauth;
mod output;
mod timefmt;
mod transport;

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ekey: cannot start the async runtime: {e}");
            return ExitCode::from(error::EXIT_UNAVAILABLE);
        }
    };
    match runtime.block_on(cmd::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ekey: {e}");
            ExitCode::from(&e)
        }
    }
}
