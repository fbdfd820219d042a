//! `[[churn.event]]`: nodes that fail or leave while the rollout runs.
//!
//! An event is one-time (`at_s`, with `count` nodes or a `fraction` of them) or a rate
//! (`per_minute` nodes from `from_s` until `until_s`). It takes the nodes of the cluster, of
//! one `node_group`, or, only when a scenario says `seed_peers = true`, the seed peers.
//! Which nodes is drawn from the scenario's `seed` (`Churn::plan`), so every mode of a run
//! loses the same nodes at the same times; how the engine plays a node that goes is
//! `engine/world/churn.rs`.

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::model::Scenario;
use super::validate::{fail, Invalid};

/// `[churn]`: its events, in file order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Churn {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event: Vec<ChurnEvent>,
}

/// How a node goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChurnAction {
    /// It crashes: it stops answering, its uploads break mid-transfer, and the scheduler is
    /// not told (it learns from the children's reports).
    #[serde(rename = "fail")]
    Fail,
    /// It shuts down: its daemon tells every scheduler replica (`LeaveHost`) and stops.
    #[serde(rename = "leave")]
    Leave,
}

/// One `[[churn.event]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChurnEvent {
    /// Optional, unique, of a-z, 0-9 and '-': sweep keys may name the event by it
    /// (`churn.event.NAME.fraction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: ChurnAction,
    /// A one-time event: when, in seconds from the start of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_s: Option<f64>,
    /// A one-time event: how many nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// A one-time event: this share of the nodes it takes from (rounded to the nearest node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// A rate: nodes per minute, one every 60 / per_minute seconds from `from_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<f64>,
    /// A rate: when it begins, seconds from the start of the run (0 when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_s: Option<f64>,
    /// A rate: when it ends (required with `per_minute`); no node goes at `until_s` itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_s: Option<f64>,
    /// Only the nodes of this `[[cluster.node_groups]]`; left out: every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_group: Option<String>,
    /// The seed peers instead of the nodes (p2p modes; oci has none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seed_peers: bool,
}

/// Longest accepted time of an event: a day, as every other duration of a scenario.
const AT_MAX_S: f64 = 86_400.0;

/// One node going, as the engine plays it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeGoes {
    pub at_s: f64,
    pub action: ChurnAction,
    /// A normal node (0..nodes) or, with `seed_peers`, a seed peer (0..seeds): which, is
    /// `seed`.
    pub index: u32,
    pub seed: bool,
}

impl Churn {
    pub fn is_empty(&self) -> bool {
        self.event.is_empty()
    }

    /// Every node that goes, in time order (events in file order at equal times): each
    /// firing takes its nodes uniformly among those of its pool still up, from a generator
    /// seeded by `seed` and the firing alone, so every mode loses the same nodes. `seeds` is
    /// the mode's seed peers (0 in oci: events on them do nothing).
    pub fn plan(&self, s: &Scenario, seed: u64, seeds: u32) -> Vec<NodeGoes> {
        let mut firings: Vec<(f64, usize, u32)> = Vec::new();
        for (i, e) in self.event.iter().enumerate() {
            let pool = pool_size(s, e, seeds);
            match (e.at_s, e.per_minute) {
                (Some(at), _) => firings.push((at, i, nodes_of(e, pool))),
                (None, Some(rate)) => {
                    for at in rate_times(e, rate) {
                        firings.push((at, i, 1));
                    }
                }
                (None, None) => {}
            }
        }
        firings.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let nodes = node_count(s);
        let (mut node_down, mut seed_down) = (vec![false; nodes as usize], vec![false; seeds as usize]);
        let groups = s.cluster.layout();
        let mut out = Vec::new();
        for (k, (at_s, i, n)) in firings.into_iter().enumerate() {
            let e = &self.event[i];
            // A generator per firing: what one firing draws (none, in oci, for seed peers)
            // changes nothing for the next.
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ sched::core::hashring::mix64(CHURN_STREAM + k as u64));
            let (down, range) = if e.seed_peers {
                (&mut seed_down, 0..seeds)
            } else {
                let range = match &e.node_group {
                    Some(name) => {
                        groups.iter().find(|g| &g.name == name).map_or(0..0, |g| g.first_node..g.first_node + g.nodes)
                    }
                    None => 0..nodes,
                };
                (&mut node_down, range)
            };
            let up: Vec<u32> = range.filter(|x| !down[*x as usize]).collect();
            let take = (n as usize).min(up.len());
            let mut picked: Vec<u32> = sample(&mut rng, up.len(), take).into_iter().map(|k| up[k]).collect();
            picked.sort_unstable();
            for index in picked {
                down[index as usize] = true;
                out.push(NodeGoes { at_s, action: e.action, index, seed: e.seed_peers });
            }
        }
        out
    }
}

/// The generator stream of churn ("churn" in ASCII), apart from the modes' own.
const CHURN_STREAM: u64 = 0x63_68_75_72_6e;

/// Normal nodes of the cluster, before `settle` fills `cluster.pods` in.
fn node_count(s: &Scenario) -> u32 {
    if s.cluster.has_groups() {
        return s.cluster.node_count();
    }
    let pods = s.cluster.pods.map(u64::from).unwrap_or_else(|| s.workloads.iter().map(|w| u64::from(w.replicas)).sum());
    pods.div_ceil(u64::from(s.cluster.pods_per_node().max(1))).min(u64::from(u32::MAX)) as u32
}

/// The nodes an event takes from: its group's, every node, or the seed peers.
fn pool_size(s: &Scenario, e: &ChurnEvent, seeds: u32) -> u32 {
    if e.seed_peers {
        return seeds;
    }
    match &e.node_group {
        Some(name) => s.cluster.node_groups.iter().find(|g| &g.name == name).map_or(0, |g| g.count),
        None => node_count(s),
    }
}

/// A one-time event's nodes: `count`, or `fraction` of the pool rounded to the nearest.
fn nodes_of(e: &ChurnEvent, pool: u32) -> u32 {
    match (e.count, e.fraction) {
        (Some(n), _) => n,
        (None, Some(f)) => (f * f64::from(pool)).round().clamp(0.0, f64::from(pool)) as u32,
        (None, None) => 0,
    }
}

/// A rate's firing times: from `from_s`, one every 60 / per_minute s, before `until_s`.
fn rate_times(e: &ChurnEvent, per_minute: f64) -> Vec<f64> {
    let (from, until) = (e.from_s.unwrap_or(0.0), e.until_s.unwrap_or(0.0));
    let n = rate_firings(from, until, per_minute);
    (0..n).map(|k| from + k as f64 * 60.0 / per_minute).collect()
}

fn rate_firings(from: f64, until: f64, per_minute: f64) -> u64 {
    if !(until > from && per_minute > 0.0) {
        return 0;
    }
    // Firings at from + k * gap for k = 0.. while below until.
    let gap = 60.0 / per_minute;
    ((until - from) / gap).ceil().min(u64::MAX as f64) as u64
}

/// `[[churn]]`, or `[churn.event]` with one bracket, and where: serde would say only
/// "invalid type". (Key, byte offset, message.)
pub(crate) fn misshapen(doc: &toml_edit::Document<&str>) -> Option<(&'static str, usize, &'static str)> {
    let (key, item) = doc.as_table().get_key_value("churn")?;
    let start = |span: Option<std::ops::Range<usize>>| span.map_or(0, |s| s.start);
    if let Some(tables) = item.as_array_of_tables() {
        let offset = start(tables.get(0).and_then(|t| t.span()).or_else(|| key.span()));
        return Some((
            "churn",
            offset,
            "written as [[churn]]; churn is one table of events: write [[churn.event]] (two brackets) once per event",
        ));
    }
    let (key, event) = item.as_table_like()?.get_key_value("event")?;
    if event.is_table_like() {
        let offset = start(event.as_table().and_then(|t| t.span()).or_else(|| key.span()));
        return Some((
            "churn.event",
            offset,
            "written as a table; events are an array of tables: write [[churn.event]] (two brackets) once per event",
        ));
    }
    None
}

/// The `[churn]` rules; each message says what to write instead.
pub(crate) fn validate(s: &Scenario) -> Result<(), Invalid> {
    for (i, e) in s.churn.event.iter().enumerate() {
        one(s, i, e)?;
    }
    Ok(())
}

fn one(s: &Scenario, i: usize, e: &ChurnEvent) -> Result<(), Invalid> {
    let at = format!("churn.event[{i}]");
    let key = |k: &str| format!("{at}.{k}");
    if let Some(name) = &e.name {
        let plain = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-';
        if name.is_empty() || !name.chars().all(plain) {
            return fail(&key("name"), format!("must be a non-empty name of a-z, 0-9 and '-' (got {name:?})"));
        }
        if let Some(j) = s.churn.event[..i].iter().position(|o| o.name.as_ref() == Some(name)) {
            return fail(
                &key("name"),
                format!("{name:?} is also the name of churn.event[{j}]; give each event its own name"),
            );
        }
    }
    let pool = pool(s, i, e)?;
    match (e.at_s, e.per_minute) {
        (Some(_), Some(_)) => fail(
            &key("per_minute"),
            "at_s and per_minute are both given; an event is one-time (at_s with count or fraction) or a rate \
             (per_minute with until_s): write two [[churn.event]] tables for both"
                .into(),
        ),
        (None, None) => fail(
            &at,
            "says neither when nor how often; give at_s with count or fraction (one-time), or per_minute with \
             until_s (a rate)"
                .into(),
        ),
        (Some(at_s), None) => one_time(s, e, &key, at_s, pool),
        (None, Some(per_minute)) => rate(s, e, &key, per_minute, pool),
    }
}

/// The nodes the event takes from, checked: a declared group, or the seed peers of a
/// cluster that has some.
fn pool(s: &Scenario, i: usize, e: &ChurnEvent) -> Result<u32, Invalid> {
    let key = |k: &str| format!("churn.event[{i}].{k}");
    let refuse = |k: &str, message: String| Err(Invalid { key: key(k), message });
    if e.seed_peers {
        if e.node_group.is_some() {
            return refuse(
                "seed_peers",
                "seed_peers = true and node_group are both given; seed peers are no node group: write two events"
                    .into(),
            );
        }
        if s.cluster.seed_peers == 0 {
            return refuse("seed_peers", "is true but the cluster has no seed peers (cluster.seed_peers = 0)".into());
        }
        return Ok(s.cluster.seed_peers);
    }
    let Some(name) = &e.node_group else { return Ok(node_count(s)) };
    if !s.cluster.has_groups() {
        return refuse(
            "node_group",
            format!(
                "names {name:?} but the cluster declares no [[cluster.node_groups]]; leave node_group out to take \
                 any node"
            ),
        );
    }
    match s.cluster.node_groups.iter().find(|g| &g.name == name) {
        Some(g) => Ok(g.count),
        None => {
            let names: Vec<&str> = s.cluster.node_groups.iter().map(|g| g.name.as_str()).collect();
            refuse("node_group", format!("names {name:?}, which is no node group; the groups: {}", names.join(", ")))
        }
    }
}

fn one_time(s: &Scenario, e: &ChurnEvent, key: &dyn Fn(&str) -> String, at_s: f64, pool: u32) -> Result<(), Invalid> {
    time(s, &key("at_s"), at_s)?;
    for (k, given) in [("from_s", e.from_s.is_some()), ("until_s", e.until_s.is_some())] {
        if given {
            fail(&key(k), format!("belongs to a rate (per_minute); a one-time event has at_s only: remove {k}"))?;
        }
    }
    match (e.count, e.fraction) {
        (Some(_), Some(_)) => fail(
            &key("fraction"),
            "count and fraction are both given; give the number of nodes (count) or a share of them (fraction)".into(),
        ),
        (None, None) => fail(
            &key("at_s"),
            "needs how many nodes go: add count (nodes) or fraction (a share of them, e.g. 0.2)".into(),
        ),
        (Some(n), None) => {
            if n == 0 {
                return fail(&key("count"), "must be at least 1 node (got 0); leave the event out instead".into());
            }
            if n > pool {
                return fail(
                    &key("count"),
                    format!("is {n} nodes but the event takes from {pool}; give at most {pool}"),
                );
            }
            Ok(())
        }
        (None, Some(f)) => {
            if !(f > 0.0 && f <= 1.0) {
                return fail(&key("fraction"), format!("must be in (0, 1], a share of the nodes, e.g. 0.2 (got {f})"));
            }
            if (f * f64::from(pool)).round() < 1.0 {
                return fail(
                    &key("fraction"),
                    format!(
                        "{f} of {pool} nodes rounds to no node; give at least {:.4}, or count = 1",
                        0.5 / f64::from(pool)
                    ),
                );
            }
            Ok(())
        }
    }
}

fn rate(s: &Scenario, e: &ChurnEvent, key: &dyn Fn(&str) -> String, per_minute: f64, pool: u32) -> Result<(), Invalid> {
    for (k, given) in [("count", e.count.is_some()), ("fraction", e.fraction.is_some())] {
        if given {
            fail(&key(k), format!("belongs to a one-time event (at_s); at a rate each node goes alone: remove {k}"))?;
        }
    }
    if !(per_minute.is_finite() && per_minute > 0.0) {
        return fail(
            &key("per_minute"),
            format!("must be a finite number of nodes per minute above 0 (got {per_minute})"),
        );
    }
    let from = e.from_s.unwrap_or(0.0);
    time(s, &key("from_s"), from)?;
    let Some(until) = e.until_s else {
        return fail(
            &key("per_minute"),
            "needs until_s, when the rate ends (seconds from the start of the run)".into(),
        );
    };
    time(s, &key("until_s"), until)?;
    if until <= from {
        return fail(&key("until_s"), format!("({until}) must be after from_s ({from})"));
    }
    let firings = rate_firings(from, until, per_minute);
    if firings > u64::from(pool) {
        return fail(
            &key("per_minute"),
            format!(
                "{per_minute} a minute from {from} s to {until} s is {firings} nodes but the event takes from {pool}; \
                 lower the rate or shorten the time"
            ),
        );
    }
    Ok(())
}

/// A time of the run: within a day, and before the run is stopped (a node going after
/// that would keep the run going only to fail it).
fn time(s: &Scenario, key: &str, value: f64) -> Result<(), Invalid> {
    if !(value.is_finite() && (0.0..=AT_MAX_S).contains(&value)) {
        return fail(key, format!("must be a finite number from 0 to {AT_MAX_S} s (got {value})"));
    }
    let limit = s.sim.time_limit_s;
    if value > limit {
        return fail(
            key,
            format!("is {value} s, after sim.time_limit_s = {limit} s, when a run is stopped; give at most {limit}"),
        );
    }
    Ok(())
}

#[cfg(test)]
#[path = "churn_tests.rs"]
mod tests;
