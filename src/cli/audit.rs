//! `sqlgate audit …`: offline tools over attested audit logs.
//!
//! `verify` and `pubkey` live here; `search`, `export` and `report` are
//! routed to [`super::audit_tools`].

use super::audit_tools::{ExportArgs, ReportArgs, SearchArgs};
use crate::audit::sign::{PublicKey, SigningKey};
use crate::audit::verify::{verify_files, Options};
use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum Command {
    /// Check the hash chain and the signed checkpoints of a log.
    Verify {
        /// The log's files (the live file and rotated ones, in any order).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// A trusted public key, `ed25519:<base64>` (repeatable; see `audit pubkey`).
        #[arg(long = "public-key")]
        public_key: Vec<String>,
        /// Accept records after the last checkpoint (a log still being written).
        #[arg(long)]
        allow_open: bool,
        /// The log's anchor file (`[audit] anchor`): fails when the log ends
        /// before the anchor's latest checkpoint or disagrees with it.
        #[arg(long)]
        anchor: Option<PathBuf>,
    },
    /// Print the public key of the configured signing key.
    Pubkey {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Find records by agent, time, class, action or outcome.
    Search(SearchArgs),
    /// Export records as JSON lines or CSV.
    Export(ExportArgs),
    /// Write an evidence report (HTML).
    Report(ReportArgs),
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Verify {
            files,
            public_key,
            allow_open,
            anchor,
        } => verify(files, public_key, allow_open, anchor),
        Command::Pubkey { config } => pubkey(config),
        Command::Search(args) => super::audit_tools::search(args),
        Command::Export(args) => super::audit_tools::export(args),
        Command::Report(args) => super::audit_tools::report(args),
    }
}

fn verify(
    files: Vec<PathBuf>,
    public_key: Vec<String>,
    allow_open: bool,
    anchor: Option<PathBuf>,
) -> anyhow::Result<()> {
    let keys = public_key
        .iter()
        .map(|k| PublicKey::parse(k))
        .collect::<Result<Vec<_>, _>>()?;
    let anchor = match &anchor {
        Some(a) => crate::audit::anchor::load(a)
            .map_err(|e| anyhow::anyhow!("audit verify: failed: {e}"))?,
        None => Default::default(),
    };
    let anchored = anchor.last_key_value().map(|(s, _)| *s);
    let opts = Options {
        keys,
        allow_open,
        anchor,
    };
    let s = verify_files(&files, &opts).map_err(|f| match f.problem.seq() {
        Some(seq) => anyhow::anyhow!("audit verify: failed at seq {seq}: {f}"),
        None => anyhow::anyhow!("audit verify: failed: {f}"),
    })?;
    for w in &s.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "ok: {} records in {} file(s), seq {}..{}, {} .. {}",
        s.records, s.files, s.first_seq, s.last_seq, s.first_time, s.last_time
    );
    println!("checkpoints: {}", s.checkpoints);
    for (key, n) in &s.signers {
        println!("signed by key {key}: {n} checkpoint(s)");
    }
    println!(
        "runs: {} ({} start(s), {} recovery(ies) after a crash)",
        s.starts + s.recoveries,
        s.starts,
        s.recoveries
    );
    if s.recoveries > 0 {
        println!(
            "recoveries after a crash: {} ({} partial bytes cut)",
            s.recoveries, s.truncated_bytes
        );
    }
    if let Some((from, to)) = s.open_tail {
        println!("open: records {from}..{to} are not yet covered by a checkpoint");
    }
    match anchored {
        Some(seq) if seq < s.last_seq => {
            println!("anchor: the log reaches the anchor's latest checkpoint (record {seq})");
            // Nothing outside the log vouches for what follows: a cut back
            // to a clean close among these records would look like this.
            println!(
                "warning: records {}..{} are past the anchor's latest line: no anchor shows the log did not go on after them",
                seq + 1,
                s.last_seq
            );
        }
        Some(seq) => {
            println!("anchor: the log reaches the anchor's latest checkpoint (record {seq})")
        }
        None => {
            println!("anchor: none given (a log cut at a checkpoint is not detectable without one)")
        }
    }
    Ok(())
}

fn pubkey(config: PathBuf) -> anyhow::Result<()> {
    let cfg = crate::config::Config::load(&config)
        .with_context(|| format!("cannot load `{}`", config.display()))?;
    let key = SigningKey::load(&cfg.audit.key)?;
    println!("{}", key.public().to_text());
    Ok(())
}
