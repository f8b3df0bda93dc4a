//! `etmem`: the command-line client of etmemd, with etmem's commands.

use clap::{Args, Parser, Subcommand};
use etmemd::client::{self, ClientError};
use etmemd::protocol::{ErrorKind, Request, Response};
use etmemd::render;
use etmemd::server::{self, SocketSpec};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit status: success.
const EXIT_OK: u8 = 0;
/// The daemon refused the request (object exists / does not exist / started / stopped / unsupported).
const EXIT_REFUSED: u8 = 1;
/// Bad command line (clap's own code).
const EXIT_USAGE: u8 = 2;
/// The config file was refused or is invalid.
const EXIT_CONFIG: u8 = 3;
/// etmemd could not be reached, or refused this user.
const EXIT_UNREACHABLE: u8 = 4;
/// Internal or protocol error.
const EXIT_INTERNAL: u8 = 5;

/// Client of etmemd, the etmem-rs daemon: add projects from config files,
/// start and stop them, and see what they do.
///
/// Exit status: 0 success; 1 the daemon refused the request (exists, does
/// not exist, already started/stopped, unsupported engine); 2 bad command
/// line; 3 config file refused or invalid; 4 etmemd unreachable or access
/// denied; 5 internal or protocol error.
#[derive(Debug, Parser)]
#[command(name = "etmem", version, about, long_about)]
struct Cli {
    /// etmemd's socket: a path (contains '/'), or an abstract name (`@name`
    /// or a bare name, as etmem uses). Default: $ETMEM_SOCKET or /run/etmemd.sock.
    #[arg(short = 's', long = "socket", global = true)]
    socket: Option<String>,

    /// Print the daemon's answer as JSON (for scripts).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    object: Object,
}

#[derive(Debug, Subcommand)]
enum Object {
    /// Add or remove the objects (project, engines, tasks) of a config file.
    Obj {
        #[command(subcommand)]
        cmd: ObjCmd,
    },
    /// Manage projects.
    Project {
        #[command(subcommand)]
        cmd: ProjectCmd,
    },
    /// Run an engine command, e.g. `etmem engine regions -n PROJ -e region -t TASK`.
    Engine(EngineArgs),
    /// Record a started project's snapshots to a file (`etmem record -n PROJ -o FILE -d 60s`).
    Record(etmemd::tools::RecordArgs),
    /// Reports on a record file: raw, heatmap, wss, stats (text or PNG).
    Report(etmemd::tools::ReportArgs),
    /// What this host offers, and which engines, probes and backends work here (no daemon needed).
    Doctor(etmemd::tools::DoctorArgs),
}

#[derive(Debug, Subcommand)]
enum ObjCmd {
    /// Add every object of a config file (TOML, or etmem's INI).
    Add(FileArg),
    /// Remove every object a config file names (tasks, then engines, then the project).
    Del(FileArg),
}

#[derive(Debug, Args)]
struct FileArg {
    /// The config file; the daemon reads it, so it must be on the daemon's filesystem.
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
}

#[derive(Debug, Args)]
struct NameArg {
    /// The project's name.
    #[arg(short = 'n', long = "name")]
    name: String,
}

#[derive(Debug, Subcommand)]
enum ProjectCmd {
    /// Same as `etmem obj add -f FILE`.
    Add(FileArg),
    /// Start a project: create its swap backends, start its engines and tasks.
    Start(NameArg),
    /// Stop a started project.
    Stop(NameArg),
    /// Show one project, or all.
    Show {
        /// The project's name; all projects when absent.
        #[arg(short = 'n', long = "name")]
        name: Option<String>,
    },
    /// Stop (if needed) and remove a project with its engines and tasks.
    Del(NameArg),
}

#[derive(Debug, Args)]
struct EngineArgs {
    /// The engine command (engine-specific; e.g. `regions` for the region engine).
    cmd: String,
    /// The project.
    #[arg(short = 'n', long = "proj_name", visible_alias = "name")]
    project: String,
    /// The engine's name in the project.
    #[arg(short = 'e', long = "engine")]
    engine: String,
    /// The task, for task-level commands.
    #[arg(short = 't', long = "task_name", visible_alias = "task")]
    task: Option<String>,
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.object {
        Object::Report(a) => return ExitCode::from(etmemd::tools::report(a)),
        Object::Doctor(a) => return ExitCode::from(etmemd::tools::doctor(a, cli.json)),
        _ => {}
    }
    let socket = cli
        .socket
        .clone()
        .or_else(|| std::env::var("ETMEM_SOCKET").ok())
        .unwrap_or_else(|| server::DEFAULT_SOCKET.to_string());
    let spec = match SocketSpec::parse(&socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("etmem: bad --socket: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let req = match cli.object {
        Object::Record(a) => return ExitCode::from(etmemd::tools::record(&spec, &a)),
        Object::Report(_) | Object::Doctor(_) => unreachable!("handled before the socket"),
        Object::Obj { cmd: ObjCmd::Add(f) } | Object::Project { cmd: ProjectCmd::Add(f) } => {
            Request::ObjAdd { file: absolute(&f.file) }
        }
        Object::Obj { cmd: ObjCmd::Del(f) } => Request::ObjDel { file: absolute(&f.file) },
        Object::Project { cmd: ProjectCmd::Start(n) } => Request::ProjectStart { name: n.name },
        Object::Project { cmd: ProjectCmd::Stop(n) } => Request::ProjectStop { name: n.name },
        Object::Project { cmd: ProjectCmd::Show { name } } => Request::ProjectShow { name },
        Object::Project { cmd: ProjectCmd::Del(n) } => Request::ProjectDel { name: n.name },
        Object::Engine(e) => {
            Request::Engine { project: e.project, engine: e.engine, cmd: e.cmd, task: e.task }
        }
    };
    let reply = match client::request(&spec, &req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("etmem: {}", etmemd::daemon::chain(&e));
            return ExitCode::from(match e {
                ClientError::Connect { .. } => EXIT_UNREACHABLE,
                ClientError::Frame { .. } => EXIT_INTERNAL,
            });
        }
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&reply).expect("responses serialize"));
    }
    match reply {
        Response::Error(e) => {
            if !cli.json {
                eprintln!("etmem: {}", e.message);
            }
            ExitCode::from(match e.kind {
                ErrorKind::Config => EXIT_CONFIG,
                ErrorKind::PermissionDenied => EXIT_UNREACHABLE,
                ErrorKind::Internal => EXIT_INTERNAL,
                _ => EXIT_REFUSED,
            })
        }
        _ if cli.json => ExitCode::from(EXIT_OK),
        Response::Hello { version, protocol } => {
            println!("etmemd {version} (protocol {protocol})");
            ExitCode::from(EXIT_OK)
        }
        Response::Done { message } => {
            if let Some(m) = message {
                println!("{m}");
            }
            ExitCode::from(EXIT_OK)
        }
        Response::Projects { projects } => {
            print!("{}", render::projects(&projects));
            ExitCode::from(EXIT_OK)
        }
        Response::EngineOutput { text } => {
            print!("{text}");
            ExitCode::from(EXIT_OK)
        }
        Response::RecordStarted { .. } | Response::RecordBatch { .. } => ExitCode::from(EXIT_OK),
    }
}
