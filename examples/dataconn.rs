//! Moves bytes through a data connection between two in-process nodes and
//! prints the rate, then does the same with a plain tokio TCP copy over
//! loopback for comparison (both on the same single-threaded runtime).
//!
//! ```text
//! cargo run --release --example dataconn                      # 1 GiB, hmac-authenticated plain TCP
//! cargo run --release --example dataconn -- --mib 256 --cert tests/fixtures/certs/gencert-openssl.pem   # over TLS
//! ```
//!
//! The target node's init function `Bench::sink` reads the stream to its
//! end and answers with the byte count (8 bytes, big-endian); the time is
//! taken from the first write to that answer.

use std::time::{Duration, Instant};

use aemp::wire::NodeCert;
use aemp::{DataStream, HandlerError, Node};
use clap::Parser;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Parser, Debug)]
#[command(about = "data connection throughput against a plain TCP copy")]
struct Args {
    /// MiB to move.
    #[arg(long, default_value_t = 1024)]
    mib: u64,
    /// Size of each write, in KiB.
    #[arg(long, default_value_t = 256)]
    chunk_kib: usize,
    /// A `cert` PEM blob: both nodes talk TLS (the plain copy stays plain).
    #[arg(long)]
    cert: Option<String>,
}

/// Reads `stream` to its end and answers with the number of bytes read.
async fn drain<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    stream.write_all(&total.to_be_bytes()).await?;
    stream.shutdown().await?;
    Ok(total)
}

fn sink(_: &Node, _: Vec<Value>, stream: DataStream) -> Result<(), HandlerError> {
    actix_rt::spawn(async move {
        if let Err(e) = drain(stream).await {
            eprintln!("sink: {e}");
        }
    });
    Ok(())
}

/// Writes `total` bytes in `chunk`-sized writes, closes the write side,
/// and waits for the byte count; returns the seconds it took.
async fn push<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    total: u64,
    chunk: usize,
) -> std::io::Result<f64> {
    let data = vec![0x5au8; chunk];
    let start = Instant::now();
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk as u64) as usize;
        stream.write_all(&data[..n]).await?;
        left -= n as u64;
    }
    stream.shutdown().await?;
    let mut ack = [0u8; 8];
    stream.read_exact(&mut ack).await?;
    let secs = start.elapsed().as_secs_f64();
    let got = u64::from_be_bytes(ack);
    if got != total {
        return Err(std::io::Error::other(format!(
            "receiver counted {got} bytes of {total}"
        )));
    }
    Ok(secs)
}

fn report(what: &str, total: u64, secs: f64) -> f64 {
    let mib_s = total as f64 / (1024.0 * 1024.0) / secs;
    println!(
        "{what:<16} {:>6} MiB in {secs:>6.3} s = {mib_s:>8.1} MiB/s",
        total >> 20
    );
    mib_s
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let total = args.mib << 20;
    let chunk = args.chunk_kib * 1024;
    actix_rt::System::new().block_on(async move {
        let cert = match &args.cert {
            Some(path) => Some(NodeCert::from_pem(&std::fs::read_to_string(path)?)?),
            None => None,
        };
        let builder = |id: &str| {
            let b = Node::builder().node_id(id).secret("bench-secret");
            match &cert {
                Some(c) => b.cert(c.clone()),
                None => b,
            }
        };
        let target = builder("dcT")
            .bind("127.0.0.1:0")
            .dataconn_init("Bench::sink", sink)
            .start()
            .await?;
        let requester = builder("dcR").start().await?;
        requester
            .connect(target.listen_addrs()[0].to_string())
            .await?;
        let stream = aemp::dataconn::connect_to(
            &requester,
            "dcT",
            Duration::from_secs(10),
            "Bench::sink",
            vec![],
        )
        .await?;
        let label = if cert.is_some() {
            "dataconn (TLS)"
        } else {
            "dataconn"
        };
        let dc = report(label, total, push(stream, total, chunk).await?);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        actix_rt::spawn(async move {
            if let Ok((s, _)) = listener.accept().await {
                let _ = s.set_nodelay(true);
                if let Err(e) = drain(s).await {
                    eprintln!("plain sink: {e}");
                }
            }
        });
        let s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let plain = report("plain tcp", total, push(s, total, chunk).await?);
        println!("dataconn / plain = {:.2}", dc / plain);
        requester.shutdown();
        target.shutdown();
        Ok(())
    })
}
