//! The `sqlgate` command: serve, explain, rules check, approvals, audit.

use anyhow::Context;
use clap::{Parser, Subcommand};
use sqlgate::classify::{Classifier, ClassifierOptions, Dialect};
use sqlgate::config::Config;
use sqlgate::policy::{Identity, Policy};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "sqlgate",
    version,
    about = "A database wire-protocol firewall for AI agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show how the rules decide a statement, as JSON.
    Explain {
        /// Rule files or folders (repeatable).
        #[arg(long = "rules", required = true)]
        rules: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "postgres")]
        dialect: DialectArg,
        /// The agent the statement is decided for.
        #[arg(long)]
        agent: Option<String>,
        /// Groups of that agent (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// The SQL, or `-` to read it from standard input. It may start
        /// with `-` (a `--` comment), as statements often do.
        #[arg(allow_hyphen_values = true)]
        sql: String,
    },
    /// Decide held statements through a running sqlgate's admin API.
    Approvals {
        /// The admin API, e.g. http://127.0.0.1:9187
        #[arg(long, env = "SQLGATE_ADMIN", global = true)]
        admin: Option<String>,
        /// Your approver token.
        #[arg(long, env = "SQLGATE_TOKEN", global = true, hide_env_values = true)]
        token: Option<String>,
        #[command(subcommand)]
        command: sqlgate::cli::approvals::Command,
    },
    /// Verify, inspect and export attested audit logs.
    Audit {
        #[command(subcommand)]
        command: sqlgate::cli::audit::Command,
    },
    /// Validate rule files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Check rule files and folders; print every problem with file and line.
    Check { paths: Vec<PathBuf> },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DialectArg {
    Postgres,
    Mysql,
}

/// A command's output piped into a reader that stops early (`sqlgate
/// audit verify … | head`): `println!` panics on the closed pipe; end
/// quietly instead, as a shell tool does (the status a SIGPIPE gives).
/// Written here because std offers no safe way to restore SIGPIPE.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info)
    }));
}

fn main() -> ExitCode {
    // One crypto provider for every TLS user in the process (rustls, reqwest).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        quiet_broken_pipe();
    }
    let result = match cli.command {
        Command::Serve { config } => serve(config),
        Command::Explain {
            rules,
            dialect,
            agent,
            groups,
            sql,
        } => read_sql(sql).and_then(|sql| explain(rules, dialect, agent, groups, &sql)),
        Command::Approvals {
            admin,
            token,
            command,
        } => sqlgate::cli::approvals::run(admin, token, command),
        Command::Audit { command } => sqlgate::cli::audit::run(command),
        Command::Rules {
            command: RulesCommand::Check { paths },
        } => return rules_check(paths),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sqlgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: PathBuf) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SQLGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = Config::load(&config)?;
    let policy = Policy::load(&cfg.rules).map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(rules = policy.rule_count(), digest = %policy.digest(), "rules loaded");
    if let Some((guard, rule)) = policy.guard_quorum_below_destructive() {
        tracing::warn!(
            "[guard] approvals need {guard} approver(s), a rule for destructive statements {rule}: a DELETE or UPDATE whose WHERE matches every row is held by the guard, with its quorum; raise [guard] quorum to {rule} to hold such statements to the same"
        );
    }
    // The configuration this run starts with is signed before any statement.
    let loaded = sqlgate::audit::AuditLog::config_loaded(
        &std::fs::read(&config).unwrap_or_default(),
        &policy.digest(),
        policy.rule_count(),
    );
    let (audit, writer) = sqlgate::audit::AuditLog::open_with(&cfg.audit, vec![loaded])
        .with_context(|| format!("cannot open the audit log `{}`", cfg.audit.path.display()))?;
    let engine = Arc::new(
        sqlgate::engine::Engine::new(&cfg, policy, audit).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    // Sessions run on their own threads (see proxy/workers.rs); this runtime
    // accepts connections and runs the admin API and the approval channels.
    let workers = Arc::new(sqlgate::proxy::workers::Workers::start(
        sqlgate::proxy::workers::default_count(),
    )?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("sqlgate")
        .build()?;
    let metrics = sqlgate::admin::install_metrics()?;
    let result = rt.block_on(async {
        // Signal handlers first: once a port accepts, SIGTERM must drain, not kill.
        let signals = Signals::install()?;
        if cfg.audit.anchor_required {
            // The checkpoint covers this run's opening records: once the
            // anchor holds it, a cut of the log back past this start shows
            // (`audit verify --anchor`), whatever the anchor sees later.
            use sqlgate::audit::CheckpointError;
            match engine.audit.checkpoint_sync().await {
                Ok(()) => tracing::info!("the audit anchor took this run's opening checkpoint"),
                Err(CheckpointError::NotAnchored) => anyhow::bail!(
                    "the audit anchor did not take this run's opening checkpoint, and `[audit] anchor_required` is set: not serving (is the anchor reachable?)"
                ),
                Err(CheckpointError::WriterGone) => anyhow::bail!("the audit log's writer stopped"),
            }
        }
        let sockets = sqlgate::proxy::bind(&cfg).await?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        if let Some(addr) = cfg.admin_listen {
            let socket = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (admin)"))?;
            tracing::info!(listen = %addr, "admin API ready");
            tokio::spawn(sqlgate::admin::serve(
                socket,
                engine.audit.clone(),
                engine.catalogs(),
                engine.approvals.clone(),
                cfg.channels.clone(),
                metrics,
                rx.clone(),
            ));
        }
        sqlgate::approval::channels::start(&cfg.channels, &engine.approvals);
        tokio::spawn(async move {
            signals.wait().await;
            let _ = tx.send(true);
        });
        sqlgate::proxy::serve(&cfg, engine, sockets, workers.clone(), rx).await
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    workers.stop();
    // Every sender is gone once the runtime is: the writer flushes and fsyncs.
    writer.close().context("closing the audit log")?;
    tracing::info!("stopped");
    result
}

/// SIGTERM and SIGINT, registered up front.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// The statement text `explain` decides: the argument, or standard input for `-`.
fn read_sql(arg: String) -> anyhow::Result<String> {
    if arg != "-" {
        return Ok(arg);
    }
    let mut sql = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut sql)
        .map_err(|e| anyhow::anyhow!("reading SQL from standard input: {e}"))?;
    Ok(sql)
}

fn explain(
    rules: Vec<PathBuf>,
    dialect: DialectArg,
    agent: Option<String>,
    groups: Vec<String>,
    sql: &str,
) -> anyhow::Result<()> {
    let policy = Policy::load(&rules).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dialect = match dialect {
        DialectArg::Postgres => Dialect::Postgres,
        DialectArg::Mysql => Dialect::Mysql,
    };
    let classifier = Classifier::new(dialect, ClassifierOptions::default());
    let who = Identity {
        agent: agent.unwrap_or_else(|| "anonymous".into()),
        groups,
    };
    let analysis = classifier.classify(sql);
    let statements: Vec<_> = analysis
        .statements
        .iter()
        .map(|s| (s, policy.decide(&who, s)))
        .collect();
    // The string as a whole: the first statement that is not allowed decides
    // (none of the string runs), else the first statement.
    let lead = statements
        .iter()
        .find(|(_, v)| v.action != sqlgate::policy::Action::Allow)
        .or(statements.first());
    let plans = mask_plans(&policy, &who, dialect, sql, &analysis);
    let per: Vec<_> = statements
        .iter()
        .zip(plans)
        .map(|((s, v), plan)| {
            serde_json::json!({
                "command": s.command, "fingerprint": s.fingerprint, "classes": s.classes,
                "tables": s.tables, "action": v.action, "rule": &*v.rule, "reason": &*v.reason,
                "note": s.note, "mask_plan": plan,
            })
        })
        .collect();
    let out = match lead {
        Some((s, v)) => serde_json::json!({
            "action": v.action, "rule": &*v.rule, "reason": &*v.reason,
            "classes": s.classes, "tables": s.tables, "statements": per,
        }),
        None => serde_json::json!({
            "action": "allow", "rule": null, "reason": "the string holds no statement",
            "classes": [], "tables": [], "statements": per,
        }),
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Each statement's mask plan for `explain`: `null` when no mask applies
/// to it, else the result columns masked (1-based, with the masked column
/// and mask) or why it is refused. Read without the catalog: a `*` over a
/// table with masked columns is refused (the columns are named in serve).
fn mask_plans(
    policy: &Policy,
    who: &Identity,
    dialect: Dialect,
    sql: &str,
    analysis: &sqlgate::classify::Analysis,
) -> Vec<serde_json::Value> {
    use sqlgate::classify::lineage::{self, Lineage};
    let none = || vec![serde_json::Value::Null; analysis.statements.len()];
    if policy.masks().is_empty() || dialect != Dialect::Postgres {
        return none();
    }
    let masks = policy.masks_for(who);
    let id = |m: Option<usize>| m.and_then(|i| policy.masks().get(i)).map(|m| &*m.id);
    lineage::of_text(sql, analysis, &masks, &lineage::NoColumns)
        .into_iter()
        .map(|l| match l {
            Lineage::Clean => serde_json::Value::Null,
            Lineage::Columns(cols) => serde_json::json!({
                "masked": cols.iter().enumerate().filter_map(|(i, c)| c.as_ref().map(|s| serde_json::json!({
                    "position": i + 1,
                    "column": format!("{}.{}", s.table, s.column),
                    "mask": id(Some(s.mask)),
                    "method": policy.masks()[s.mask].method.as_str(),
                }))).collect::<Vec<_>>(),
            }),
            Lineage::Refused(r) => serde_json::json!({
                "refused": { "column": r.column, "mask": id(r.mask), "why": r.why },
            }),
        })
        .collect()
}

fn rules_check(paths: Vec<PathBuf>) -> ExitCode {
    if paths.is_empty() {
        eprintln!("sqlgate: rules check: name at least one file or folder");
        return ExitCode::from(2);
    }
    let problems = Policy::check(&paths);
    for p in &problems {
        println!("{p}");
    }
    if problems.is_empty() {
        println!("ok: no problems found");
        ExitCode::SUCCESS
    } else {
        eprintln!("{} problem(s) found", problems.len());
        ExitCode::FAILURE
    }
}
