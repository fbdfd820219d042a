//! How a parent is chosen: one function per policy, each a filter followed by a score.
//! This file is the answer to "how is a parent chosen".

use super::config::SchedulerConfig;
use super::dag::Dag;
use super::decision::{ParentRef, Stripe};
use super::ids::{HostId, PeerId};
use super::records::{Host, HostKind, Peer, PeerState, Task, UNFED};
use super::scheduler::Scheduler;
use super::tree::TreeEntry;
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::BTreeMap;

/// Dragonfly v2 (`filterCandidateParents` + `evaluator_base`): sample up to
/// `filter_parent_limit` peers of the task *before* filtering, keep the eligible ones,
/// score them with six weighted terms, return the best `candidate_parent_limit`.
pub fn dragonfly(s: &mut Scheduler, peer: PeerId) -> Vec<ParentRef> {
    let child = &s.peers[&peer];
    let task = &s.tasks[&child.task];
    let mut all = task.peers.clone();
    let k = s.cfg.filter_parent_limit.min(all.len());
    let sample = uniform_draw(&mut all, k, &mut s.rng);
    let mut scored: Vec<(f64, usize, PeerId)> = Vec::new();
    let descendants = task.dag.descendants(peer);
    for (order, cand) in sample.into_iter().enumerate() {
        if !eligible_dag_parent(s, task, child, cand, &descendants) {
            continue;
        }
        let parent = &s.peers[&cand];
        let host = &s.hosts[&parent.host];
        let child_host = &s.hosts[&child.host];
        let piece =
            if task.piece_count > 0 { f64::from(parent.finished.count()) / f64::from(task.piece_count) } else { 0.0 };
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
    let agents = uniform_draw(&mut agents, k, &mut s.rng);
    let origins = task.seed_peer.filter(|o| s.peers[o].state == PeerState::Succeeded);
    let mut handout: Vec<(u8, PeerId)> = agents
        .into_iter()
        .map(|a| (if s.peers[&a].state == PeerState::Succeeded { 0 } else { 2 }, a))
        .chain(origins.map(|o| (1, o)))
        .collect();
    handout.sort_by_key(|(rank, _)| *rank);
    handout.into_iter().map(|(_, p)| ParentRef { peer: p, host: s.peers[&p].host, stripe: None }).collect()
}

/// Where a child goes in one stripe (`default_stripe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Under(ParentRef),
    /// Under `parent`, in the place of `orphan`, a leaf child of `parent` in this stripe
    /// that is then placed again (it becomes a child of the newcomer, or of another slot).
    PushDown {
        parent: ParentRef,
        orphan: PeerId,
    },
    /// Under a peer that is no inner node of this stripe, for want of room in the tree.
    Fallback(ParentRef),
}

/// The project's policy, one stripe at a time: a place for `child` in stripe `stripe`.
///
/// Why it beats one DAG per task (Dragonfly) and a random mesh (Kraken). A task's pieces
/// are dealt into `stripes` stripes, each with its own tree (a DAG that refuses cycles).
/// Every peer is an inner node of exactly one stripe, its home stripe, and a leaf in the
/// others (SplitStream's forest): it spends its whole upload on up to `stripes` children
/// in its home stripe, each of whom needs 1/`stripes` of a download from it, so its upload
/// is full exactly when its download is, and every peer downloads each stripe from a parent
/// that gives that stripe nothing but its full share. Nobody's upload idles and no edge is
/// thinner than a stripe's rate, so in steady state a peer's download runs near its link's
/// rate (93% measured on tensorflow-50; what is lost is the pipelines filling and
/// draining); the seed peer sends each piece once (one root per stripe).
/// The inner nodes are kept at the top, shallowest slot first, and a newly arrived inner
/// node takes the place of a leaf there (push-down), so each tree is a full
/// `stripes`-ary tree of inner nodes, log_stripes(N) deep whatever the arrival order, and
/// the last piece reaches the last leaf a few piece times after it left the seed.
///
/// Measured against the alternatives (see the session notes in git history): one DAG
/// per task grows N/parents levels deep, since peers that download at full rate cannot
/// widen it, and its top peers can be fed by the seed alone; random stripe parents
/// (this policy's previous version) leave chains whose thinnest edge throttles all below
/// it, at about 60% of the cluster's upload; Kraken's mesh waits for the origin to hold
/// the whole blob and hands out peers blind to their load.
///
/// Filter (Dragonfly's filters, judged in this stripe's DAG: `fits_child`), then:
/// 1. the shallowest open slot: the seed peer while it has a root slot free in this
///    stripe, else the inner node of least depth, then fewest children (`Task::tree`);
/// 2. for an inner node of this stripe, a leaf's place at an inner node shallower than
///    that slot (push-down);
/// 3. when no inner node has room (a failed inner node's children, a stripe without any),
///    two random fed peers below `stripe_fanout` children in this task, the one with
///    fewer children (then shallower) wins. The two are drawn from the stripe's index
///    (`SAMPLE_TRIES` draws, unfit ones skipped); in an index of at most
///    `filter_parent_limit` peers, when no draw fits, the first two fit ones from a random
///    place in it.
pub fn default_stripe(s: &mut Scheduler, child: PeerId, stripe: u32) -> Option<Placement> {
    let si = stripe as usize;
    let Scheduler { cfg, rng, hosts, tasks, peers, .. } = s;
    let c = &peers[&child];
    let task = &tasks[&c.task];
    let dag = &task.stripe_dags[si];
    let make = |p: PeerId| ParentRef {
        peer: p,
        host: peers[&p].host,
        stripe: Some(Stripe { index: stripe, count: cfg.stripes }),
    };
    let seed = usable_seed(task, peers, c, dag);
    let open = open_slot(cfg, hosts, task, peers, c, si, seed);
    if c.home_stripe == Some(stripe) {
        let shallower_than = open.map_or(u16::MAX, |(d, _)| d);
        let leaf_of = |q: PeerId| leaf_child(dag, q, stripe, peers).map(|orphan| (q, orphan));
        let push = seed.filter(|_| shallower_than > 0).and_then(|seed| leaf_of(seed.id)).or_else(|| {
            task.tree
                .pushable(si)
                .take_while(|(d, _)| *d < shallower_than)
                .take(TREE_TRIES)
                .filter(|(_, q)| fits_child(c, &peers[q], dag))
                .find_map(|(_, q)| leaf_of(q))
        });
        if let Some((q, orphan)) = push {
            return Some(Placement::PushDown { parent: make(q), orphan });
        }
    }
    if let Some((_, q)) = open {
        return Some(Placement::Under(make(q)));
    }
    let fed = task.fed.list(si);
    let candidate = |q: &PeerId| {
        let p = &peers[q];
        debug_assert!(offers_stripe(cfg, &hosts[&p.host], p, si), "index holds {q:?}, which offers nothing");
        debug_assert_eq!(
            p.stripe_children as usize,
            task.stripe_dags.iter().map(|d| d.children(p.id).len()).sum::<usize>()
        );
        fits_child(c, p, dag).then(|| (p.stripe_children, depth_of(p, si), p.id))
    };
    let mut picks = Vec::with_capacity(2);
    if fed.len() > SAMPLE_TRIES {
        for _ in 0..SAMPLE_TRIES {
            if let Some(x) = candidate(&fed[rng.random_range(0..fed.len())]) {
                picks.push(x);
                if picks.len() == 2 {
                    break;
                }
            }
        }
    }
    if picks.is_empty() && fed.len() <= cfg.filter_parent_limit {
        // A small index: the first two fit ones from a random place in it. (In a large one
        // 16 draws that all missed mean few fit: the child waits for the next change or
        // its timer rather than scanning the index on every change.)
        let start = if fed.is_empty() { 0 } else { rng.random_range(0..fed.len()) };
        picks.extend(fed[start..].iter().chain(&fed[..start]).filter_map(candidate).take(2));
    }
    if picks.is_empty() {
        return None;
    }
    let a = picks[0];
    let b = picks.get(1).copied().unwrap_or(a);
    let best = if (b.0, b.1) < (a.0, a.1) { b } else { a };
    Some(if tree_parent(&peers[&best.2], stripe) {
        Placement::Under(make(best.2))
    } else {
        Placement::Fallback(make(best.2))
    })
}

/// The task's seed peer, when it serves and may be `c`'s parent in this stripe's DAG.
pub(crate) fn usable_seed<'a>(task: &Task, peers: &'a BTreeMap<PeerId, Peer>, c: &Peer, dag: &Dag) -> Option<&'a Peer> {
    task.seed_peer.and_then(|p| peers.get(&p)).filter(|seed| !is_bad_parent(seed) && fits_child(c, seed, dag))
}

/// Step 1 of `default_stripe`: the shallowest open slot for `c` in stripe `si` (depth,
/// parent): the seed's root slot (`seed`: `usable_seed`), else the first fit inner node of
/// `Task::tree`.
pub(crate) fn open_slot(
    cfg: &SchedulerConfig,
    hosts: &BTreeMap<HostId, Host>,
    task: &Task,
    peers: &BTreeMap<PeerId, Peer>,
    c: &Peer,
    si: usize,
    seed: Option<&Peer>,
) -> Option<(u16, PeerId)> {
    let dag = &task.stripe_dags[si];
    match seed.filter(|seed| seed_has_room(cfg, &hosts[&seed.host], seed, dag)) {
        Some(seed) => Some((0, seed.id)),
        None => task.tree.open(si).take(TREE_TRIES).find(|(_, q)| fits_child(c, &peers[q], dag)),
    }
}

/// A parent whose children in this stripe are where they belong: the seed, an inner node
/// of the stripe, or a peer holding (or fetching from the origin) the whole task. A child
/// under any other parent is a stray (`Scheduler::adopt_strays`).
pub(crate) fn tree_parent(q: &Peer, stripe: u32) -> bool {
    q.is_seed
        || q.home_stripe == Some(stripe)
        || q.state == PeerState::Succeeded
        || (q.state == PeerState::BackToSource && !q.partial)
}

/// Entries of `Task::tree` looked at per choice before falling back: a fit one is nearly
/// always first (unfit means blocked by this child, on its host, or its descendant).
const TREE_TRIES: usize = 32;

/// The leaf child (one whose home is another stripe) `q` took last in this stripe.
fn leaf_child(dag: &Dag, q: PeerId, stripe: u32, peers: &BTreeMap<PeerId, Peer>) -> Option<PeerId> {
    dag.children(q).iter().rev().copied().find(|k| peers.get(k).is_some_and(|k| k.home_stripe != Some(stripe)))
}

/// Default policy: how a peer is filed in its task's `tree` (None: not an inner node with
/// room or a leaf child). Called after every change to what it reads, as `offers_stripe`.
pub(crate) fn tree_entry(
    cfg: &SchedulerConfig,
    host: &Host,
    p: &Peer,
    dags: &[Dag],
    peers: &BTreeMap<PeerId, Peer>,
) -> Option<TreeEntry> {
    let home = p.home_stripe?;
    let depth = depth_of(p, home as usize);
    if p.is_seed || is_bad_parent(p) || depth == UNFED {
        return None;
    }
    let dag = dags.get(home as usize)?;
    let kids = dag.children(p.id).len() as u32;
    let can_upload = !host.info.disable_shared && host.free_uploads() > 0;
    let open = (can_upload && kids < cfg.stripes).then_some((depth, kids));
    let pushable = leaf_child(dag, p.id, home, peers).map(|_| depth);
    Some(TreeEntry { stripe: home, open, pushable })
}

/// Random draws from a stripe's fed index per selection before falling back to a scan:
/// with half the index unfit for a child, 16 draws miss both picks once in ~4,000.
const SAMPLE_TRIES: usize = 16;

/// Default policy, the part of the filter that depends on the parent alone (what
/// `Task::fed` indexes): a normal peer, serving and not abnormal, fed in this stripe,
/// below `stripe_fanout` children in the task, on a sharing host with a free upload.
pub(crate) fn offers_stripe(cfg: &SchedulerConfig, host: &Host, q: &Peer, si: usize) -> bool {
    !q.is_seed
        && !is_bad_parent(q)
        && q.stripe_children < cfg.stripe_fanout
        && !host.info.disable_shared
        && host.free_uploads() > 0
        && depth_of(q, si) != UNFED
}

/// The seed peer may take one more root in this stripe.
pub(crate) fn seed_has_room(cfg: &SchedulerConfig, host: &Host, seed: &Peer, dag: &Dag) -> bool {
    !is_bad_parent(seed)
        && !host.info.disable_shared
        && host.free_uploads() > 0
        && dag.children(seed.id).len() < cfg.seed_children_per_stripe as usize
}

/// Default policy, the part of the filter that depends on the child: not itself, not
/// blocked, not on its host, no cycle in this stripe's DAG, not already its parent.
fn fits_child(child: &Peer, cand: &Peer, dag: &Dag) -> bool {
    debug_assert!(dag.contains(cand.id));
    // A partial peer (a lazy reader) fetches only its ranges: a child wanting the whole
    // task would wait under it for pieces it never fetches. Other readers, who mostly want
    // the same ranges, may take them from it.
    let ok = cand.id != child.id
        && (child.partial || !cand.partial)
        && !child.blocked.contains(&cand.id)
        && cand.host != child.host
        && !dag.is_ancestor(child.id, cand.id)
        && !dag.parents(child.id).contains(&cand.id);
    debug_assert_eq!(
        ok,
        dag.check_edge(cand.id, child.id).is_ok()
            && (child.partial || !cand.partial)
            && !child.blocked.contains(&cand.id)
            && cand.host != child.host
    );
    ok
}

/// Hops from the seed in stripe `si`; a peer holding the whole task, or fetching it whole
/// from the origin, counts as one hop. A partial peer the origin serves fetches its
/// ranges only: it counts as what its stripes feed it, like any other.
pub(crate) fn depth_of(q: &Peer, si: usize) -> u16 {
    if q.is_seed {
        0
    } else if q.state == PeerState::Succeeded || (q.state == PeerState::BackToSource && !q.partial) {
        1
    } else {
        q.stripe_depth.get(si).copied().unwrap_or(UNFED)
    }
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
    let Some(parent) = s.peers.get(&cand) else {
        return false;
    };
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

/// `k` of `items` drawn uniformly at random, in random order. `partial_shuffle` leaves its
/// draw in the slice it returns first, which is the *end* of `items`: keeping the front
/// instead kept the earliest registered peers (a seed in 38 % of Dragonfly's rounds on
/// 990 peers, where a uniform draw of 15 has it in 1.5 %).
fn uniform_draw<T: Copy>(items: &mut [T], k: usize, rng: &mut impl Rng) -> Vec<T> {
    let (drawn, _) = items.partial_shuffle(rng, k);
    drawn.to_vec()
}

/// Only running, back-to-source and finished peers can serve; a peer whose latest piece
/// took far longer than its history (`CostStats`) is treated as abnormal. This is
/// Dragonfly's rule, finished peers included; the default policy uses `is_bad_parent`.
pub fn is_bad_node(peer: &Peer) -> bool {
    !matches!(peer.state, PeerState::Running | PeerState::BackToSource | PeerState::Succeeded)
        || peer.costs.last_is_outlier
}

/// Default policy: `is_bad_node`, except that a peer holding the whole task is not judged
/// by its last piece. The cost test is about a download's own fetches; once it finished,
/// the flag of its last piece stays for good and says nothing of its upload. A seed whose
/// last piece from the registry came slowly (39 ms against a 9 ms mean on loopback) was no
/// parent for the rest of the task, and the readers that came after it waited for ever.
pub(crate) fn is_bad_parent(peer: &Peer) -> bool {
    match peer.state {
        PeerState::Succeeded => false,
        _ => is_bad_node(peer),
    }
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

#[cfg(test)]
mod tests {
    use super::uniform_draw;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Every item is drawn about k/n of the time, the first ones and the last ones alike
    /// (the front-of-slice draw had item 0 in every draw).
    #[test]
    fn uniform_draw_favours_no_position() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (n, k, rounds) = (1000usize, 15usize, 20_000usize);
        let mut hits = vec![0u32; n];
        for _ in 0..rounds {
            let mut items: Vec<usize> = (0..n).collect();
            let drawn = uniform_draw(&mut items, k, &mut rng);
            assert_eq!(drawn.len(), k);
            let mut distinct = drawn.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), k, "a draw holds no item twice");
            for i in drawn {
                hits[i] += 1;
            }
        }
        // Expected 300 per item; binomial sd about 17.
        let (first, last) = (hits[..10].iter().sum::<u32>(), hits[n - 10..].iter().sum::<u32>());
        assert!((2700..3300).contains(&first), "the first 10 items drawn {first} times, expected about 3000");
        assert!((2700..3300).contains(&last), "the last 10 items drawn {last} times, expected about 3000");
        assert_eq!(uniform_draw(&mut [1, 2, 3], 5, &mut rng).len(), 3, "k above n draws all");
    }
}
