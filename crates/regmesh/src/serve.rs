//! `regmesh serve`: build the components from a validated config, bind every
//! socket (all binds happen before the node reports ready, so a port clash
//! stops the start), run until SIGTERM/SIGINT, then drain.

use crate::config::{Config, LogFormat};
use crate::metrics::{self, SipCounters};
use crate::{sip_stream, sip_udp};
use anyhow::Context as _;
use regmesh_location::{Clock as _, Location, NodeId, SystemClock};
use regmesh_registrar::{LocalSocket, NodeInfo, Registrar, Stats};
use regmesh_sip::Transport;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

/// How long shutdown waits for in-flight commits and replies.
const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// How often expired bindings are removed.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) fn run(cfg: Config, ready_file: Option<PathBuf>) -> anyhow::Result<()> {
    init_logging(&cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("regmesh")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(cfg, ready_file))
}

fn init_logging(cfg: &Config) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log_level))
        .with_context(|| format!("invalid log.level `{}`", cfg.log_level))?;
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = match cfg.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}

/// Everything the SIP transports share.
pub(crate) struct SipShared {
    pub(crate) registrar: Arc<Registrar>,
    pub(crate) counters: Arc<SipCounters>,
    pub(crate) max_message_size: usize,
    pub(crate) idle_timeout: Duration,
    /// `sip.overload_queue_delay` (None: never shed load).
    pub(crate) overload_queue_delay: Option<Duration>,
    /// `sip.udp_threads`, resolved: receive threads per UDP socket.
    pub(crate) udp_threads: usize,
    /// `sip.udp_standby_threads`: threads per UDP socket woken only while
    /// the receive threads are behind.
    pub(crate) udp_standby_threads: usize,
    /// `sip.udp_receive_pause`: how long a UDP receive thread waits after a
    /// batch of more than one datagram before it reads again.
    pub(crate) udp_receive_pause: Duration,
    pub(crate) cancel: CancellationToken,
    pub(crate) tracker: TaskTracker,
}

async fn serve(cfg: Config, ready_file: Option<PathBuf>) -> anyhow::Result<()> {
    info!(
        node = cfg.node_id,
        data_dir = %cfg.data_dir.display(),
        auth = cfg.auth.enabled,
        version = env!("CARGO_PKG_VERSION"),
        "starting regmesh"
    );
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    let clock: Arc<SystemClock> = Arc::new(SystemClock);
    let started = clock.now();
    let db_path = cfg.data_dir.join("location");
    let legacy = cfg.data_dir.join("regmesh.redb");
    if legacy.exists() {
        anyhow::bail!(
            "{} was written by an earlier regmesh (store format 1, a redb file); this build keeps \
             the location store in the directory {} (format 2) and does not convert the old \
             file: move it aside (phones re-register within one registration interval; \
             subscribers must be provisioned again)",
            legacy.display(),
            db_path.display()
        );
    }
    let load_start = tokio::time::Instant::now();
    let location = {
        let clock = clock.clone();
        let path = db_path.clone();
        let node = NodeId(cfg.node_id);
        let options = cfg.store;
        tokio::task::spawn_blocking(move || Location::open_with(&path, node, clock, options))
            .await
            .context("joining the database loader")?
            .with_context(|| {
                format!(
                    "opening the location store {} (its files are left untouched)",
                    db_path.display()
                )
            })?
    };
    let location = Arc::new(location);
    let st = location.stats();
    info!(
        bindings = st.bindings,
        aors = st.aors,
        elapsed_ms = load_start.elapsed().as_millis() as u64,
        "location table loaded"
    );

    let stats = Arc::new(Stats::default());
    let registrar = Arc::new(Registrar {
        policy: cfg.policy.clone(),
        auth: cfg.auth.clone(),
        node: NodeInfo {
            id: NodeId(cfg.node_id),
        },
        stats: stats.clone(),
        location: location.clone(),
    });
    let counters = Arc::new(SipCounters::default());
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let shared = Arc::new(SipShared {
        registrar,
        counters: counters.clone(),
        max_message_size: cfg.max_message_size,
        idle_timeout: cfg.idle_timeout,
        overload_queue_delay: cfg.overload_queue_delay,
        udp_threads: cfg.udp_threads,
        udp_standby_threads: cfg.udp_standby_threads,
        udp_receive_pause: cfg.udp_receive_pause,
        cancel: cancel.clone(),
        tracker: tracker.clone(),
    });

    // Bind every SIP socket before serving any, so a clash stops the start.
    let tls_acceptor = match &cfg.tls {
        Some(tls) if cfg.listen.iter().any(|l| l.transport == Transport::Tls) => {
            Some(sip_stream::tls_acceptor(&tls.cert, &tls.key)?)
        }
        _ => None,
    };
    let mut bound = Vec::new();
    for l in &cfg.listen {
        match l.transport {
            Transport::Udp => {
                let sock =
                    sip_udp::bind(l.addr).with_context(|| format!("binding SIP udp:{}", l.addr))?;
                let addr = sock.local_addr()?;
                bound.push((Transport::Udp, addr));
                info!(transport = "udp", %addr, "listening");
                let local = LocalSocket {
                    transport: Transport::Udp,
                    addr,
                };
                sip_udp::spawn(sock, local, shared.clone())
                    .with_context(|| format!("starting the SIP udp:{addr} receive threads"))?;
            }
            Transport::Tcp | Transport::Tls => {
                let listener = sip_stream::bind(l.addr).with_context(|| {
                    format!("binding SIP {}:{}", proto_name(l.transport), l.addr)
                })?;
                let addr = listener.local_addr()?;
                bound.push((l.transport, addr));
                info!(transport = proto_name(l.transport), %addr, "listening");
                let local = LocalSocket {
                    transport: l.transport,
                    addr,
                };
                let acceptor = if l.transport == Transport::Tls {
                    tls_acceptor.clone()
                } else {
                    None
                };
                let max_conns = cfg.max_connections;
                let shared = shared.clone();
                tracker.spawn(sip_stream::accept_loop(
                    listener, local, acceptor, max_conns, shared,
                ));
            }
        }
    }

    let ready = Arc::new(AtomicBool::new(false));
    let rpc_calls = Arc::new(regmesh_rpc::RpcCalls::default());
    let rpc_ctx = regmesh_rpc::RpcContext {
        location: location.clone(),
        stats: stats.clone(),
        realm: cfg.auth.realm.clone(),
        node: NodeId(cfg.node_id),
        started,
        default_expires: cfg.policy.default_expires,
        max_expires: cfg.policy.max_expires,
        max_contacts: cfg.policy.max_contacts,
        calls: rpc_calls.clone(),
    };
    let mut rpc_addr = None;
    if let Some(addr) = cfg.rpc_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding rpc.listen {addr}"))?;
        let addr = listener.local_addr()?;
        rpc_addr = Some(addr);
        info!(transport = "http", %addr, token = cfg.rpc_token.is_some(), "listening for JSON-RPC");
        let app = regmesh_rpc::router(rpc_ctx.clone(), cfg.rpc_token.clone()).merge(
            metrics::router(metrics::MetricsState {
                location: location.clone(),
                stats: stats.clone(),
                counters: counters.clone(),
                ready: ready.clone(),
                rpc_calls: rpc_calls.clone(),
            }),
        );
        let cancel = cancel.clone();
        tracker.spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await
            {
                error!(error = %e, "JSON-RPC HTTP server failed");
            }
        });
    }
    if let Some(path) = cfg.rpc_socket.clone() {
        // Bind synchronously here would need the rpc crate's internals; its
        // serve_unix binds first and only then serves, and reports a bind
        // error by returning, which we surface as a start failure.
        let ctx = rpc_ctx.clone();
        let cancel2 = cancel.clone();
        let p = path.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tracker.spawn(async move {
            let r = regmesh_rpc::serve_unix(&p, ctx, cancel2).await;
            if let Err(e) = &r {
                error!(path = %p.display(), error = %e, "JSON-RPC UNIX socket failed");
            }
            let _ = tx.send(r);
        });
        // Ready means answering: wait until a connection succeeds (a stale
        // file left by a killed node exists before the new socket is bound).
        // A bind failure returns at once.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut rx = rx;
        loop {
            if tokio::net::UnixStream::connect(&path).await.is_ok() {
                break;
            }
            if let Ok(r) = rx.try_recv() {
                r.with_context(|| format!("binding rpc.socket {}", path.display()))?;
                anyhow::bail!("rpc.socket {} stopped at start", path.display());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("rpc.socket {} did not appear", path.display());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        info!(path = %path.display(), "listening for JSON-RPC on UNIX socket");
    }

    // Expiry: an expired binding is a local removal on every node.
    {
        let location = location.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let loc = location.clone();
                let r = tokio::task::spawn_blocking(move || loc.expire()).await;
                match r {
                    Ok((removed, commit)) => {
                        if let Err(e) = commit.wait().await {
                            error!(error = %e, "committing expiries failed");
                        } else if !removed.is_empty() {
                            tracing::debug!(count = removed.len(), "expired bindings removed");
                        }
                    }
                    Err(e) => error!(error = %e, "expiry task panicked"),
                }
            }
        });
    }

    ready.store(true, Ordering::Release);
    if let Some(path) = ready_file {
        let sip: Vec<_> = bound
            .iter()
            .map(|(t, a)| json!({"transport": proto_name(*t), "addr": a.to_string()}))
            .collect();
        let doc = json!({
            "sip": sip,
            "rpc": rpc_addr.map(|a| a.to_string()),
            "socket": cfg.rpc_socket.as_ref().map(|p| p.display().to_string()),
            "pid": std::process::id(),
        });
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    }
    info!("ready");

    wait_for_signal().await;
    // /health says 503 from here on, so a load balancer stops sending.
    ready.store(false, Ordering::Release);
    info!("shutting down: no new requests; draining in-flight commits");
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(DRAIN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        warn!(grace_s = DRAIN_GRACE.as_secs(), "drain grace expired");
    }
    let loc = location.clone();
    tokio::task::spawn_blocking(move || loc.close())
        .await
        .context("joining database close")?
        .context("closing the database")?;
    info!("stopped");
    Ok(())
}

pub(crate) fn proto_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Tls => "tls",
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            warn!("cannot install signal handlers; waiting for Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
