//! One `redis-server` process: start, stop, signals, admin commands.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::Error;
use crate::admin::Conn;
use crate::reply::FromReply;
use crate::server::{self, NodeConfig};
use crate::tls::TlsFiles;
use crate::{Info, Role};

/// How long a node may take to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The kind of `CLUSTER FAILOVER` to run on a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverKind {
    /// Coordinated with the primary: no acknowledged write is lost. Needs a reachable primary.
    Graceful,
    /// Without the primary's agreement, but still with a vote of the other primaries.
    Force,
    /// Without any vote: the replica bumps the epoch itself.
    Takeover,
}

#[derive(Debug)]
enum Process {
    /// Started by this process: we hold the child and reap it.
    Owned(Child),
    /// Started by another process (a detached cluster); we only know its PID.
    Adopted(u32),
    /// Not running.
    Stopped,
}

/// A local `redis-server` process.
#[derive(Debug)]
pub struct Node {
    port: u16,
    dir: PathBuf,
    initial_role: Role,
    cluster: bool,
    detached: bool,
    /// A `redis-sentinel` process rather than a data node (see the `sentinel` module).
    sentinel: bool,
    /// Set for a node that listens for TLS only (its `port` is then the TLS port).
    tls: Option<Arc<TlsFiles>>,
    process: Mutex<Process>,
}

/// What a node process runs: a data node (over TLS only when it has TLS files), or a sentinel.
enum Program {
    Server { tls: Option<Arc<TlsFiles>> },
    Sentinel,
}

impl Node {
    /// Starts a node on a free port in `dir`, retrying on another port if the chosen one was taken.
    pub(crate) async fn start(
        dir: PathBuf,
        settings: &NodeConfig,
        cluster: bool,
        initial_role: Role,
        detached: bool,
        fixed_port: Option<u16>,
        tls: Option<Arc<TlsFiles>>,
    ) -> Result<Node, Error> {
        let render = |port: u16, dir: &Path| {
            let mut conf = settings.render(port, dir, cluster);
            if let Some(tls) = &tls {
                // Later lines win in redis.conf: these close the plain port and open the TLS one.
                conf.push_str(&tls.conf_lines(port));
            }
            conf
        };
        Node::start_process(
            dir,
            &render,
            cluster,
            initial_role,
            detached,
            fixed_port,
            Program::Server { tls: tls.clone() },
        )
        .await
    }

    /// Starts a `redis-sentinel` on a free port in `dir`, its `sentinel.conf` written by `render(port, dir)`.
    pub(crate) async fn start_sentinel(
        dir: PathBuf,
        render: &dyn Fn(u16, &Path) -> String,
    ) -> Result<Node, Error> {
        Node::start_process(dir, render, false, Role::Primary, false, None, Program::Sentinel).await
    }

    async fn start_process(
        dir: PathBuf,
        render: &dyn Fn(u16, &Path) -> String,
        cluster: bool,
        initial_role: Role,
        detached: bool,
        fixed_port: Option<u16>,
        program: Program,
    ) -> Result<Node, Error> {
        let (binary, sentinel, tls) = match program {
            Program::Sentinel => (server::redis_sentinel_binary()?, true, None),
            Program::Server { tls } => (server::redis_server_binary()?, false, tls),
        };
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let mut last_error = None;
        let attempts = if fixed_port.is_some() { 1 } else { 5 };
        for _attempt in 0..attempts {
            let port = match fixed_port {
                Some(port) => port,
                None => server::free_port(cluster)?,
            };
            let node = Node {
                port,
                dir: dir.clone(),
                initial_role,
                cluster,
                detached,
                sentinel,
                tls: tls.clone(),
                process: Mutex::new(Process::Stopped),
            };
            std::fs::write(node.conf_path(), render(port, &dir))
                .map_err(|e| Error::io(format!("writing {}", node.conf_path().display()), e))?;
            match node.spawn_and_wait(&binary).await {
                Ok(()) => return Ok(node),
                Err(e @ Error::Start { .. }) if e.to_string().contains("already in use") => {
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Invalid("could not start a node".into())))
    }

    /// A handle to a node started by another process (a detached cluster's state file).
    pub(crate) fn adopt(
        port: u16,
        dir: PathBuf,
        pid: u32,
        initial_role: Role,
        cluster: bool,
        tls: Option<Arc<TlsFiles>>,
    ) -> Node {
        let process = if pid_is_node(pid, port) {
            Process::Adopted(pid)
        } else {
            Process::Stopped
        };
        Node {
            port,
            dir,
            initial_role,
            cluster,
            detached: true,
            sentinel: false,
            tls,
            process: Mutex::new(process),
        }
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.join(if self.sentinel {
            "sentinel.conf"
        } else {
            "redis.conf"
        })
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(if self.sentinel {
            "sentinel.log"
        } else {
            "redis.log"
        })
    }

    async fn spawn_and_wait(&self, binary: &Path) -> Result<(), Error> {
        let mut command = Command::new(binary);
        command
            .arg(self.conf_path())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.detached {
            // Its own process group, so a Ctrl-C in the terminal that ran `cargo xtask cluster-up` does
            // not take the cluster down with it.
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
        }
        let child = command
            .spawn()
            .map_err(|e| Error::io(format!("spawning {} for port {}", binary.display(), self.port), e))?;
        *self.lock() = Process::Owned(child);
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                *self.lock() = Process::Stopped;
                return Err(self.start_error(format!("the process exited with {status}")));
            }
            if let Ok(conn) = Conn::open(self.port, Duration::from_millis(500), self.tls.as_deref()).await {
                let pong: Result<String, _> = conn.call_str(&["PING"]).await;
                conn.close();
                if pong.is_ok() {
                    return Ok(());
                }
            }
            if started.elapsed() > START_TIMEOUT {
                self.kill_now();
                return Err(self.start_error(format!("no PING reply within {START_TIMEOUT:?}")));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn start_error(&self, reason: String) -> Error {
        Error::Start {
            port: self.port,
            reason,
            log: self.log_path(),
            log_tail: server::log_tail(&self.log_path(), 15),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Process> {
        // A panic while holding this lock cannot leave the enum half-written, so a poisoned lock is safe.
        self.process.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Some(status)` if an owned child has exited.
    fn exited(&self) -> Option<std::process::ExitStatus> {
        match &mut *self.lock() {
            Process::Owned(child) => child.try_wait().ok().flatten(),
            _ => None,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        cluster_config::NodeAddr::new("127.0.0.1", self.port).to_string()
    }

    /// The client port (the TLS port of a TLS node, whose plain port is closed).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The certificates of a TLS node; `None` for a plain one.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_deref()
    }

    /// The node's data directory (config, log, `nodes.conf`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The role the node was set up with. Failovers change the live role: see [`Node::role`].
    pub fn initial_role(&self) -> Role {
        self.initial_role
    }

    /// The process ID, while the process runs.
    pub fn pid(&self) -> Option<u32> {
        match &mut *self.lock() {
            Process::Owned(child) => match child.try_wait() {
                Ok(None) => Some(child.id()),
                _ => None,
            },
            Process::Adopted(pid) => pid_is_node(*pid, self.port).then_some(*pid),
            Process::Stopped => None,
        }
    }

    /// Whether the process is alive (it may still be paused).
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// `kill -9`: the node dies at once, losing whatever it had not replicated.
    pub fn kill(&self) -> Result<(), Error> {
        self.kill_now();
        Ok(())
    }

    /// Kills and reaps the process; nothing to do if it is not running.
    fn kill_now(&self) {
        let mut process = self.lock();
        match &mut *process {
            Process::Owned(child) => {
                // SIGCONT first: a stopped process still dies on SIGKILL, but being explicit keeps `wait`
                // from ever depending on that.
                let _ = signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
                let _ = child.kill();
                let _ = child.wait();
            }
            Process::Adopted(pid) => {
                if pid_is_node(*pid, self.port) {
                    let _ = signal::kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while pid_is_node(*pid, self.port) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
            Process::Stopped => {}
        }
        *process = Process::Stopped;
    }

    fn signal(&self, sig: Signal, name: &'static str) -> Result<(), Error> {
        let pid = self
            .pid()
            .ok_or_else(|| Error::Invalid(format!("node {} is not running", self.addr())))?;
        signal::kill(Pid::from_raw(pid as i32), sig).map_err(|source| Error::Signal {
            signal: name,
            pid,
            source,
        })
    }

    /// SIGSTOP: the process freezes with its sockets open, like a machine that stopped answering.
    pub fn pause(&self) -> Result<(), Error> {
        self.signal(Signal::SIGSTOP, "SIGSTOP")
    }

    /// SIGCONT after [`Node::pause`].
    pub fn resume(&self) -> Result<(), Error> {
        self.signal(Signal::SIGCONT, "SIGCONT")
    }

    /// Starts a stopped (killed) node again on the same port and directory; in a cluster it rejoins
    /// with the same node ID from its `nodes.conf`.
    pub async fn restart(&self) -> Result<(), Error> {
        if self.is_running() {
            return Err(Error::Invalid(format!(
                "node {} is still running; kill it first",
                self.addr()
            )));
        }
        let binary = if self.sentinel {
            server::redis_sentinel_binary()?
        } else {
            server::redis_server_binary()?
        };
        self.spawn_and_wait(&binary).await
    }

    /// Opens an admin connection.
    pub(crate) async fn conn(&self) -> Result<Conn, Error> {
        Conn::open(self.port, Duration::from_secs(2), self.tls.as_deref()).await
    }

    /// Sends one command, e.g. `node.command::<String, _, _>(["CLUSTER", "INFO"])`, and converts the
    /// reply ([`FromReply`]: text, bytes, integers, options, arrays, or the raw [`Reply`](crate::Reply)).
    ///
    /// Arguments may be text or bytes (anything that is `AsRef<[u8]>`). An error reply from the node is
    /// [`Error::Command`]; a reply of another type than asked is [`Error::Reply`].
    pub async fn command<R, I, A>(&self, args: I) -> Result<R, Error>
    where
        R: FromReply,
        I: IntoIterator<Item = A>,
        A: AsRef<[u8]>,
    {
        let args: Vec<A> = args.into_iter().collect();
        let conn = self.conn().await?;
        let result = conn.call(&args).await;
        conn.close();
        result
    }

    /// `INFO <section>`, parsed.
    pub async fn info(&self, section: &str) -> Result<Info, Error> {
        let conn = self.conn().await?;
        let result = conn.info(section).await;
        conn.close();
        result
    }

    /// `CLUSTER INFO`, parsed (`cluster_state`, `cluster_slots_assigned`, ...).
    pub async fn cluster_info(&self) -> Result<Info, Error> {
        let conn = self.conn().await?;
        let result = conn.cluster_info().await;
        conn.close();
        result
    }

    /// The role the node reports now (`INFO replication`).
    pub async fn role(&self) -> Result<Role, Error> {
        let info = self.info("replication").await?;
        info.role.ok_or_else(|| Error::Reply {
            addr: self.addr(),
            command: "INFO replication".into(),
            detail: format!("role is {:?}", info.get("role")),
        })
    }

    /// `CLIENT PAUSE <ms> ALL`: the node holds every client's commands for `duration`, while its process
    /// and the cluster bus keep running (so no failover happens).
    pub async fn client_pause(&self, duration: Duration) -> Result<(), Error> {
        let ms = duration.as_millis().to_string();
        self.command::<(), _, _>(["CLIENT", "PAUSE", ms.as_str(), "ALL"])
            .await
    }

    /// Runs `CLUSTER FAILOVER [FORCE|TAKEOVER]` on this node, which must be a replica.
    pub async fn failover(&self, kind: FailoverKind) -> Result<(), Error> {
        if !self.cluster {
            return Err(Error::Invalid(format!("{} is not a cluster node", self.addr())));
        }
        let mut words = vec!["CLUSTER", "FAILOVER"];
        match kind {
            FailoverKind::Graceful => {}
            FailoverKind::Force => words.push("FORCE"),
            FailoverKind::Takeover => words.push("TAKEOVER"),
        }
        self.command::<(), _, _>(words).await
    }

    /// The node's cluster ID (`CLUSTER MYID`).
    pub async fn node_id(&self) -> Result<String, Error> {
        self.command(["CLUSTER", "MYID"]).await
    }

    /// Stops the process (SIGKILL) if this handle owns it. Used by `Drop` of clusters.
    pub(crate) fn stop(&self) {
        self.kill_now();
    }
}

/// Whether `pid` is a live redis-server listening on `port`, so that a recycled PID is never signalled.
pub(crate) fn pid_is_node(pid: u32, port: u16) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(raw) => {
            let text = String::from_utf8_lossy(&raw).replace('\0', " ");
            text.contains("redis-server") && text.contains(&format!(":{port}"))
        }
        Err(_) => false,
    }
}
