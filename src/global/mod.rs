//! The Global service (`AnyEvent::MP::Global`): a full mesh of nodes and
//! network-wide port groups. Every node runs it.
//!
//! On every node-up each side spawns `AnyEvent::MP::Global::connect(0,
//! <own id>)` on the other node, monitors that port, and sends it, in
//! order, `addr` (our listen addresses), `nodes` (the addresses we know),
//! `set` (our group registrations) and `setup`. The spawned port — served
//! here by `Global::connect_port` — understands `setup`, `addr`, `nodes`,
//! `set`, `find`, `reg0`, `reg1`, `seedme0` and `seedme1`. Seeds and the
//! choice of a master are in `mesh.rs`, groups in [`groups`]. Every
//! message to and from a connect port is a [`crate::wire::GlobalMsg`].

pub mod groups;
pub(crate) mod mesh;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use serde_json::Value;
use tokio::sync::{Notify, watch};

use crate::Limit;
use crate::kernel::{
    HandlerError, Monitor, Node, NodeChange, PortBehaviour, PortContext, PortId, WeakNode,
};
use crate::wire::{GlobalMsg, GlobalMsgError};

pub use groups::{GroupChange, GroupChanges, GroupError, GroupMonitor, GroupRegistration};

/// The init function each node spawns on every other node.
pub const CONNECT_FUNCTION: &str = crate::wire::CONNECT_FUNCTION;

/// The Global protocol version (compared by integer part).
pub const GLOBAL_VERSION: i64 = 0;

/// A group monitor callback: `(all members, added, removed)`.
pub(crate) type GroupMonFn = Arc<dyn Fn(&[PortId], &[PortId], &[PortId]) + Send + Sync>;

/// What the service knows; one lock, never held while calling out.
#[derive(Default)]
pub(crate) struct State {
    /// Listen addresses of other nodes, as they told us (`%addr`).
    pub(crate) addr: BTreeMap<String, Vec<String>>,
    /// Our connect port on each other node (`%port`).
    pub(crate) port: HashMap<String, PortId>,
    /// Our local registrations: group → ports (`%lreg`).
    pub(crate) lreg: BTreeMap<String, Vec<PortId>>,
    /// The monitors that unregister local ports when they die (`%lmon`).
    pub(crate) lmon: HashMap<(String, PortId), Monitor>,
    /// Everybody's registrations: group → ports (`%greg`).
    pub(crate) greg: HashMap<String, BTreeSet<PortId>>,
    /// How many of `greg`'s memberships are ports of each node (the
    /// budget of `peer_max_group_registrations`; what `unreg_groups`
    /// removes at node-down).
    pub(crate) greg_per_node: HashMap<String, usize>,
    /// Group watchers (`%gmon`).
    pub(crate) gmon: HashMap<String, Vec<(u64, GroupMonFn)>>,
    /// Nodes a peer's `nodes` message had us try to reach, unknown to us
    /// until then, with the peer that named them: each holds a unit of
    /// that peer's `peer_max_introduced_nodes` until it comes up or our
    /// Global link to it dies (the attempt gave up).
    pub(crate) introduced: HashMap<String, String>,
    /// How many of `introduced` each peer named.
    pub(crate) introduced_per_peer: HashMap<String, usize>,
    /// Peers whose connect port here we killed over a limit: their Global
    /// dropped our registrations then, so they get them again when they
    /// spawn a new one (see `Global::refuse`).
    pub(crate) cut_links: HashSet<String>,
    /// Nodes that asked us for network updates (`%SEEDME`).
    pub(crate) seedme: HashSet<String>,
    /// Seed addresses and the node id behind each, once known (`%SEEDS`).
    pub(crate) seeds: BTreeMap<String, Option<String>>,
    /// Seeds with a connect attempt or a live connection (`%SEED_CONNECT`).
    pub(crate) seed_busy: HashSet<String>,
    /// Seeds not tried in this round yet (`@SEEDS`).
    pub(crate) rotation: Vec<String>,
    /// The node we ask for network updates (`$MASTER`).
    pub(crate) master: Option<String>,
    /// Nodes up.
    pub(crate) nodecnt: usize,
    pub(crate) next_id: u64,
}

/// The service of one node. It sits on top of the kernel and reaches its
/// node only through the node's interface: node-change callbacks, an
/// init function, ports, monitors and sends.
pub(crate) struct Global {
    /// The node it serves (weak: the node keeps the service).
    node: WeakNode,
    state: Mutex<State>,
    /// Runs the seeding at once (the last node went down).
    seed_now: Notify,
    /// Bumped when a node goes down (seed connections wait for it).
    downs: watch::Sender<u64>,
    /// Bumped at every `addr` and `setup` another node sends us (the
    /// reference's `%ON_SETUP` hooks; data connections wait for it).
    setups: watch::Sender<u64>,
}

impl State {
    /// `id` came up, or our Global link to it died: the peer that named
    /// it gets its unit of `peer_max_introduced_nodes` back.
    fn release_introduced(&mut self, id: &str) {
        if let Some(peer) = self.introduced.remove(id)
            && let Some(n) = self.introduced_per_peer.get_mut(&peer)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.introduced_per_peer.remove(&peer);
            }
        }
    }

    /// Our registrations, as a `set` message; `None` if we have none.
    fn set_message(&self) -> Option<GlobalMsg> {
        (!self.lreg.is_empty()).then(|| {
            GlobalMsg::Set(
                self.lreg
                    .iter()
                    .map(|(g, ports)| (g.clone(), ports.iter().map(|p| p.to_string()).collect()))
                    .collect(),
            )
        })
    }

    /// Every address we know, as a `nodes` message; `None` if we know
    /// none.
    fn nodes_message(&self) -> Option<GlobalMsg> {
        (!self.addr.is_empty()).then(|| {
            GlobalMsg::Nodes(
                self.addr
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        })
    }
}

/// The service and its node, if both are alive.
fn alive(g: &Weak<Global>) -> Option<(Arc<Global>, Node)> {
    let g = g.upgrade()?;
    let node = g.node.upgrade()?;
    Some((g, node))
}

impl Global {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// The service of `node` (a node built without it gets an idle one).
    pub(crate) fn of(node: &Node) -> Arc<Global> {
        node.service::<Global>()
            .unwrap_or_else(|| Arc::new(Global::new(node)))
    }

    fn new(node: &Node) -> Global {
        Global {
            node: node.downgrade(),
            state: Mutex::new(State::default()),
            seed_now: Notify::new(),
            downs: watch::Sender::new(0),
            setups: watch::Sender::new(0),
        }
    }

    /// Plugs the service into `node`: its init function, its node-change
    /// callback (the first one, so it sees a node up before user code
    /// does), and the seeds.
    pub(crate) fn install(node: &Node) {
        let g = Arc::new(Global::new(node));
        node.install_service(g.clone());
        let weak = Arc::downgrade(&g);
        let connect = move |ctx: &PortContext, args: Vec<Value>| match alive(&weak) {
            Some((g, node)) => g.connect_port(&node, ctx, args),
            None => Err("node gone".into()),
        };
        if let Err(error) = node.register_init(CONNECT_FUNCTION, connect) {
            tracing::error!(node = node.id(), %error, "Global cannot register its init function");
        }
        let weak = Arc::downgrade(&g);
        node.on_node_change(move |change| {
            if let Some((g, node)) = alive(&weak) {
                if let NodeChange::Up {
                    dialed: Some(addr),
                    node: id,
                    ..
                } = change
                {
                    // before node-up: whether it is a seed decides the master
                    g.dialed(addr, id);
                }
                g.mon_node(&node, change.node(), change.is_up());
            }
        })
        .forget();
        mesh::start_seeding(&g, node);
    }

    /// A connection we dialled to `addr` completed with node `id`: if
    /// `addr` is a seed, that is its node (the reference's connect hook).
    pub(crate) fn dialed(&self, addr: &str, id: &str) {
        if let Some(entry) = self.lock().seeds.get_mut(addr) {
            *entry = Some(id.to_owned());
        }
    }

    /// The listen addresses node `id` told us (`$addr{$id}`): `None` if it
    /// told us nothing (yet), an empty list if it has no listeners. The
    /// table is left as it is.
    pub(crate) fn addresses(&self, id: &str) -> Option<Vec<String>> {
        self.lock().addr.get(id).cloned()
    }

    /// Bumped whenever another node sends us its `addr` or `setup`.
    pub(crate) fn setups(&self) -> watch::Receiver<u64> {
        self.setups.subscribe()
    }

    /// Our listen addresses as `host:port` strings (the real bound ones).
    fn listeners(node: &Node) -> Vec<String> {
        node.listen_addrs().iter().map(|a| a.to_string()).collect()
    }

    /// Opens the Global exchange with node `id` (once per node): spawns our
    /// connect port there, monitors it, and sends `addr`, `nodes`, `set`,
    /// `setup`. Whether it spawned the port now.
    pub(crate) fn start_node(self: &Arc<Self>, node: &Node, id: &str) -> bool {
        if id == node.id() {
            return false;
        }
        let args = crate::wire::connect_args(GLOBAL_VERSION, node.id());
        let (gport, nodes, set) = {
            let mut st = self.lock();
            if st.port.contains_key(id) {
                return false;
            }
            // spawning only sends: it never calls back into this service
            let gport = match node.spawn(id, CONNECT_FUNCTION, &args) {
                Ok(p) => p,
                Err(error) => {
                    tracing::warn!(node = node.id(), remote = id, %error, "cannot start Global with node");
                    return false;
                }
            };
            st.port.insert(id.to_owned(), gport.clone());
            let nodes = st.nodes_message();
            (gport, nodes, st.set_message())
        };
        let weak = Arc::downgrade(self);
        let (remote, watched) = (id.to_owned(), gport.clone());
        node.mon(&gport, move |_| {
            if let Some((g, node)) = alive(&weak) {
                g.connect_port_died(&node, &remote, &watched);
            }
        })
        .forget();
        let mut msgs = vec![GlobalMsg::Addr(Self::listeners(node))];
        msgs.extend(nodes);
        msgs.extend(set);
        msgs.push(GlobalMsg::Setup);
        for msg in msgs {
            if let Err(error) = node.snd(gport.as_str(), &msg.encode()) {
                tracing::warn!(node = node.id(), remote = id, %error, "Global message not sent");
            }
        }
        true
    }

    /// Our connect port on `remote` died: its registrations go.
    fn connect_port_died(&self, node: &Node, remote: &str, gport: &PortId) {
        {
            let mut st = self.lock();
            if st.port.get(remote) == Some(gport) {
                st.port.remove(remote);
            }
            st.release_introduced(remote);
        }
        groups::unreg_groups(self, node, remote);
    }

    /// Sends `msg` to our connect port on `remote`, if there is one.
    fn to_node(&self, node: &Node, remote: &str, msg: &GlobalMsg) {
        let port = self.lock().port.get(remote).cloned();
        if let Some(port) = port
            && let Err(error) = node.snd(port.as_str(), &msg.encode())
        {
            tracing::debug!(node = node.id(), remote, %error, "Global message not sent");
        }
    }

    /// The init function `AnyEvent::MP::Global::connect(version, node)`:
    /// the port through which `node` talks to our Global service.
    fn connect_port(
        self: &Arc<Self>,
        node: &Node,
        ctx: &PortContext,
        args: Vec<Value>,
    ) -> Result<PortBehaviour, HandlerError> {
        // Perl: `(int $version) == (int $GLOBAL_VERSION)`, so a missing or
        // non-numeric version is 0, and so is ours; NaN equals nothing
        let version = args.first().map_or(0.0, crate::wire::perl_numify);
        if version.trunc() != GLOBAL_VERSION as f64 {
            let shown = match args.first() {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => crate::wire::printable(s),
                Some(v) => v.to_string(),
            };
            return Err(format!(
                "node version mismatch (requested {shown}; we have {GLOBAL_VERSION})"
            )
            .into());
        }
        let remote = args
            .get(1)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or("Global::connect needs the caller's node id")?
            .to_owned();
        // the reference takes the id on trust; a peer naming another node
        // (or a made-up one) would hold registrations under a name that
        // never goes down, charged to nobody
        if let Some(src) = ctx.src_node()
            && src != remote
        {
            return Err(
                format!("Global::connect: node {src} cannot connect as node {remote}").into(),
            );
        }
        // a link we cut over a limit is made again: that node's Global
        // dropped our registrations when we cut it
        let relinked = {
            let mut st = self.lock();
            st.cut_links
                .remove(&remote)
                .then(|| st.set_message())
                .flatten()
        };
        if let Some(set) = relinked {
            self.to_node(node, &remote, &set);
        }
        // when that node's transport fails: end this port (Global.pm 321;
        // its `delete $SEEDME{$node}` is in `mon_node`, once per node
        // rather than a callback per port a peer spawns)
        node.mon_exit(&remote, ctx.port()).forget();
        let weak = Arc::downgrade(self);
        Ok(PortBehaviour::handler(move |ctx, msg| {
            // only the node that opened this port speaks through it (the
            // reference does not check: a peer guessing another node's
            // port name could rewrite that node's addresses)
            if msg.src_node().is_some_and(|src| src != &*remote) {
                tracing::debug!(
                    remote,
                    src = msg.src_node(),
                    "Global message from another node than the port's ignored"
                );
                return Ok(());
            }
            if let Some((g, node)) = alive(&weak)
                && node.decodable(&remote, &msg, "a Global message")
            {
                g.request(&node, &remote, ctx, msg.values()?);
            }
            Ok(())
        }))
    }

    /// A message of `remote` to its connect port `ctx` here went over one
    /// of the per-peer limits: its registrations here go, and the port is
    /// killed with `["limit_exceeded", limit, text]` — `remote`'s Global
    /// then forgets its link to us and our registrations, as when the port
    /// dies otherwise (Global.pm 295), until it spawns a new connect port
    /// here (at its next node-up of us, or when a `nodes` message names us
    /// to it: Global.pm 350–353); we send it our registrations again then.
    /// The protocol has no error message of its own.
    fn refuse(&self, node: &Node, remote: &str, ctx: &PortContext, limit: Limit, cap: usize) {
        self.lock().cut_links.insert(remote.to_owned());
        let what = match limit {
            Limit::GroupRegistrations => "a Global group registration",
            _ => "a Global addr or nodes message",
        };
        node.limit_refused(remote, limit, cap, what);
        let setting = match limit {
            Limit::GroupRegistrations => "peer_max_group_registrations",
            _ => "peer_max_addresses",
        };
        let text = format!(
            "node {remote} is over its limit of {cap} on node {} ({setting}); Global link closed",
            node.id()
        );
        groups::unreg_groups(self, node, remote);
        ctx.kil(crate::kernel::limit_reason(limit, text));
    }

    /// One message from `remote` to its connect port `ctx` here.
    fn request(self: &Arc<Self>, node: &Node, remote: &str, ctx: &PortContext, msg: Vec<Value>) {
        let msg = match GlobalMsg::parse(msg) {
            Ok(msg) => msg,
            Err(GlobalMsgError::Unknown { tag }) => {
                return tracing::debug!(
                    node = node.id(),
                    remote,
                    tag = tag.as_str(),
                    "unknown Global request ignored"
                );
            }
            // a `find` of a non-string: nothing to look up, nothing to say
            Err(GlobalMsgError::Malformed { tag: "find", .. }) => return,
            Err(GlobalMsgError::Malformed { tag, .. }) => {
                return crate::transport::log_throttle::peer_warn!(
                    node.log_throttle(),
                    remote,
                    node = node.id(),
                    remote,
                    tag,
                    "malformed Global request ignored"
                );
            }
        };
        if let Some((limit, cap)) = self.over_limit(node, remote, &msg) {
            return self.refuse(node, remote, ctx, limit, cap);
        }
        match msg {
            GlobalMsg::Setup => self.setups.send_modify(|n| *n = n.wrapping_add(1)),
            GlobalMsg::Addr(addresses) => {
                mesh::addr(self, node, remote, addresses);
                self.setups.send_modify(|n| *n = n.wrapping_add(1));
            }
            GlobalMsg::Nodes(known) => mesh::nodes(self, node, remote, known),
            GlobalMsg::Find(other) => {
                let known = self.lock().addr.get(&other).cloned();
                if let Some(addrs) = known {
                    self.to_node(node, remote, &GlobalMsg::Nodes(vec![(other, addrs)]));
                }
            }
            GlobalMsg::Set(sets) => {
                for (group, ports) in sets {
                    let add = groups::own_ports(node, remote, &group, ports);
                    groups::change(self, node, &group, add, Vec::new());
                }
            }
            GlobalMsg::Reg1 { group, port } => {
                let add = groups::own_ports(node, remote, &group, vec![port]);
                groups::change(self, node, &group, add, vec![]);
            }
            GlobalMsg::Reg0 { group, port } => {
                // as for `reg1`: a peer withdraws its own ports only
                let remove = groups::own_ports(node, remote, &group, vec![port]);
                groups::change(self, node, &group, vec![], remove);
            }
            GlobalMsg::Seedme0 => {
                self.lock().seedme.remove(remote);
            }
            GlobalMsg::Seedme1 => {
                let nodes = {
                    let mut st = self.lock();
                    st.seedme.insert(remote.to_owned());
                    st.nodes_message()
                };
                if let Some(nodes) = nodes {
                    self.to_node(node, remote, &nodes);
                }
            }
        }
    }

    /// Which per-peer limit `msg` from `remote` would go over, with its
    /// value: `peer_max_addresses` for the addresses of an `addr` or
    /// `nodes`, `peer_max_group_registrations` for the registrations
    /// `remote` would hold after a `reg1` or `set`.
    fn over_limit(&self, node: &Node, remote: &str, msg: &GlobalMsg) -> Option<(Limit, usize)> {
        let cfg = node.config();
        match msg {
            GlobalMsg::Addr(addrs) => {
                let cap = cfg.peer_max_addresses;
                (addrs.len() > cap).then_some((Limit::GroupAddresses, cap))
            }
            GlobalMsg::Nodes(known) => {
                let cap = cfg.peer_max_addresses;
                let n: usize = known.iter().map(|(_, a)| a.len().max(1)).sum();
                (n > cap).then_some((Limit::GroupAddresses, cap))
            }
            GlobalMsg::Reg1 { group, port } => {
                let cap = cfg.peer_max_group_registrations;
                let st = self.lock();
                let held = st.greg_per_node.get(remote).copied().unwrap_or(0);
                let new = PortId::from(port.as_str());
                let known = st.greg.get(group).is_some_and(|m| m.contains(&new));
                let counted = new.node() == remote && !known;
                (counted && held >= cap).then_some((Limit::GroupRegistrations, cap))
            }
            GlobalMsg::Set(sets) => {
                let cap = cfg.peer_max_group_registrations;
                let st = self.lock();
                let held = st.greg_per_node.get(remote).copied().unwrap_or(0);
                let mut seen = HashSet::new();
                let mut new = 0usize;
                for (group, ports) in sets {
                    let members = st.greg.get(group);
                    for p in ports {
                        let id = PortId::from(p.as_str());
                        if id.node() == remote
                            && !members.is_some_and(|m| m.contains(&id))
                            && seen.insert((group.as_str(), p.as_str()))
                        {
                            new += 1;
                        }
                    }
                }
                (held.saturating_add(new) > cap).then_some((Limit::GroupRegistrations, cap))
            }
            _ => None,
        }
    }

    /// How many Global group registrations of `peer`'s ports this node
    /// holds.
    pub(crate) fn registrations_of(&self, peer: &str) -> usize {
        self.lock().greg_per_node.get(peer).copied().unwrap_or(0)
    }

    /// How many nodes `peer` named in `nodes` messages that we still try
    /// to reach (its `peer_max_introduced_nodes` budget in use).
    pub(crate) fn introduced_by(&self, peer: &str) -> usize {
        self.lock()
            .introduced_per_peer
            .get(peer)
            .copied()
            .unwrap_or(0)
    }

    /// A node went up or down (the reference's `mon_node`).
    fn mon_node(self: &Arc<Self>, node: &Node, id: &str, up: bool) {
        if up {
            {
                let mut st = self.lock();
                st.nodecnt += 1;
                st.release_introduced(id);
            }
            self.start_node(node, id);
            mesh::master_on_up(self, node, id);
        }
        mesh::ensure_master(self, node);
        if !up {
            self.downs.send_modify(|n| *n = n.wrapping_add(1));
            let (last, master) = {
                let mut st = self.lock();
                st.nodecnt = st.nodecnt.saturating_sub(1);
                st.addr.remove(id);
                st.seedme.remove(id);
                st.cut_links.remove(id);
                (st.nodecnt == 0, st.master.clone())
            };
            if last {
                self.seed_now.notify_one();
            }
            groups::unreg_groups(self, node, id);
            // ask our master for quick recovery
            if let Some(master) = master {
                self.to_node(node, &master, &GlobalMsg::Find(id.to_owned()));
            }
        }
    }
}

/// [`Node::peer_usage`](crate::Node::peer_usage) for the budgets of the
/// kernel and of Global.
pub(crate) fn peer_usage(node: &Node, peer: &str, limit: Limit) -> Option<usize> {
    match limit {
        Limit::GroupRegistrations => Some(Global::of(node).registrations_of(peer)),
        Limit::IntroducedNodes => Some(Global::of(node).introduced_by(peer)),
        _ => node.kernel_usage(peer, limit),
    }
}

/// The delay before an `addr` is passed on to the nodes that asked to be
/// seeded: 2 s plus up to 1 s, so nodes do not all connect at once
/// (reference timing, which mixed networks depend on).
pub(crate) fn rebroadcast_delay() -> Duration {
    Duration::from_secs_f64(2.0 + rand::random::<f64>())
}
