//! Users on other nodes (cluster mode): kept from the other nodes' events,
//! so that `who`, `who --since` and presence notices cover the whole
//! service, and corrected from the database whenever events may have been
//! missed or a node died.
//!
//! A user's sessions are ordered by their lease's epoch: an event of an
//! older epoch than the one known is stale and ignored; a login of a newer
//! one while the user seemed online elsewhere first ends the old session
//! here (its logout was missed), so every user's notices still alternate.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use msg_proto::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::cluster::events::{self, Directed, Event};
use crate::cluster::lease::Epoch;
use crate::cluster::shared::Elsewhere;
use crate::hub::Hub;
use crate::hub::forward::Handed;
use crate::hub::state::{Remote, State};

impl Hub {
    /// Tells the other nodes that `user` logged in or out here.
    pub(super) fn tell_nodes(&self, user: &str, online: bool, at: Timestamp) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let Some(epoch) = cluster.leases.session_epoch(user) else {
            return;
        };
        cluster.events.publish(Event::Presence {
            user: user.to_owned(),
            online,
            at,
            node: cluster.node_id.clone(),
            epoch,
        });
        if !online {
            let (cluster, user) = (cluster.clone(), user.to_owned());
            tokio::spawn(async move {
                if let Err(e) = cluster.record_seen(&user, at).await {
                    tracing::warn!(error = %e, "cannot record when a user was last seen");
                }
            });
        }
    }

    /// Applies an event from another node.
    pub fn heard(&self, event: Event) {
        match event {
            Event::Presence {
                user,
                online,
                at,
                node,
                epoch,
            } => self.remote_presence(user, online, at, node, epoch),
            Event::Mail { user, node } => {
                if self
                    .cluster
                    .as_ref()
                    .is_some_and(|cluster| cluster.node_id != node)
                {
                    self.mail_stored(&user);
                }
            }
            Event::Revoked { user } => {
                if self.end_revoked_session(&user) {
                    tracing::info!(user, "ending a session: its devices were revoked");
                }
            }
            Event::Broadcast {
                from,
                text,
                at,
                node,
            } => {
                if self
                    .cluster
                    .as_ref()
                    .is_some_and(|cluster| cluster.node_id != node)
                {
                    self.broadcast_here(&from, text, at);
                }
            }
            Event::Block {
                blocker,
                blocked,
                blocking,
                node,
            } => {
                if self
                    .cluster
                    .as_ref()
                    .is_none_or(|cluster| cluster.node_id == node)
                {
                    // Applied here when it was made.
                    return;
                }
                let mut state = self.state();
                let set = state.blocks.entry(blocker.clone()).or_default();
                if blocking {
                    set.insert(blocked.clone());
                    state.end_private_pair(
                        &blocker,
                        &blocked,
                        msg_proto::server::PrivateEndReason::Blocked,
                    );
                    state.drop_private_requests(&blocker, &blocked);
                } else {
                    set.remove(&blocked);
                }
            }
        }
    }

    fn remote_presence(
        &self,
        user: String,
        online: bool,
        at: Timestamp,
        node: String,
        epoch: Epoch,
    ) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        // Our own event, or one older than the session the user has here.
        if cluster.node_id == node || cluster.leases.epoch(&user).is_some_and(|e| e >= epoch) {
            return;
        }
        let mut guard = self.state();
        let state = &mut *guard;
        let known = state.remote.get(&user).map(|remote| remote.epoch);
        if online {
            match known {
                Some(known) if known >= epoch => return,
                Some(_) => self.remote_gone(state, &user, at),
                None => {}
            }
            // A session of the user here is older (its lease is lost, and
            // the renewal ends it): the newer one elsewhere is the user's.
            state.remote.insert(
                user.clone(),
                Remote {
                    node: node.into(),
                    epoch,
                },
            );
            // Part of the storm rate that paces the rounds of notices, as a
            // login here is: a storm spread over three nodes is one storm.
            state.presence_rounds.activity(std::time::Instant::now());
            self.announce_presence(state, &user, true, at);
        } else if known == Some(epoch) {
            self.remote_gone(state, &user, at);
        } else {
            // Its login was never heard (or is stale): only the time counts.
            let seen = state.last_seen.entry(user).or_default();
            *seen = (*seen).max(at);
        }
    }

    /// Forgets a user of another node and tells the sessions here.
    fn remote_gone(&self, state: &mut State, user: &str, at: Timestamp) {
        if state.remote.remove(user).is_some() {
            let seen = state.last_seen.entry(user.to_owned()).or_default();
            *seen = (*seen).max(at);
            self.announce_presence(state, user, false, at);
        }
    }

    /// Replaces the view of the other nodes' users with the database's,
    /// announcing the logins and logouts that were missed.
    pub fn resync_remote(&self, elsewhere: Vec<Elsewhere>, now: Timestamp) {
        let fresh: HashMap<String, (String, Epoch)> = elsewhere
            .into_iter()
            .map(|e| (e.user, (e.node, e.epoch)))
            .collect();
        let mut guard = self.state();
        let state = &mut *guard;
        let gone: Vec<String> = state
            .remote
            .iter()
            .filter(|(user, remote)| fresh.get(*user).is_none_or(|(_, e)| *e != remote.epoch))
            .map(|(user, _)| user.clone())
            .collect();
        for user in gone {
            self.remote_gone(state, &user, now);
        }
        for (user, (node, epoch)) in fresh {
            if state.remote.contains_key(&user) || state.sessions.contains_key(user.as_str()) {
                continue;
            }
            state.remote.insert(
                user.clone(),
                Remote {
                    node: node.into(),
                    epoch,
                },
            );
            state.presence_rounds.activity(std::time::Instant::now());
            self.announce_presence(state, &user, true, now);
        }
    }

    /// Takes the service's block lists as the database has them (after
    /// events may have been missed).
    pub fn replace_blocks(&self, blocks: HashMap<String, HashSet<String>>) {
        self.state().blocks = blocks;
    }

    /// Forgets the users of the nodes that are no longer alive.
    pub fn keep_nodes(&self, alive: &HashSet<String>, now: Timestamp) {
        let mut guard = self.state();
        let state = &mut *guard;
        let gone: Vec<String> = state
            .remote
            .iter()
            .filter(|(_, remote)| !alive.contains(&*remote.node))
            .map(|(user, _)| user.clone())
            .collect();
        if gone.is_empty() {
            return;
        }
        tracing::info!(users = gone.len(), "a node is gone; forgetting its users");
        // Messages handed to the dead node get no answer: stored now.
        let gone_users: HashSet<&str> = gone.iter().map(String::as_str).collect();
        let unanswered: Vec<msg_proto::MsgId> = state
            .inflight
            .iter()
            .filter(|(_, f)| f.elsewhere && gone_users.contains(f.msg.recipient.as_str()))
            .map(|(id, _)| *id)
            .collect();
        let unacked = unanswered
            .iter()
            .filter_map(|id| state.inflight.remove(id))
            .collect();
        self.store_unacked(unacked);
        for user in gone {
            self.remote_gone(state, &user, now);
        }
    }
}

/// Looks (every third of a lease's life) between two reads of who is
/// online elsewhere even when no event seems missed.
const RESYNC_EVERY: u32 = 15;

/// Follows the other nodes until `stop`: applies their events, reads the
/// truth from the database when events may have been missed, forgets the
/// users of dead nodes, and keeps the clock's offset from the database's.
pub async fn follow_cluster(hub: Arc<Hub>, cluster: Arc<Cluster>, stop: CancellationToken) {
    let subscribe = async || {
        let to_all = cluster.listen().await?;
        let to_me = cluster.listen_directed().await?;
        Ok::<_, crate::cluster::ClusterError>((to_all, to_me))
    };
    let mut looks = tokio::time::interval(cluster.leases.ttl() / 3);
    looks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut looked: u32 = 0;
    // A subscription that ends (NATS gave up on it) is made again, and
    // what may have been missed meanwhile is read from the database.
    'subscribe: loop {
        let (mut to_all, mut to_me) = loop {
            match subscribe().await {
                Ok(subscribed) => break subscribed,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen to the other nodes yet");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let mut resync = true;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                heard = to_all.next() => match heard {
                    Some(message) => match events::decode(&message.payload) {
                        Some(event) => hub.heard(event),
                        None => tracing::debug!("ignored a message that is not an event"),
                    },
                    None => {
                        tracing::warn!("the subscription to the other nodes ended; subscribing again");
                        continue 'subscribe;
                    }
                },
                told = to_me.next() => match told {
                    Some(message) => match events::decode(&message.payload) {
                        Some(Directed::Deliver { msg_id, recipient, sender, text, at, client_id, origin }) => {
                            hub.deliver_handed(Handed { msg_id, recipient, sender, text, at, client_id, origin });
                        }
                        Some(Directed::Outcome { msg_id, outcome }) => hub.handed_outcome(msg_id, outcome),
                        Some(Directed::PrivateRequest { asker, callee, asker_key, asker_ip }) => {
                            let answer = hub.private_request_from(&asker, &callee, asker_key, asker_ip);
                            if let Some(reply) = message.reply {
                                cluster.answer_to(reply, &answer);
                            }
                        }
                        Some(private) => hub.heard_private(private),
                        None => tracing::debug!("ignored a message that is not for a node"),
                    },
                    None => {
                        tracing::warn!("the subscription to this node's messages ended; subscribing again");
                        continue 'subscribe;
                    }
                },
                _ = cluster.resync.notified() => resync = true,
                _ = looks.tick() => {
                    // Now and then the truth anyway: an event NATS dropped,
                    // a node wrongly thought dead that is back.
                    looked = looked.wrapping_add(1);
                    if looked.is_multiple_of(RESYNC_EVERY) {
                        resync = true;
                    }
                    if let Err(e) = cluster.measure_clock().await {
                        tracing::warn!(error = %e, "cannot read the database's clock");
                    }
                    match cluster.nodes_alive().await {
                        Ok(alive) => hub.keep_nodes(&alive, cluster.now_ms()),
                        Err(e) => tracing::warn!(error = %e, "cannot tell which nodes are alive"),
                    }
                }
            }
            if resync {
                let read = async {
                    Ok::<_, crate::cluster::ClusterError>((
                        cluster.online_elsewhere().await?,
                        cluster.blocks().await?,
                    ))
                };
                match read.await {
                    Ok((elsewhere, blocks)) => {
                        hub.resync_remote(elsewhere, cluster.now_ms());
                        hub.replace_blocks(blocks);
                        resync = false;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read who is online elsewhere"),
                }
            }
        }
    }
}
