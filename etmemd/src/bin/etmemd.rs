//! `etmemd`: the etmem-rs daemon.

use anyhow::Context;
use clap::Parser;
use etmemd::daemon::{Daemon, DaemonOptions};
use etmemd::engine::{BuiltinEngines, EngineFactory, test_engine::TestEngines};
use etmemd::server::{self, AccessPolicy, SocketSpec};
use std::path::PathBuf;
use std::sync::Arc;

/// The etmem-rs daemon: watches how processes use their memory and moves
/// cold pages to zram or swap files and hot ones to huge pages, per project.
///
/// Projects are added with `etmem obj add -f FILE` and survive restarts (see
/// --state-dir). Exit status: 0 after a clean shutdown (SIGTERM/SIGINT),
/// 1 when the daemon cannot start, 2 on a bad command line.
#[derive(Debug, Parser)]
#[command(name = "etmemd", version, about, long_about)]
struct Args {
    /// Log level, as etmem: 0 debug, 1 info, 2 warning, 3 error.
    #[arg(short = 'l', long = "log-level", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=3))]
    log_level: u8,

    /// Socket to listen on: a path (contains '/'), or an abstract name
    /// (`@name`, or a bare name as etmem uses).
    #[arg(short = 's', long = "socket", default_value = server::DEFAULT_SOCKET)]
    socket: String,

    /// Directory where projects and created swap devices are recorded, so a
    /// restarted daemon restores its projects and adopts or cleans devices.
    #[arg(long = "state-dir", default_value = "/var/lib/etmem-rs")]
    state_dir: PathBuf,

    /// Also accept clients with this uid (root is always accepted). Repeatable.
    #[arg(long = "allow-uid", value_name = "UID")]
    allow_uid: Vec<u32>,

    /// Accept config files whatever their owner and mode (development only).
    #[arg(long = "allow-insecure-config")]
    allow_insecure_config: bool,

    /// Accepted for etmem compatibility (systemd forking mode); etmemd stays
    /// in the foreground: use Type=simple in the unit.
    #[arg(short = 'm', long = "mode-systemctl")]
    mode_systemctl: bool,

    /// Serve Prometheus metrics over HTTP at this address (`127.0.0.1:9464`,
    /// path /metrics). Off by default; loopback only unless
    /// --metrics-allow-remote.
    #[arg(long = "metrics", value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,

    /// Allow --metrics on a non-loopback address (the figures name processes and cgroups).
    #[arg(long = "metrics-allow-remote")]
    metrics_allow_remote: bool,

    /// Serve every engine with a test engine that monitors nothing (for the
    /// lifecycle tests only).
    #[arg(long = "test-engine", hide = true)]
    test_engine: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let level = match args.log_level {
        0 => tracing::Level::DEBUG,
        1 => tracing::Level::INFO,
        2 => tracing::Level::WARN,
        _ => tracing::Level::ERROR,
    };
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("etmemd: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let spec = SocketSpec::parse(&args.socket).context("bad --socket")?;
    if args.mode_systemctl {
        tracing::info!(
            "-m accepted for etmem compatibility; etmemd runs in the foreground (use Type=simple)"
        );
    }
    let metrics_listener = match args.metrics {
        Some(addr) => Some(etmemd::metrics::bind(addr, args.metrics_allow_remote)?),
        None => None,
    };
    let std_listener = server::bind(&spec)?;
    // What works on this host, and why the rest does not (`etmem doctor`).
    etmemd::doctor::log(&etmemd::doctor::inspect());
    let factory: Arc<dyn EngineFactory> =
        if args.test_engine { Arc::new(TestEngines) } else { Arc::new(BuiltinEngines) };
    let daemon = Arc::new(Daemon::new(
        DaemonOptions {
            state_dir: args.state_dir.clone(),
            allow_insecure_config: args.allow_insecure_config,
        },
        factory,
    ));
    for problem in daemon.restore() {
        tracing::warn!("{problem}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let access = AccessPolicy { allow_uids: args.allow_uid.clone() };
    rt.block_on(async {
        let listener = tokio::net::UnixListener::from_std(std_listener).context("cannot use the socket")?;
        tracing::info!(socket = %spec, state_dir = %args.state_dir.display(), "etmemd listening");
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some(l) = metrics_listener {
            let l = tokio::net::TcpListener::from_std(l).context("cannot use the metrics socket")?;
            tracing::info!(addr = %l.local_addr().context("metrics address")?, "serving metrics at /metrics");
            tokio::spawn(etmemd::metrics::serve(l, Arc::clone(&daemon), async {
                let _ = metrics_stopped.await;
            }));
        }
        let shutdown = async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = int.recv() => tracing::info!("SIGINT: stopping"),
            }
        };
        server::serve(listener, Arc::clone(&daemon), access, shutdown).await;
        let _ = stop_metrics.send(());
        anyhow::Ok(())
    })?;
    let d = Arc::clone(&daemon);
    std::thread::spawn(move || d.shutdown()).join().map_err(|_| anyhow::anyhow!("shutdown panicked"))?;
    if let SocketSpec::Path(p) = &spec {
        let _ = std::fs::remove_file(p);
    }
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}
