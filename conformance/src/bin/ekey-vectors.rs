//! Regenerates the conformance vectors:
//!
//! ```text
//! cargo run -p ekey-conformance --bin ekey-vectors -- --out conformance/vectors
//! ```

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Writes conformance/vectors/*.json from the TEST-ONLY keys in <out>/keys/.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Directory of the vector files (keys are read from, or created in, <out>/keys/).
    #[arg(long, default_value = "conformance/vectors")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match ekey_conformance::generate::write(&args.out) {
        Ok(summary) => {
            let total: usize = summary.files.iter().map(|(_, n)| n).sum();
            for (path, n) in &summary.files {
                println!("{n:4} cases  {}", path.display());
            }
            for path in &summary.removed {
                println!("removed      {}", path.display());
            }
            println!("{total:4} cases in all; per check:");
            for (check, n) in &summary.checks {
                println!("  {n:4}  {check}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ekey-vectors: {e}");
            ExitCode::FAILURE
        }
    }
}
