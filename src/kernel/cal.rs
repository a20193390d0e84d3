//! `cal`: a request with a temporary reply port (the reference's `cal`).

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::monitors::Reason;
use super::node::Node;
use crate::error::{CalError, SendError};
use crate::wire::Packet;
use crate::wire::packet::message_values;

impl Node {
    /// Sends `msg` (an array) to `port` with a temporary reply port
    /// appended as its last element, and resolves to the first message that
    /// port gets.
    ///
    /// With a `timeout`, resolves to [`CalError::Timeout`] if no reply came
    /// in time. Without one, `port` is monitored instead, and its death
    /// (also a normal exit) resolves to [`CalError::TargetDied`] with the
    /// reason. Either way the reply port is killed afterwards, and the
    /// monitor is removed after a reply (sending `mon0` if it was the last
    /// monitor of that remote port).
    ///
    /// ```
    /// # actix_rt::System::new().block_on(async {
    /// let node = aemp::Node::builder().node_id("n").start().await.unwrap();
    /// let adder = node.port_fn(|ctx, msg| {
    ///     let (a, b, reply): (i64, i64, String) = msg.decode()?;
    ///     ctx.snd(reply, &(a + b,))?;
    ///     Ok(())
    /// });
    /// let reply = node.cal(&adder, &(2, 3), None).await.unwrap();
    /// assert_eq!(reply.decode::<(i64,)>().unwrap(), (5,));
    /// # node.shutdown();
    /// # });
    /// ```
    pub async fn cal<M: Serialize + ?Sized>(
        &self,
        port: impl AsRef<str>,
        msg: &M,
        timeout: Option<Duration>,
    ) -> Result<Packet, CalError> {
        let port = port.as_ref();
        let mut msg = message_values(msg).map_err(SendError::Encode)?;
        let (reply, mut replies) = self.port_channel();
        msg.push(Value::from(reply.as_str()));

        let (died_tx, mut died) = tokio::sync::oneshot::channel::<Reason>();
        let monitor = match timeout {
            Some(_) => None,
            None => Some(self.mon(port, move |reason| {
                let _ = died_tx.send(reason);
            })),
        };
        if let Err(e) = self.snd(port, &msg) {
            let _ = self.kil(&reply, Vec::new());
            if let Some(m) = monitor {
                m.unmon();
            }
            return Err(e.into());
        }

        let result = match timeout {
            Some(t) => match tokio::time::timeout(t, replies.recv()).await {
                Ok(Some(p)) => Ok(p),
                Ok(None) => Err(CalError::Send(SendError::Shutdown)),
                Err(_) => Err(CalError::Timeout(t)),
            },
            None => tokio::select! {
                p = replies.recv() => p.ok_or(CalError::Send(SendError::Shutdown)),
                reason = &mut died => Err(CalError::TargetDied(reason.unwrap_or_default())),
            },
        };
        let _ = self.kil(&reply, Vec::new());
        if let Some(m) = monitor {
            m.unmon(); // nothing happens if it fired
        }
        result
    }
}
