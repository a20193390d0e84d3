//! Handshakes per second: fresh client nodes connect one after another to
//! one listening node, with hmac over plain text and with TLS.
//!
//! ```sh
//! cargo run --release --example handshakes -- --count 500
//! ```
//!
//! Each round starts a client node, completes the handshake (the time
//! until `connect` returns), and shuts the client down; the figure is
//! rounds per second of handshake time, so node start-up is not in it.

use std::time::{Duration, Instant};

use aemp::Node;
use aemp::wire::NodeCert;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "AEMP handshakes per second, plain and TLS")]
struct Args {
    /// Handshakes per kind.
    #[arg(long, default_value_t = 500)]
    count: u32,
}

/// A self-signed CA certificate, as `aemp gencert` makes, as a `cert` blob.
fn gencert() -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("certificate");
    format!("{}{}", cert.pem(), key.serialize_pem())
}

async fn run(count: u32, cert: Option<&str>) -> Result<(f64, Duration), String> {
    let with_cert = |b: aemp::NodeBuilder| match cert {
        Some(pem) => NodeCert::from_pem(pem)
            .map(|c| b.cert(c))
            .map_err(|e| e.to_string()),
        None => Ok(b),
    };
    let server = with_cert(
        Node::builder()
            .node_id("hs-server")
            .secret("s")
            .bind("127.0.0.1:0"),
    )?
    .start()
    .await
    .map_err(|e| e.to_string())?;
    let addr = server.listen_addrs()[0].to_string();
    let mut spent = Duration::ZERO;
    let mut worst = Duration::ZERO;
    for i in 0..count {
        let client = with_cert(Node::builder().node_id(format!("hs-client{i}")).secret("s"))?
            .start()
            .await
            .map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        client
            .connect(addr.clone())
            .await
            .map_err(|e| e.to_string())?;
        let took = t0.elapsed();
        spent += took;
        worst = worst.max(took);
        client.shutdown();
    }
    server.shutdown();
    Ok((f64::from(count) / spent.as_secs_f64(), worst))
}

fn main() {
    let args = Args::parse();
    let pem = gencert();
    let result = actix_rt::System::new().block_on(async {
        for (label, cert) in [
            ("hmac, plain text", None),
            ("TLS (tls_md6_64_256)", Some(pem.as_str())),
        ] {
            let (rate, worst) = run(args.count, cert).await?;
            println!(
                "{label}: {} handshakes, {rate:.0} handshakes/s, slowest {:.2} ms",
                args.count,
                worst.as_secs_f64() * 1e3
            );
        }
        Ok::<(), String>(())
    });
    if let Err(e) = result {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
