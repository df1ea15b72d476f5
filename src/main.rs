//! The `hookbox` binary: read the config, serve until SIGTERM/SIGINT, shut down gracefully.
//! `hookbox healthcheck` instead asks the running server whether it is ready (for containers);
//! `hookbox export` and `hookbox import` move messages out of and into the store (see `cli`);
//! `hookbox sign` prints a body's signature headers (see `sign`).
//!
//! Exit codes: 0 after a clean shutdown (or a ready server, or a clean export/import), 1 when the
//! server cannot start or stops accepting (or is not ready, or an import had invalid lines), 2
//! when the configuration or the arguments are invalid.

use std::process::ExitCode;

use crossbeam_channel::select;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> ExitCode {
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
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        None => run(config),
        Some("healthcheck") => hookbox::healthcheck::check(&config).map_err(Into::into),
        Some(command @ ("export" | "import")) => {
            if command == "export" {
                // stdout carries the data: no log line may land in it.
                log::set_max_level(log::LevelFilter::Off);
            }
            return hookbox::cli::run(&config, command, &args[2..]);
        }
        Some("sign") => return hookbox::sign::run(&config, &args[2..]),
        Some(other) => {
            log::error!(
                "unknown argument {other:?}; the subcommands are `healthcheck`, `export`, `import`, `sign`"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("{error}");
            ExitCode::from(1)
        }
    }
}

fn run(config: hookbox::Config) -> Result<(), Box<dyn std::error::Error>> {
    raise_descriptor_limit();
    // Registered before the server starts, so an early SIGTERM still shuts down gracefully.
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
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
            log::info!(signal = signal.unwrap_or_default(); "shutting down");
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

/// Each connection holds a descriptor, so the soft limit (often 1024) is raised to the hard
/// limit. Running out is survivable anyway: the accept loop backs off and retries.
fn raise_descriptor_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => log::debug!(limit = limit; "open file limit"),
        Err(error) => log::warn!("could not raise the open file limit: {error}"),
    }
}
