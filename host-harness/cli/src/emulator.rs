//! `kosmo emulator`: the Klaviyo emulator as a standalone server on loopback, for anyone testing
//! Klaviyo code offline (the component in another host, an SDK, curl). Each API key gets its
//! own account, kept until the server stops (`--sandbox` runs get a fresh one per run).

use std::time::Duration;

use kosmo_emulator::{Emulator, EmulatorOptions, TlsIdentity};

use crate::args::{EXIT_FAILURE, EXIT_USAGE, EmulatorArgs};

/// `kosmo emulator [--port N] [--tls-cert PEM --tls-key PEM] [--no-validate]`.
pub(crate) fn emulator(args: EmulatorArgs) -> i32 {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            match (std::fs::read_to_string(cert), std::fs::read_to_string(key)) {
                (Ok(cert_chain_pem), Ok(key_pem)) => Some(TlsIdentity {
                    cert_chain_pem,
                    key_pem,
                }),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("error: usage: cannot read the TLS certificate or key: {e}");
                    return EXIT_USAGE;
                }
            }
        }
        (None, None) => None,
        _ => {
            eprintln!("error: usage: give both --tls-cert and --tls-key, or neither");
            return EXIT_USAGE;
        }
    };
    let options = EmulatorOptions {
        validate_requests: !args.no_validate,
        enforce_rate_limits: args.enforce_rate_limits,
        port: args.port,
        tls,
        ..EmulatorOptions::default()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: setup: cannot start the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    let exit = runtime.block_on(async {
        let emulator = match Emulator::start_with(options).await {
            Ok(emulator) => emulator,
            Err(e) => {
                eprintln!("error: setup: the emulator could not listen on port {}: {e}", args.port);
                return EXIT_FAILURE;
            }
        };
        let url = emulator.base_url();
        // The first line is the URL alone, so scripts and tests can read it.
        println!("{url}");
        eprintln!(
            "Klaviyo emulator (revision {}) on {url}, request validation {}.\n\
             Any API key gets its own account, kept until this server stops.\n\
             Point code at it:  KLAVIYO_BASE_URL={url} KLAVIYO_API_KEY=pk_test_anything\n\
             What a key sent:   curl -H 'Authorization: Klaviyo-API-Key pk_test_anything' {url}/_emulator/requests\n\
             Ctrl-C stops it.",
            klaviyo_spec::REVISION,
            if args.no_validate { "off" } else { "on" },
        );
        shutdown_signal().await;
        eprintln!("kosmo emulator: stopped");
        0
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    exit
}

/// Ctrl-C, or SIGTERM from a supervisor or a test.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
