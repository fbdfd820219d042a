//! How a parent is chosen: one function per policy, each a filter followed by a score.
//! This file is the answer to "how is a parent chosen".

use super::decision::{ParentRef, Stripe};
use super::ids::PeerId;
use super::records::{Host, HostKind, Peer, PeerState, Task};
use super::scheduler::Scheduler;
use rand::seq::SliceRandom;
use rand::Rng;

/// Dragonfly v2 (`filterCandidateParents` + `evaluator_base`): sample up to
/// `filter_parent_limit` peers of the task *before* filtering, keep the eligible ones,
/// score them with six weighted terms, return the best `candidate_parent_limit`.
pub fn dragonfly(s: &mut Scheduler, peer: PeerId) -> Vec<ParentRef> {
    let child = &s.peers[&peer];
    let task = &s.tasks[&child.task];
    let mut sample = task.peers.clone();
    let k = s.cfg.filter_parent_limit.min(sample.len());
    sample.partial_shuffle(&mut s.rng, k);
    sample.truncate(k);
    let mut scored: Vec<(f64, usize, PeerId)> = Vec::new();
    let descendants = task.dag.descendants(peer);
    for (order, cand) in sample.into_iter().enumerate() {
        if !eligible_dag_parent(s, task, child, cand, &descendants) {
            continue;
        }
        let parent = &s.peers[&cand];
        let host = &s.hosts[&parent.host];
        let child_host = &s.hosts[&child.host];
        let piece = if task.piece_count > 0 {
            f64::from(parent.finished.count()) / f64::from(task.piece_count)
        } else {
            0.0
        };
        let upload_success = if host.upload_count < host.upload_failed_count {
            0.0
        } else if host.upload_count == 0 && host.upload_failed_count == 0 {
            1.0
        } else {
            (host.upload_count - host.upload_failed_count) as f64 / host.upload_count as f64
        };
        let free_upload = if host.upload_limit > 0 && host.free_uploads() > 0 {
            f64::from(host.free_uploads()) / f64::from(host.upload_limit)
        } else {
            0.0
        };
        let host_type = match host.info.kind {
            HostKind::Seed if matches!(parent.state, PeerState::Received | PeerState::Running) => 1.0,
            HostKind::Seed => 0.0,
            HostKind::Normal => 0.5,
        };
        let score = 0.20 * piece
            + 0.20 * upload_success
            + 0.15 * free_upload
            + 0.15 * host_type
            + 0.15 * idc_affinity(host, child_host)
            + 0.15 * location_affinity(host, child_host);
        scored.push((score, order, cand));
    }
    // Best first; equal scores keep sample order (Go's sort leaves them undefined).
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored
        .into_iter()
        .take(s.cfg.candidate_parent_limit)
        .map(|(_, _, p)| ParentRef { peer: p, host: s.peers[&p].host, stripe: None })
        .collect()
}

/// Kraken tracker handout: up to `candidate_parent_limit` random peers of the task plus
/// every origin holding the blob, ordered completed agents, then origins, then
/// incomplete agents. No eligibility test beyond "not me, not gone": agents dial them.
pub fn kraken(s: &mut Scheduler, peer: PeerId) -> Vec<ParentRef> {
    let child = &s.peers[&peer];
    let task = &s.tasks[&child.task];
    let mut agents: Vec<PeerId> = task
        .peers
        .iter()
        .copied()
        .filter(|c| *c != peer)
        .filter(|c| {
            let q = &s.peers[c];
            !q.is_seed && q.host != child.host && !matches!(q.state, PeerState::Failed | PeerState::Leave)
        })
        .collect();
    let k = s.cfg.candidate_parent_limit.min(agents.len());
    agents.partial_shuffle(&mut s.rng, k);
    agents.truncate(k);
    let origins = task.seed_peer.filter(|o| s.peers[o].state == PeerState::Succeeded);
    let mut handout: Vec<(u8, PeerId)> = agents
        .into_iter()
        .map(|a| (if s.peers[&a].state == PeerState::Succeeded { 0 } else { 2 }, a))
        .chain(origins.map(|o| (1, o)))
        .collect();
    handout.sort_by_key(|(rank, _)| *rank);
    handout.into_iter().map(|(_, p)| ParentRef { peer: p, host: s.peers[&p].host, stripe: None }).collect()
}

/// The project's policy.
///
/// - Filter first, then bound the work: scan the task's peers from a random offset and
///   stop after `filter_parent_limit` eligible ones (Dragonfly samples 15 *before*
///   filtering, so on a big task most rounds see no eligible parent at all).
/// - Score on spare upload first: a host's upload is split among its children, so the
///   child should join the parents with the fewest children (keeps every uploader busy
///   and no uploader swamped, Dragonfly's pain point of 70 peers on one parent);
///   then on how far ahead the parent is, then locality.
/// - A seed peer takes at most `seed_stripes` children, each assigned its own stripe.
pub fn default(s: &mut Scheduler, peer: PeerId) -> Vec<ParentRef> {
    let child = &s.peers[&peer];
    let task = &s.tasks[&child.task];
    let n = task.peers.len();
    if n == 0 {
        return Vec::new();
    }
    let start = s.rng.random_range(0..n);
    let mut scored: Vec<(f64, PeerId, Option<Stripe>)> = Vec::new();
    let mut free_stripes = task.stripes.iter().enumerate().filter(|(_, c)| c.is_none()).map(|(i, _)| i as u32);
    let stripe_count = task.stripes.len() as u32;
    let descendants = task.dag.descendants(peer);
    for i in 0..n {
        if scored.len() >= s.cfg.filter_parent_limit {
            break;
        }
        let cand = task.peers[(start + i) % n];
        if !eligible_dag_parent(s, task, child, cand, &descendants) {
            continue;
        }
        let parent = &s.peers[&cand];
        let host = &s.hosts[&parent.host];
        let child_host = &s.hosts[&child.host];
        let mut stripe = None;
        if parent.is_seed && s.cfg.seed_stripes > 0 {
            match free_stripes.next() {
                Some(index) => stripe = Some(Stripe { index, count: stripe_count }),
                None => continue,
            }
        }
        let free_upload = f64::from(host.free_uploads()) / f64::from(host.upload_limit.max(1));
        let progress = if parent.state == PeerState::Succeeded || task.piece_count == 0 {
            1.0
        } else {
            f64::from(parent.finished.count()) / f64::from(task.piece_count)
        };
        // A fresh seed child is worth most: it is the only way new pieces enter.
        let seed_bonus = if stripe.is_some() { 1.0 } else { 0.0 };
        let score = 0.45 * free_upload
            + 0.25 * progress
            + 0.15 * idc_affinity(host, child_host)
            + 0.15 * location_affinity(host, child_host)
            + seed_bonus;
        scored.push((score, cand, stripe));
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored
        .into_iter()
        .take(s.cfg.candidate_parent_limit)
        .map(|(_, p, stripe)| ParentRef { peer: p, host: s.peers[&p].host, stripe })
        .collect()
}

/// Dragonfly's filter chain, shared by the DAG policies. `descendants` is the child and
/// everything below it (`Dag::descendants`): an edge from any of them would close a cycle.
fn eligible_dag_parent(
    s: &Scheduler,
    task: &Task,
    child: &Peer,
    cand: PeerId,
    descendants: &std::collections::BTreeSet<PeerId>,
) -> bool {
    if cand == child.id || child.blocked.contains(&cand) {
        return false;
    }
    let Some(parent) = s.peers.get(&cand) else { return false };
    let host = &s.hosts[&parent.host];
    if host.info.disable_shared || parent.host == child.host || !task.dag.contains(cand) {
        return false;
    }
    // A normal peer can feed others only once it is fed itself (or holds the data).
    if host.info.kind == HostKind::Normal
        && task.dag.in_degree(cand) == 0
        && !matches!(parent.state, PeerState::BackToSource | PeerState::Succeeded)
    {
        return false;
    }
    if is_bad_node(parent) || host.free_uploads() == 0 {
        return false;
    }
    let ok = !descendants.contains(&cand) && !task.dag.parents(child.id).contains(&cand);
    debug_assert_eq!(ok, task.dag.check_edge(cand, child.id).is_ok());
    ok
}

/// Only running, back-to-source and finished peers can serve; a peer whose latest piece
/// took far longer than its history (`CostStats`) is treated as abnormal.
pub fn is_bad_node(peer: &Peer) -> bool {
    !matches!(peer.state, PeerState::Running | PeerState::BackToSource | PeerState::Succeeded)
        || peer.costs.last_is_outlier
}

fn idc_affinity(a: &Host, b: &Host) -> f64 {
    let (x, y) = (&a.info.idc, &b.info.idc);
    if !x.is_empty() && x.eq_ignore_ascii_case(y) {
        1.0
    } else {
        0.0
    }
}

/// Matching leading elements of `a|b|c|d|e` paths, up to 5, over 5.
fn location_affinity(a: &Host, b: &Host) -> f64 {
    let (x, y) = (&a.info.location, &b.info.location);
    if x.is_empty() || y.is_empty() {
        return 0.0;
    }
    if x == y {
        return 1.0;
    }
    let same = x.split('|').zip(y.split('|')).take(5).take_while(|(p, q)| p == q).count();
    same as f64 / 5.0
}
