//! The `spin-host` command: `spin-host up --from spin.toml --listen 127.0.0.1:3000`, and
//! `spin-host kv-set --kv-dir DIR KEY VALUE` to put a raw value into a persisted store, as an
//! operator would (tests use it to plant unreadable entries).
//!
//! Parses the command line, prints exactly one `spin-host listening on http://ADDR` line on
//! stdout when ready (scripts wait for it), and serves until SIGINT or SIGTERM, then shuts down
//! gracefully. Everything else goes to stderr. It must not grow features of its own: all
//! behaviour lives in the library so tests exercise the same code.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use spin_host::{Error, Manifest, Options, reuse};

const USAGE: &str = "\
usage: spin-host up [--from PATH] [--listen ADDR] [--kv-dir DIR] [--variable NAME=VALUE]...
                    [--post-response-timeout SECONDS] [--max-instance-reuse-count N]
                    [--max-instance-concurrent-reuse-count N] [--idle-instance-timeout DURATION]
                    [--tcp-nodelay]
       spin-host kv-set --kv-dir DIR [--store default] KEY VALUE

  --from PATH       the application manifest (default: spin.toml)
  --listen ADDR     address to serve on (default: 127.0.0.1:3000; port 0 picks a free one)
  --kv-dir DIR      keep the `default` key-value store in DIR/sqlite_key_value.db
                    (default: in memory, lost at exit)
  --variable N=V    value of application variable N (repeatable); SPIN_VARIABLE_<N> works too
  --post-response-timeout S
                    how long an instance may keep working after its last response (default: 30)
  --max-instance-reuse-count N
                    requests one instance serves before it is dropped (default: 128, as Spin
                    for WASIp3 components; 1 = a fresh instance per request). N may be a
                    range a..b: each new instance draws its own value.
  --max-instance-concurrent-reuse-count N
                    requests one instance serves at once (default: 16, as Spin; a range too)
  --idle-instance-timeout DURATION
                    how long an idle instance waits for another request (default: 1s, as Spin;
                    seconds, or with s/ms/us/ns; a range too)
  --tcp-nodelay     set TCP_NODELAY on accepted connections (default: off, as Spin)";

fn parse(args: &[String]) -> Result<Options, Error> {
    let usage = |msg: &str| Error::Usage(format!("{msg}\n\n{USAGE}"));
    let mut args = args.iter();
    match args.next().map(String::as_str) {
        Some("up") => {}
        Some("-h" | "--help") | None => return Err(Error::Usage(USAGE.into())),
        Some(other) => return Err(usage(&format!("unknown command {other:?}"))),
    }
    let mut options = Options::new("spin.toml");
    options.listen = SocketAddr::from(([127, 0, 0, 1], 3000));
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Err(Error::Usage(USAGE.into()));
        }
        if flag == "--tcp-nodelay" {
            if inline.is_some() {
                return Err(usage("--tcp-nodelay takes no value"));
            }
            options.tcp_nodelay = true;
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => args.next().cloned().ok_or_else(|| usage(&format!("{flag} needs a value")))?,
        };
        match flag {
            "--from" | "-f" => options.manifest = PathBuf::from(value),
            "--listen" => {
                options.listen = value.parse().map_err(|_| usage(&format!("--listen {value:?}: not HOST:PORT")))?;
            }
            "--kv-dir" => options.kv_dir = Some(PathBuf::from(value)),
            "--variable" => {
                let (name, val) = value
                    .split_once('=')
                    .ok_or_else(|| usage(&format!("--variable {value:?}: expected NAME=VALUE")))?;
                options.variables.push((name.to_string(), val.to_string()));
            }
            "--post-response-timeout" => {
                let secs: f64 = value
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| usage(&format!("--post-response-timeout {value:?}: not a positive number")))?;
                options.post_response_timeout = Duration::from_secs_f64(secs);
            }
            "--max-instance-reuse-count" => {
                options.reuse.max_requests =
                    reuse::parse_count_range(&value).map_err(|e| usage(&format!("{flag}: {e}")))?;
            }
            "--max-instance-concurrent-reuse-count" => {
                options.reuse.max_concurrent =
                    reuse::parse_count_range(&value).map_err(|e| usage(&format!("{flag}: {e}")))?;
            }
            "--idle-instance-timeout" => {
                options.reuse.idle_timeout =
                    reuse::parse_duration_range(&value).map_err(|e| usage(&format!("{flag}: {e}")))?;
            }
            other => return Err(usage(&format!("unknown option {other:?}"))),
        }
    }
    Ok(options)
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            eprintln!("spin-host: cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

fn run(options: Options) -> Result<(), Error> {
    let manifest = Manifest::load(&options.manifest)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| Error::Runtime(e.to_string()))?;
    runtime.block_on(async {
        let (server, addr) = spin_host::start(&manifest, &options).await?;
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "spin-host listening on http://{addr}");
        let _ = stdout.flush();
        drop(stdout);
        eprintln!("spin-host: serving `{}` from {}", manifest.name, options.manifest.display());
        server.run(stop_signal()).await;
        eprintln!("spin-host: stopped");
        Ok(())
    })
}

/// `kv-set --kv-dir DIR [--store NAME] KEY VALUE`: writes through the same backend `up` uses
/// (SQLite allows a second writer while a server runs).
fn kv_set(args: &[String]) -> Result<(), Error> {
    let usage = |msg: &str| Error::Usage(format!("{msg}\n\n{USAGE}"));
    let (mut dir, mut store, mut rest) = (None, "default".to_string(), Vec::new());
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--kv-dir" => dir = Some(PathBuf::from(args.next().ok_or_else(|| usage("--kv-dir needs a value"))?)),
            "--store" => store = args.next().ok_or_else(|| usage("--store needs a value"))?.clone(),
            _ => rest.push(arg.clone()),
        }
    }
    let dir = dir.ok_or_else(|| usage("kv-set needs --kv-dir"))?;
    let [key, value] = rest.as_slice() else { return Err(usage("kv-set needs KEY and VALUE")) };
    let backend = spin_host::KvBackend::open(Some(&dir))?;
    backend.set(&store, key, value.as_bytes()).map_err(|e| Error::Runtime(format!("kv-set: {e:?}")))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("kv-set") => kv_set(&args[1..]),
        _ => parse(&args).and_then(run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Usage(text)) => {
            eprintln!("{text}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("spin-host: error: {e}");
            ExitCode::FAILURE
        }
    }
}
