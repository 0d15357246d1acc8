//! A loopback TCP stand-in for a host: it either forwards every connection to an upstream
//! address, or accepts connections and never answers (a stalled host: the TCP handshake
//! completes, then nothing). Which one can change while it runs; it stops when dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};

/// A running stand-in; stops (and drops every held connection) when dropped.
pub struct TcpStandIn {
    addr: SocketAddr,
    upstream: Arc<Mutex<Option<SocketAddr>>>,
    forwards: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpStandIn {
    /// Listens on `bind` (port 0 picks a free one); `upstream = None` stalls every
    /// connection.
    pub async fn start(bind: &str, upstream: Option<SocketAddr>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let upstream = Arc::new(Mutex::new(upstream));
        let forwards = Arc::new(Mutex::new(Vec::new()));
        let (target, running) = (upstream.clone(), forwards.clone());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((client, _)) = listener.accept().await {
                let to = *target.lock().unwrap();
                match to {
                    Some(to) => {
                        let forwarding = tokio::spawn(forward(client, to));
                        running.lock().unwrap().push(forwarding.abort_handle());
                    }
                    None => held.push(client),
                }
            }
        });
        Ok(Self {
            addr,
            upstream,
            forwards,
            task,
        })
    }

    /// A stalled host on a free loopback port.
    pub async fn stalled() -> Self {
        Self::start("127.0.0.1:0", None)
            .await
            .expect("a loopback listener")
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on, new connections go to `upstream` (`None`: stall them).
    pub fn set_upstream(&self, upstream: Option<SocketAddr>) {
        *self.upstream.lock().unwrap() = upstream;
    }

    /// Closes every forwarded connection at once (both ends see the socket close).
    pub fn cut(&self) {
        for forwarding in self.forwards.lock().unwrap().drain(..) {
            forwarding.abort();
        }
    }
}

/// A loopback address that drops SYNs: a listener that never accepts, with an accept queue
/// of one that is kept full, so the kernel drops every further handshake and a `connect`
/// hangs as it does towards a black-holed host. Held until dropped.
pub struct BlackHole {
    addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _queued: Vec<TcpStream>,
}

impl BlackHole {
    /// Binds one and fills its accept queue.
    pub async fn start() -> std::io::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind("127.0.0.1:0".parse().unwrap())?;
        let listener = socket.listen(1)?;
        let addr = listener.local_addr()?;
        let mut queued = Vec::new();
        // Linux queues backlog + 1 connections; the ones after are never answered.
        for _ in 0..4 {
            match tokio::time::timeout(
                std::time::Duration::from_millis(200),
                TcpStream::connect(addr),
            )
            .await
            {
                Ok(Ok(stream)) => queued.push(stream),
                _ => break,
            }
        }
        Ok(Self {
            addr,
            _listener: listener,
            _queued: queued,
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether a new connection really hangs (the kernel drops its SYN).
    pub async fn drops_syns(&self) -> bool {
        tokio::time::timeout(
            std::time::Duration::from_millis(500),
            TcpStream::connect(self.addr),
        )
        .await
        .is_err()
    }
}

impl Drop for TcpStandIn {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

async fn forward(mut client: TcpStream, to: SocketAddr) {
    if let Ok(mut server) = TcpStream::connect(to).await {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}
