//! `sync-server`: Zestor's sync server, and `sync-server client …`, a
//! command-line client.
//!
//! Run with `cargo run -p sync-server -- --help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use serde_json::Value;
use store_core::schema::Schema;
use store_core::sync::codec::Limits;
use store_core::sync::session::ServerConfig;
use store_core::{DEFAULT_RETENTION, StoreOptions};
use sync_server::backend::sqlite::Synchronous;
use sync_server::server::{
    AppState, Auth, Database, JwtConfig, JwtKeys, Maintenance, Metrics, NamespaceGrant, Stores, Tls, Tokens,
    check_allowed_origins, parse_duration, serve, serve_tls,
};

/// The server allocates and frees a few small buffers per frame on every
/// connection; mimalloc's per-thread free lists made acknowledged writes
/// through the server 14–18 % faster than glibc's allocator
/// (docs/benchmarks.md, "Acknowledged writes through the server").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Zestor's sync server: keeps namespaces of typed, versioned key-value data
/// in SQLite or PostgreSQL and syncs them to clients over WebSockets.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Talk to a server from a terminal with `sync-server client put|get|delete|watch …` \
                  (`sync-server client --help`). Back up and restore with `sync-server backup`, \
                  `restore`, `export` and `import`; give a SQLite file made before incremental \
                  auto-vacuum its space back with `sync-server vacuum` (`sync-server backup --help`, …)."
)]
struct Args {
    /// Where the data lives: `sqlite://PATH` (the default, created if
    /// missing) or `postgres://USER@HOST/DB` (several servers may share it;
    /// `?schema=NAME` picks the schema, default `public`).
    #[arg(long, env = "ZESTOR_DB", default_value = "sqlite://zestor.db")]
    db: String,

    /// Address to listen on.
    #[arg(long, env = "ZESTOR_LISTEN", default_value = "127.0.0.1:8787")]
    listen: SocketAddr,

    /// Serve https and wss with this certificate chain (PEM: the server's
    /// certificate first, then the intermediates); needs --tls-key. Re-read
    /// with the key on SIGHUP (a renewed certificate).
    #[arg(long, env = "ZESTOR_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "ZESTOR_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// How logs are written on stderr: `text` for people, `json` for a log
    /// collector (one object per line, with `timestamp`, `level`,
    /// `message`, `target` and the event's fields). `RUST_LOG` sets the
    /// level (default `info`).
    #[arg(long, env = "ZESTOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Static tokens (for development): one `TOKEN NAMESPACE read|read_write`
    /// per line. Re-read on SIGHUP: sessions whose token was removed are
    /// closed (`unauthorized`), those that lost a namespace or writing
    /// (`forbidden`).
    #[arg(long, env = "ZESTOR_TOKENS")]
    tokens: Option<PathBuf>,

    /// Allow any token full access to any namespace (local development only).
    #[arg(long, env = "ZESTOR_INSECURE_OPEN", conflicts_with_all = ["tokens", "jwks", "jwt_secret_file", "jwt_secret"])]
    insecure_open: bool,

    /// Accept JWTs signed with the keys of this JWKS (RS256, ES256, EdDSA…):
    /// a file, re-read on SIGHUP, or an `https://` URL, fetched at start,
    /// cached for 5 minutes and fetched again (at most every 10 s) when a
    /// token names an unknown `kid`. Grants come from the token's claim
    /// (`--jwt-claim`), e.g. `"zestor": {"ns": {"team-1": "read_write"}}`,
    /// and from `--jwt-grant`; `exp` is required and the session is closed
    /// when it passes (`unauthorized`, 4001). See docs/protocol.md (Tokens).
    #[arg(long, env = "ZESTOR_JWKS", value_name = "FILE|URL")]
    jwks: Option<String>,

    /// Accept HS256 JWTs signed with the secret in this file (at least 32
    /// bytes; re-read on SIGHUP).
    #[arg(long, env = "ZESTOR_JWT_SECRET_FILE", conflicts_with = "jwks")]
    jwt_secret_file: Option<PathBuf>,

    /// Like --jwt-secret-file, the secret itself (prefer the environment
    /// variable: a command line is visible to other users).
    #[arg(long, env = "ZESTOR_JWT_SECRET", hide_env_values = true, conflicts_with_all = ["jwks", "jwt_secret_file"])]
    jwt_secret: Option<String>,

    /// The audience (`aud`) a JWT must be for.
    #[arg(long, env = "ZESTOR_JWT_AUDIENCE")]
    jwt_audience: Option<String>,

    /// The issuer (`iss`) a JWT must come from.
    #[arg(long, env = "ZESTOR_JWT_ISSUER")]
    jwt_issuer: Option<String>,

    /// The clock skew allowed on a JWT's `exp` and `nbf`, in seconds.
    #[arg(long, env = "ZESTOR_JWT_LEEWAY_SECS", default_value_t = 30)]
    jwt_leeway_secs: u64,

    /// The JWT claim holding a token's grants: `{"ns": {NAMESPACE: RIGHTS}}`.
    #[arg(long, env = "ZESTOR_JWT_CLAIM", default_value = "zestor")]
    jwt_claim: String,

    /// A namespace every valid JWT is granted, as `NAMESPACE=read|read_write`;
    /// `{sub}` in it is the token's subject (`user-{sub}=read_write`).
    /// Repeatable, or comma-separated.
    #[arg(
        long = "jwt-grant",
        env = "ZESTOR_JWT_GRANTS",
        value_delimiter = ',',
        value_name = "NAMESPACE=RIGHTS"
    )]
    jwt_grants: Vec<NamespaceGrant>,

    /// A folder of `KIND.json` JSON Schemas, enforced on writes and sent to clients.
    #[arg(long, env = "ZESTOR_SCHEMAS")]
    schemas: Option<PathBuf>,

    /// A folder of static files to serve (the web app).
    #[arg(long, env = "ZESTOR_STATIC")]
    static_dir: Option<PathBuf>,

    /// Another web origin whose pages may connect, as `scheme://host[:port]`
    /// (repeatable, or comma-separated); `*` allows any. Without it, only
    /// pages of the host the server is reached at may connect (the `Origin`
    /// header's host name must equal the `Host` header's; schemes and ports
    /// are not compared). Clients that send no `Origin` (native clients,
    /// scripts) are always allowed.
    #[arg(
        long = "allow-origin",
        env = "ZESTOR_ALLOW_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    allow_origins: Vec<String>,

    /// Revisions of history kept per namespace for clients to resume from.
    #[arg(long, env = "ZESTOR_RETENTION", default_value_t = DEFAULT_RETENTION)]
    retention: usize,

    /// SQLite only: `full` (an acknowledged write survives power loss) or
    /// `normal` (it survives a crash of the server, not of the machine).
    #[arg(long, env = "ZESTOR_SQLITE_SYNC", default_value = "full", value_parser = ["full", "normal"])]
    sqlite_sync: String,

    /// Largest frame accepted, in bytes.
    #[arg(long, env = "ZESTOR_MAX_FRAME_BYTES", default_value_t = 1 << 20)]
    max_frame_bytes: usize,

    /// Ping silent clients after this many milliseconds; close them after twice as long.
    #[arg(long, env = "ZESTOR_HEARTBEAT_MS", default_value_t = 30_000)]
    heartbeat_ms: u64,

    /// Give up on a client that has not read for this many milliseconds
    /// (`slow_consumer`, close 4008), and wait as long at most for a client
    /// to take the close frame.
    #[arg(long, env = "ZESTOR_SEND_TIMEOUT_MS", default_value_t = 10_000)]
    send_timeout_ms: u64,

    /// Most ops of one connection waiting to be applied.
    #[arg(long, env = "ZESTOR_MAX_IN_FLIGHT", default_value_t = 10_000)]
    max_in_flight: usize,

    /// How long the answer of an op id is kept, so that a retry gets it
    /// instead of applying the op again: `7d`, `12h`, `90m`… or `forever`.
    /// A retry of an op id older than this is applied again as a new op
    /// (docs/protocol.md, "Writes: ordering and idempotency").
    #[arg(long, env = "ZESTOR_OP_IDS_TTL", default_value = "7d", value_parser = parse_ttl, value_name = "DURATION")]
    op_ids_ttl: Ttl,

    /// How often the database's maintenance runs: pruning op ids older than
    /// --op-ids-ttl and, on SQLite, giving free pages back and checkpointing
    /// the WAL.
    #[arg(long, env = "ZESTOR_MAINTENANCE_INTERVAL", default_value = "1m", value_parser = parse_duration, value_name = "DURATION")]
    maintenance_interval: std::time::Duration,
}

/// `--op-ids-ttl`: a duration, or `forever`.
#[derive(Debug, Clone, Copy)]
struct Ttl(Option<std::time::Duration>);

fn parse_ttl(text: &str) -> Result<Ttl, String> {
    if text == "forever" {
        return Ok(Ttl(None));
    }
    parse_duration(text).map(|d| Ttl(Some(d)))
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Lines for people (colored on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// `ZESTOR_LOG_FORMAT`, for `sync-server client`, `backup`, `restore`, `export` and `import`.
    fn from_env() -> Result<LogFormat, String> {
        match std::env::var("ZESTOR_LOG_FORMAT") {
            Ok(v) => LogFormat::from_str(&v, true)
                .map_err(|_| format!("ZESTOR_LOG_FORMAT must be text or json, not {v:?}")),
            Err(_) => Ok(LogFormat::Text),
        }
    }
}

/// Logs on stderr in `format`, at the level `RUST_LOG` sets (default `info`).
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // The message and fields at the top level, next to the level.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

fn schemas(dir: &std::path::Path) -> Result<StoreOptions<Value>, String> {
    let mut options = StoreOptions::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let kind = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| format!("{}: bad name", path.display()))?;
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let source: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let schema = Schema::compile(source).map_err(|e| format!("{}: {e}", path.display()))?;
        options = options.schema(kind, schema);
    }
    Ok(options)
}

/// Reloads the tokens and keys, and the TLS certificate, on every SIGHUP.
#[cfg(unix)]
fn reload_on_hangup(state: Arc<AppState>, tls: Option<Tls>) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match state.auth.reload().await {
                Ok(()) => tracing::info!("reloaded the tokens and keys"),
                Err(e) => tracing::error!(error = %e, "cannot reload; the previous tokens and keys stay"),
            }
            match tls.as_ref().map(Tls::reload) {
                None => {}
                Some(Ok(())) => tracing::info!("reloaded the TLS certificate"),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "cannot reload the TLS certificate; the previous one stays");
                }
            }
        }
    });
    Ok(())
}

/// The JWT verification the options ask for, if any.
fn jwt_config(args: &Args) -> Result<Option<JwtConfig>, String> {
    let keys = match (&args.jwks, &args.jwt_secret_file, &args.jwt_secret) {
        (Some(jwks), _, _) if jwks.starts_with("https://") || jwks.starts_with("http://") => {
            JwtKeys::JwksUrl(jwks.clone())
        }
        (Some(jwks), _, _) => JwtKeys::JwksFile(jwks.into()),
        (None, Some(file), _) => JwtKeys::SecretFile(file.clone()),
        (None, None, Some(secret)) => JwtKeys::Secret(secret.clone().into_bytes()),
        (None, None, None) => {
            let jwt_only =
                args.jwt_audience.is_some() || args.jwt_issuer.is_some() || !args.jwt_grants.is_empty();
            if jwt_only {
                return Err(
                    "--jwt-audience, --jwt-issuer and --jwt-grant need --jwks or a JWT secret".into(),
                );
            }
            return Ok(None);
        }
    };
    Ok(Some(JwtConfig {
        audience: args.jwt_audience.clone(),
        issuer: args.jwt_issuer.clone(),
        leeway: std::time::Duration::from_secs(args.jwt_leeway_secs),
        claim: args.jwt_claim.clone(),
        grants: args.jwt_grants.clone(),
        ..JwtConfig::new(keys)
    }))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() {
    let mut argv = std::env::args();
    if argv.nth(1).as_deref() == Some("client") {
        let result = match LogFormat::from_env() {
            Ok(format) => {
                init_logs(format);
                sync_server::client::run_cli(argv.collect()).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            eprintln!("sync-server client: {e}");
            std::process::exit(1);
        }
        return;
    }
    let admin = std::env::args().nth(1);
    if let Some(command) = admin.filter(|c| sync_server::admin::COMMANDS.contains(&c.as_str())) {
        let result = match LogFormat::from_env() {
            Ok(format) => {
                init_logs(format);
                sync_server::admin::run_cli(std::env::args().skip(1).collect()).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            eprintln!("sync-server {command}: {e}");
            std::process::exit(1);
        }
        return;
    }
    let args = Args::parse();
    init_logs(args.log_format);
    if let Err(e) = run(args).await {
        eprintln!("sync-server: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let database: Database = args.db.parse()?;
    check_allowed_origins(&args.allow_origins)?;
    let jwt = jwt_config(&args)?;
    let auth = if args.insecure_open {
        Auth::from(Tokens::open_to_all())
    } else if args.tokens.is_none() && jwt.is_none() {
        return Err(
            "no tokens: pass --jwks URL, --jwt-secret-file FILE or --tokens FILE \
             (or --insecure-open for local development)"
                .into(),
        );
    } else {
        Auth::new(args.tokens.clone(), jwt).await?
    };
    let options = match &args.schemas {
        Some(dir) => schemas(dir)?,
        None => StoreOptions::new(),
    }
    .retention(args.retention);
    let synchronous = if args.sqlite_sync == "normal" {
        Synchronous::Normal
    } else {
        Synchronous::Full
    };
    let session = ServerConfig {
        limits: Limits {
            max_frame_bytes: args.max_frame_bytes,
            ..Limits::default()
        },
        heartbeat_ms: args.heartbeat_ms,
        max_in_flight_ops: args.max_in_flight,
        ..ServerConfig::default()
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Tls::from_pem_files(cert, key)?),
        _ => None,
    };
    let maintenance = Maintenance {
        op_ids_ttl: args.op_ids_ttl.0,
        interval: args.maintenance_interval,
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let state = Arc::new(AppState {
        stores: Stores::new(database.clone(), synchronous, options).maintenance(maintenance),
        auth,
        session,
        metrics: Metrics::default(),
        allowed_origins: args.allow_origins,
        send_timeout: std::time::Duration::from_millis(args.send_timeout_ms),
        shutdown,
    });
    #[cfg(unix)]
    reload_on_hangup(state.clone(), tls.clone())?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("listen on {}: {e}", args.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(?database, "storing data");
    let (http, ws) = if tls.is_some() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    tracing::info!(url = %format!("{http}://{address}"), tls = tls.is_some(), "listening");
    println!("Zestor sync server listening on {http}://{address} (WebSocket: {ws}://{address}/sync)");
    let served = match tls {
        Some(tls) => serve_tls(listener, tls, state, args.static_dir, stop, shutdown_signal()).await,
        None => serve(listener, state, args.static_dir, stop, shutdown_signal()).await,
    };
    served.map_err(|e| e.to_string())
}
