//! Listening sockets and their accept loops.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::connection::Connection;
use super::{Link, Transport};
use crate::error::{SettingError, StartError};

/// Binds every address the bind specifications expand to (see
/// [`super::binds`]).
pub(crate) async fn bind(specs: &[String]) -> Result<Vec<TcpListener>, StartError> {
    let mut listeners = Vec::new();
    for addr in super::binds::resolve(specs).await? {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        listeners.push(listener);
    }
    if listeners.is_empty() && !specs.is_empty() {
        return Err(StartError::Config(SettingError::NoAddress(specs.to_vec())));
    }
    Ok(listeners)
}

/// Accepts connections until the node shuts down. Each accepted socket
/// gets its own connection actor at once; its handshake runs inside that
/// actor, so a silent client never delays the next accept. Connections
/// over the pending-handshake caps are closed at once (see
/// [`super::pending`]).
pub(crate) fn spawn_accept_loop(
    transport: Arc<Transport>,
    link: Arc<dyn Link>,
    listener: TcpListener,
) {
    actix_rt::spawn(async move {
        let pending = super::pending::ListenerPending::default();
        loop {
            let accepted = tokio::select! {
                _ = transport.shutdown_token().cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, addr)) => match transport.pending().admit(&pending, addr) {
                    Ok((guard, evicted)) => {
                        if let Some(victim) = evicted {
                            transport.pending().count_eviction(
                                &transport.local,
                                victim,
                                transport.limit_hits(),
                            );
                        }
                        let (t, l) = (transport.clone(), link.clone());
                        Connection::start(t, l, stream, addr, None, Some(guard));
                    }
                    Err(cap) => {
                        // closed before our greeting
                        transport.pending().refused(
                            &transport.local,
                            addr,
                            cap,
                            transport.limit_hits(),
                        );
                        drop(stream);
                    }
                },
                Err(e) => {
                    // e.g. out of file descriptors: back off instead of spinning
                    tracing::warn!(node = %transport.local, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
}
