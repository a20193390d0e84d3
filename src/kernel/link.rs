//! The kernel's side of the transport's [`Link`]: where connections hand
//! their packets, slots and fates.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use super::node::{NodeEvent, NodeInner};
use crate::error::ConnectionError;
use crate::transport::connector::ConnectorId;
use crate::transport::dataconn::DataLink;
use crate::transport::outbox::Outbox;
use crate::transport::{Link, Peer, SlotTable};
use crate::wire::Packet;

impl Link for NodeInner {
    fn slots(&self) -> &dyn SlotTable {
        self.remote.peers()
    }

    fn route(&self, from: &Arc<str>, packet: Packet) {
        NodeInner::route(self, from, packet)
    }

    fn attach(&self, peer: &Peer, outbox: Arc<Outbox>) -> Result<(), ()> {
        self.remote
            .peers()
            .attach(peer.node.clone(), peer.conn, outbox)
    }

    fn node_up(&self, peer: &Peer) {
        self.peer_up(peer)
    }

    fn connection_lost(&self, node: &str, conn: u64, error: &ConnectionError) {
        NodeInner::connection_lost(self, node, conn, error)
    }

    fn handshake_failed(&self, addr: SocketAddr, node: Option<String>, error: &ConnectionError) {
        self.emit(NodeEvent::HandshakeFailed {
            addr,
            node,
            error: error.clone(),
        });
    }

    fn addresses_of(&self, node: &str) -> Vec<String> {
        NodeInner::addresses_of(self, node)
    }

    fn address_changes(&self) -> watch::Receiver<u64> {
        self.remote.address_changes()
    }

    fn node_is_up(&self, node: &str) -> bool {
        self.remote.peers().is_up(node)
    }

    fn is_connecting(&self, node: &str, id: ConnectorId) -> bool {
        self.remote.peers().is_connecting(node, id)
    }

    fn stop_connecting(&self, node: &str, id: ConnectorId) {
        self.remote.peers().stop_connecting(node, id)
    }

    fn unable_to_connect(&self, node: &str) {
        NodeInner::unable_to_connect(self, node)
    }

    fn data_connection(&self, link: DataLink) {
        match self.data_handler() {
            Some(handler) => handler(link),
            None => {
                tracing::info!(node = %self.id, remote = %link.established.remote_node, "data connection without a data connection service; closed");
            }
        }
    }
}
