//! The `hookbox` binary: read the arguments (`cli::parse`), then either serve until SIGTERM,
//! SIGINT or SIGHUP and shut down gracefully, or run one command (`healthcheck`, `export`,
//! `import`, `sign`; see `cli`), or print help or the version.
//!
//! Exit codes: 0 after a clean shutdown (or a ready server, or a clean export/import, or help),
//! 1 when the server cannot start or stops accepting (or is not ready, or an import had invalid
//! lines, or the store failed), 2 when the configuration or the arguments are invalid.

use std::process::ExitCode;

use crossbeam_channel::select;
use hookbox::cli::{self, Command};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(usage) => {
            eprintln!("hookbox: {usage}; see `hookbox --help`");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help(topic) => cli::print(cli::help(topic)),
        Command::Version => cli::print(&cli::version()),
        Command::Serve => serve(),
        command => {
            // One-shot commands speak on stderr in plain text; stdout is export's data.
            let config = match hookbox::Config::from_env() {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("hookbox: {error}");
                    return ExitCode::from(2);
                }
            };
            if matches!(command, Command::Import(_)) {
                // The store's own notes (a migration, the text index) as JSON lines on stdout.
                let _ = hookbox::logging::init(config.log_level);
            }
            cli::run(&config, &command)
        }
    }
}

fn serve() -> ExitCode {
    // Log at INFO until the config says otherwise, so even a config error is a JSON line.
    let _ = hookbox::logging::init(log::LevelFilter::Info);
    let config = match hookbox::Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            log::error!(variable = error.variable; "{error}");
            return ExitCode::from(2);
        }
    };
    log::set_max_level(config.log_level);
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("{error}");
            ExitCode::from(1)
        }
    }
}

fn run(config: hookbox::Config) -> Result<(), Box<dyn std::error::Error>> {
    raise_descriptor_limit();
    // Registered before the server starts, so an early signal still shuts down gracefully.
    // SIGHUP (a closed terminal, or an operator used to "reload") stops gracefully too: hookbox
    // has nothing to reload, and dying unlogged with 129 would be the worst answer.
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let signal_handle = signals.handle();
    let (signal_sender, signal_received) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            let _ = signal_sender.send(signal);
        }
    });

    let grace = config.shutdown_grace;
    let server = hookbox::start(config)?;
    let failure = select! {
        recv(signal_received) -> signal => {
            let signal = signal.unwrap_or_default();
            log::info!(signal = signal, name = signal_name(signal); "shutting down");
            None
        }
        recv(server.failure()) -> message => Some(message.unwrap_or_default()),
    };
    signal_handle.close();
    // Every wait in shutdown is bounded by a timeout, but a guard costs nothing: past the grace
    // period the process exits anyway. Every 200 already sent is durable, so nothing acked is lost.
    std::thread::spawn(move || {
        std::thread::sleep(grace);
        log::error!(grace_secs = grace.as_secs(); "shutdown took longer than the grace period; exiting");
        std::process::exit(1);
    });
    server.shutdown();
    match failure {
        None => {
            log::info!("stopped");
            Ok(())
        }
        Some(message) => Err(message.into()),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        SIGHUP => "SIGHUP",
        _ => "other",
    }
}

/// Each connection holds a descriptor, so the soft limit (often 1024) is raised to the hard
/// limit. Running out is survivable anyway: the accept loop backs off and retries.
fn raise_descriptor_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => log::debug!(limit = limit; "open file limit"),
        Err(error) => log::warn!("could not raise the open file limit: {error}"),
    }
}
