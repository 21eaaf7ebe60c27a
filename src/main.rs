#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The SIP operator: carves tenant clusters out of metal3 BareMetalHosts.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the SIPCluster CRD as YAML, or write every CRD the project ships into a directory.
    Crd {
        /// Write `crd/`-style files into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        write: Option<PathBuf>,
    },
    /// Print the SIPCluster state machine as Mermaid, or write Mermaid and DOT files.
    Diagrams {
        /// Write `state-diagrams/`-style files into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        write: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { write: Some(dir) } => match sip::crdgen::write_all(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sip crd: writing {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
        Command::Diagrams { write: Some(dir) } => match sip::machine::diagram::write_all(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sip diagrams: writing {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
        Command::Diagrams { write: None } => {
            print!("{}", sip::machine::diagram::mermaid());
            ExitCode::SUCCESS
        }
        Command::Crd { write: None } => {
            let crd = sip::crdgen::files().remove(0).crd;
            match sip::crdgen::render(&crd) {
                Ok(yaml) => {
                    print!("{yaml}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sip crd: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
