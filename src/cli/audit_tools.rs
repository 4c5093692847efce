//! `sqlgate audit search|export|report`: reading attested logs for people.
//!
//! Placeholders: the commands' arguments are fixed here so `src/cli/audit.rs`
//! can route to them; the implementations land separately.

use anyhow::bail;
use std::path::PathBuf;

/// `sqlgate audit search`: records matching every filter given.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// Log files (rotated files in any order).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long)]
    pub agent: Option<String>,
    /// RFC 3339 time or date.
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    /// A statement class (e.g. `ddl`).
    #[arg(long)]
    pub class: Option<String>,
    /// allow, deny or require_approval.
    #[arg(long)]
    pub action: Option<String>,
    /// ok, denied, error or not_executed.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Print matching records as JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// `sqlgate audit export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// jsonl or csv.
    #[arg(long, default_value = "jsonl")]
    pub format: String,
}

/// `sqlgate audit report`: an HTML evidence report.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    /// Where to write the report (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Trusted public keys for the verification section (repeatable).
    #[arg(long = "public-key")]
    pub public_key: Vec<String>,
}

pub fn search(_args: SearchArgs) -> anyhow::Result<()> {
    bail!("audit search: not yet")
}

pub fn export(_args: ExportArgs) -> anyhow::Result<()> {
    bail!("audit export: not yet")
}

pub fn report(_args: ReportArgs) -> anyhow::Result<()> {
    bail!("audit report: not yet")
}
