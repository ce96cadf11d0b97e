//! `kubus`: the Kubus command line.
#![forbid(unsafe_code)]

mod cmd;

/// mimalloc instead of glibc's malloc: the API server and informers churn small JSON and
/// object allocations across threads, where glibc's arenas spent more CPU than the work.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kubus",
    version,
    about = "A container orchestrator that speaks the Kubernetes API, built as actors on NATS JetStream"
)]
struct Cli {
    /// Log format on stderr: `text` (coloured only on a terminal) or `json` (one object per
    /// line, for log collectors). KUBUS_LOG sets the levels, e.g. `info,kubus_scheduler=debug`.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a cluster in the foreground: NATS (embedded unless --nats), the control plane and a node.
    Up(Box<cmd::up::UpArgs>),
    /// Run a node agent that joins a cluster through its NATS and runs pods as real containers.
    Node(Box<cmd::node::NodeArgs>),
    /// Remove everything a node agent made on this host: containers and their shims, mounts,
    /// pod sandboxes, the pod bridge, cgroups (like `kubeadm reset`).
    NodeReset(cmd::node::NodeResetArgs),
    /// Manage the images of this node: import, export, ls, pull, rm.
    Image(cmd::image::ImageArgs),
    /// Make kubeconfigs for users of the cluster (as `kubeadm kubeconfig`).
    Kubeconfig(cmd::kubeconfig::KubeconfigArgs),
    /// Print the cluster's audit events (audit.k8s.io/v1 Events, one JSON line each).
    Audit(cmd::audit::AuditArgs),
    /// Bootstrap tokens for joining nodes (as kubeadm's).
    Token(cmd::token::TokenArgs),
    /// Run simulated nodes against a cluster (like kwok).
    SimNodes(cmd::sim::SimArgs),
    /// Measure the API server, the control plane at scale and the node agent (figures for docs/benchmarks.md).
    Bench(kubus_bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    // A container's shim is this binary too; it must start lean: no runtime, no logging setup.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("shim") {
        return kubus_container_runtime::shim_main(args[2..].to_vec());
    }
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The chain of causes, one line, without a backtrace: this is for people.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("KUBUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,actix_server=warn,async_nats=warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        // Colour codes only where a person reads them: not in files, journals or pipes.
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
    }
    match cli.command {
        Command::Up(args) => actix::System::new().block_on(cmd::up::run(*args)),
        Command::Node(args) => actix::System::new().block_on(cmd::node::run(*args)),
        Command::NodeReset(args) => actix::System::new().block_on(cmd::node::reset(args)),
        Command::Image(args) => actix::System::new().block_on(cmd::image::run(args)),
        Command::Kubeconfig(args) => cmd::kubeconfig::run(args),
        Command::SimNodes(args) => actix::System::new().block_on(cmd::sim::run(args)),
        Command::Audit(args) => actix::System::new().block_on(cmd::audit::run(args)),
        Command::Token(args) => actix::System::new().block_on(cmd::token::run(args)),
        Command::Bench(args) => actix::System::new().block_on(kubus_bench::run(args)),
    }
}
