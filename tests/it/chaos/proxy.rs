//! A TCP proxy in front of the sandbox that can hold back the *answers to writes*: requests
//! reach the sandbox at once (so the write is done), and the answer to a `PATCH`, `PUT` or
//! `POST` (lookups and searches excepted) waits `delay` before it is passed on. With a delay
//! above the client's timeout, this is the case the sandbox's own delay faults cannot make
//! (they hold the request, and the sandbox drops the handler when the client gives up):
//! Genesys did the write, the client never heard of it. Reads pass, so the service's
//! outage probe sees Genesys answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; stops when dropped.
pub struct AnswerDelayProxy {
    addr: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    held: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl AnswerDelayProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let delay_ms = Arc::new(AtomicU64::new(0));
        let held = Arc::new(AtomicU64::new(0));
        let (delay, counter) = (delay_ms.clone(), held.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, upstream, delay.clone(), counter.clone()));
            }
        });
        Ok(Self {
            addr,
            delay_ms,
            held,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many answers were held back so far.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Holds the answer of every write from now on for `delay` (zero: none).
    pub fn set_answer_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for AnswerDelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    held: Arc<AtomicU64>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // reqwest sends one request at a time on a connection: the last request head seen
    // says whether the next answer is a write's.
    let write_pending = AtomicBool::new(false);
    let requests = async {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = client_read.read(&mut buffer).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            if let Some(is_write) = request_head_is_write(&buffer[..n]) {
                write_pending.store(is_write, Ordering::Relaxed);
            }
            server_write.write_all(&buffer[..n]).await?;
        }
    };
    let answers = async {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = server_read.read(&mut buffer).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            let delay = delay_ms.load(Ordering::Relaxed);
            if delay > 0 && write_pending.swap(false, Ordering::Relaxed) {
                held.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            client_write.write_all(&buffer[..n]).await?;
        }
    };
    // Either side closing ends both (a client that timed out drops its held answer).
    tokio::select! {
        _ = requests => {}
        _ = answers => {}
    }
}

/// For a chunk that starts a request: whether it is a write whose answer should be held.
fn request_head_is_write(chunk: &[u8]) -> Option<bool> {
    let head = std::str::from_utf8(&chunk[..chunk.len().min(200)]).ok()?;
    let line = head.lines().next()?;
    let (method, rest) = line.split_once(' ')?;
    if !matches!(method, "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD") {
        return None;
    }
    let read_only = method == "GET"
        || method == "HEAD"
        || rest.contains("/identifierlookup")
        || rest.contains("/attributes/search");
    Some(!read_only)
}
