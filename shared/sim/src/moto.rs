//! Launcher for moto, the local DynamoDB and SQS emulator that the adapter tests run against.
//!
//! `Moto::start` either uses the server named by `COUNTSYNC_MOTO_ENDPOINT` (started once by CI and
//! shared) or spawns `moto_server` on a free 127.0.0.1 port and kills it when the `Moto` value is
//! dropped. Tests that share one server must use unique table and queue names.

use std::io::ErrorKind;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// Environment variable naming an already running moto server, e.g. `http://127.0.0.1:5000`.
pub const ENDPOINT_ENV: &str = "COUNTSYNC_MOTO_ENDPOINT";

/// How long `start` waits for a spawned server to respond to HTTP.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A running moto server: either shared (no process owned) or spawned by this value.
#[derive(Debug)]
pub struct Moto {
    endpoint: String,
    child: Option<Child>,
}

impl Moto {
    /// Connects to the shared server named by `COUNTSYNC_MOTO_ENDPOINT`, or spawns one on a free
    /// 127.0.0.1 port and waits until it responds to HTTP.
    pub async fn start() -> anyhow::Result<Moto> {
        if let Ok(endpoint) = std::env::var(ENDPOINT_ENV) {
            let endpoint = endpoint.trim_end_matches('/').to_string();
            return Ok(Moto { endpoint, child: None });
        }
        Self::spawn().await
    }

    /// Spawns a server of its own on a free 127.0.0.1 port, whatever `COUNTSYNC_MOTO_ENDPOINT`
    /// names. One moto process runs Python code on one core at a time, so a heavy user (the
    /// chaos harness) gives each service its own server.
    pub async fn spawn() -> anyhow::Result<Moto> {
        let port = free_port().await?;
        let mut child = spawn_server(port)?;
        let endpoint = format!("http://127.0.0.1:{port}");
        wait_until_ready(&mut child, port).await?;
        Ok(Moto { endpoint, child: Some(child) })
    }

    /// Base URL of the server, without a trailing slash.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Builds an SDK configuration for this server: region `us-east-1`, static fake credentials
    /// and the endpoint override. Region and credentials are explicit, so the loader never calls
    /// the EC2 instance metadata service.
    pub async fn sdk_config(&self) -> SdkConfig {
        let credentials = Credentials::new("testing", "testing", None, None, "countsync-sim-moto");
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(credentials)
            .endpoint_url(&self.endpoint)
            .load()
            .await
    }

    /// Kills the spawned server and waits for it to exit. Does nothing for a shared server.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await.context("failed to stop moto_server")?;
        }
        Ok(())
    }
}

/// Returns a port that was free on 127.0.0.1 a moment ago.
async fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("failed to bind a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

fn spawn_server(port: u16) -> anyhow::Result<Child> {
    let spawned = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    match spawned {
        Ok(child) => Ok(child),
        Err(error) if error.kind() == ErrorKind::NotFound => bail!(
            "moto_server not found on PATH: install it with `pip install 'moto[server]'` \
             or set {ENDPOINT_ENV} to a running server"
        ),
        Err(error) => Err(error).context("failed to spawn moto_server"),
    }
}

/// Polls the server until it responds to an HTTP request, the process exits or the timeout passes.
async fn wait_until_ready(child: &mut Child, port: u16) -> anyhow::Result<()> {
    let started = tokio::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().context("failed to poll moto_server")? {
            bail!("moto_server exited during startup with {status}; is port {port} taken?");
        }
        if answers_http(port).await {
            return Ok(());
        }
        if started.elapsed() > STARTUP_TIMEOUT {
            bail!("moto_server on 127.0.0.1:{port} did not respond to HTTP within {STARTUP_TIMEOUT:?}; run it by hand to see its output");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Sends one plain HTTP request and returns whether an HTTP status line came back.
async fn answers_http(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await?;
        let mut head = [0u8; 5];
        stream.read_exact(&mut head).await?;
        Ok::<bool, std::io::Error>(&head == b"HTTP/")
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), attempt).await, Ok(Ok(true)))
}
