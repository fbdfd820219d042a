//! Peer configuration: how one task is downloaded. `PeerConfig::preset(policy)` holds the
//! defaults of each policy in one place.

use sched::core::ids::{TimeNs, NS_PER_MS, NS_PER_S};
use sched::core::overlay::{overlay, table_policy, OverlayError};
use sched::Policy;
use serde::{Deserialize, Serialize};

const MIB: u64 = 1 << 20;
/// The smallest piece a configuration may ask for (smaller ones cost more in requests and
/// reports than they save in pipeline fill).
pub const MIN_PIECE_BYTES: u64 = 64 << 10;
/// The largest piece: a piece is held in memory whole by the sender and the receiver.
pub const MAX_PIECE_BYTES: u64 = 64 << 20;

/// The Rust client's smallest and largest piece and the piece count it aims at
/// (`MIN_PIECE_LENGTH`, `MAX_PIECE_LENGTH`, `PIECE_COUNT` in `resource/piece.rs`).
pub const DRAGONFLY_MIN_PIECE_BYTES: u64 = 4 * MIB;
pub const DRAGONFLY_MAX_PIECE_BYTES: u64 = 64 * MIB;
pub const DRAGONFLY_TARGET_PIECES: u64 = 500;
/// The Rust client sends a file (or range) of at most 4 MiB straight to the source, without
/// the scheduler (`resource/task.rs`, dragonfly-client-rust.md fact 3).
pub const DRAGONFLY_DIRECT_SOURCE_MAX_BYTES: u64 = 4 * MIB;
/// Kraken's agent bandwidth limiter as shipped (`utils/bandwidth/limiter.go` code defaults,
/// enabled in the agent config, not in the origin's): egress 200 MB/s, ingress 300 MB/s.
pub const KRAKEN_AGENT_EGRESS_BYTES_PER_S: u64 = 200_000_000;
pub const KRAKEN_AGENT_INGRESS_BYTES_PER_S: u64 = 300_000_000;

/// In a table: `piece_sizing = { rule = "fixed", piece_bytes = 4194304 }`,
/// `{ rule = "scaled", min_bytes = 524288, max_bytes = 4194304, target_pieces = 384 }` or
/// `{ rule = "dragonfly" }` (the Rust client's rule) or `{ rule = "dragonfly_go" }` (the Go
/// daemon's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum PieceSizing {
    /// The Dragonfly Rust client's rule (`dragonfly-client-storage` `resource/piece.rs`),
    /// what current Dragonfly ships: the next power of two of content / 500, within
    /// [4 MiB, 64 MiB], so a task has at most about 500 pieces.
    Dragonfly,
    /// The Go dfdaemon's rule (`internal/util/util.go`): 4 MiB up to 200 MiB, then 1 MiB
    /// more per 100 MiB, at most 15 MiB.
    DragonflyGo,
    Fixed {
        piece_bytes: u64,
    },
    /// About `target_pieces` pieces per task: content / target_pieces rounded up to a
    /// whole `min_bytes`, within [min_bytes, max_bytes]. A piece crosses every hop of a
    /// stripe tree whole before the next hop can forward it, so a small blob's pipeline
    /// fills and drains in a few piece times only if its pieces are small; a large blob
    /// keeps large pieces (fewer requests and reports).
    Scaled {
        min_bytes: u64,
        max_bytes: u64,
        target_pieces: u64,
    },
}

impl PieceSizing {
    /// The largest piece this rule gives any task (what a piece buffer must hold).
    pub fn largest_piece_bytes(self) -> u64 {
        match self {
            PieceSizing::Dragonfly => DRAGONFLY_MAX_PIECE_BYTES,
            PieceSizing::DragonflyGo => 15 * MIB,
            PieceSizing::Fixed { piece_bytes } => piece_bytes,
            PieceSizing::Scaled { min_bytes, max_bytes, .. } => max_bytes.max(min_bytes.max(1)),
        }
    }

    pub fn piece_bytes(self, content_bytes: u64) -> u64 {
        match self {
            PieceSizing::Dragonfly => (content_bytes / DRAGONFLY_TARGET_PIECES)
                .checked_next_power_of_two()
                .unwrap_or(DRAGONFLY_MAX_PIECE_BYTES)
                .clamp(DRAGONFLY_MIN_PIECE_BYTES, DRAGONFLY_MAX_PIECE_BYTES),
            PieceSizing::DragonflyGo => {
                if content_bytes <= 200 * MIB {
                    4 * MIB
                } else {
                    ((4 + (content_bytes / (100 * MIB)).saturating_sub(2)) * MIB).min(15 * MIB)
                }
            }
            PieceSizing::Fixed { piece_bytes } => piece_bytes,
            PieceSizing::Scaled { min_bytes, max_bytes, target_pieces } => {
                let min = min_bytes.max(1);
                let wanted = content_bytes.div_ceil(target_pieces.max(1)).div_ceil(min) * min;
                wanted.clamp(min, max_bytes.max(min))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PieceSelection {
    /// Dragonfly's dispatcher: parents ordered by a cost EWMA (shuffled 10% of the
    /// time), a random piece from the first parent that has one.
    RandomFromBestParent,
    /// The piece held by the fewest known parents first (Kraken's rarest_first; ours).
    RarestFirst,
    /// The Dragonfly Rust client (`resource/piece_collector.rs`, `parent_selector.rs`):
    /// pieces in the order parents report them (here: piece order, every parent reporting
    /// what it holds at once), each from one of the parents holding it drawn at random,
    /// weighted by its idle upload: max(maxTx - currentTx, maxTx / 10), full weight when
    /// the parent has not said (`idle_upload_weight`).
    InOrderIdleWeighted,
}

/// The Rust client's weight of a parent for one piece, from the piece uploads its host
/// reported running (`TaskDownload::on_parent_uploads`): max(maxTx - currentTx, maxTx / 10)
/// as a fraction of maxTx. A host with an upload running is taken to send at its link's
/// rate (currentTx = maxTx: 0.1), an idle one at none (1.0), one that has not said as idle
/// (the client assumes 10 Gbit/s of idle upload for a host it has no figure for).
pub fn idle_upload_weight(uploads_active: u32) -> f64 {
    if uploads_active == 0 || uploads_active == u32::MAX {
        1.0
    } else {
        0.1
    }
}

/// Kraken's connection lifecycle (`lib/torrent/scheduler`, defaults from `applyDefaults`):
/// every `preemption_interval_ns` the agent closes each connection that moved no piece
/// either way for `conn_tti_ns` (counted from its opening, the last needed piece received
/// and the last piece sent) and each one older than `conn_ttl_ns`; a closed connection
/// and a refused dial blacklist the peer for `blacklist_ns`, during which handouts skip it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnLifecycle {
    /// `scheduler.Config.PreemptionInterval`, default 30 s.
    pub preemption_interval_ns: TimeNs,
    /// `scheduler.Config.ConnTTI` (`conn_tti`), default 30 s.
    pub conn_tti_ns: TimeNs,
    /// `scheduler.Config.ConnTTL` (`conn_ttl`), default 1 h.
    pub conn_ttl_ns: TimeNs,
    /// `connstate.Config.BlacklistDuration` (`blacklist_duration`), default 30 s.
    pub blacklist_ns: TimeNs,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The policy whose preset this is; the scheduler refuses a peer of another policy.
    pub policy: Policy,
    pub piece_sizing: PieceSizing,
    pub piece_selection: PieceSelection,
    /// Take from a parent only the pieces of the stripes it serves this child, unless it
    /// holds the whole task. Off-stripe pieces are what that parent's own upload owes to
    /// its children in its home stripe (and the seed's upload carries each piece once):
    /// taking them early starves a tree to feed one leaf.
    pub strict_stripes: bool,
    /// ...except from a parent whose host reported fewer than this many piece uploads in
    /// progress (`TaskDownload::on_parent_uploads`): it has upload to spare. 0: never.
    #[serde(default)]
    pub off_stripe_below_uploads: u32,
    /// Pieces in flight for one task, all sources together.
    pub max_in_flight_total: u32,
    /// Pieces in flight from one parent.
    pub max_in_flight_per_parent: u32,
    /// ... from a seed peer or origin-like parent (Kraken's origin pipeline limit).
    pub max_in_flight_per_seed_parent: u32,
    /// Pieces read from the origin at once while back-to-source (one streamed request).
    pub max_in_flight_origin: u32,
    /// Connections kept per task; scheduler handouts beyond it are ignored.
    pub max_parents: usize,
    /// Merge a new parent list into the current one instead of replacing it (Kraken).
    pub merge_parents: bool,
    /// Connections carry pieces both ways (Kraken); otherwise parent -> child only. Then
    /// `max_parents` caps connections in both directions: a dial to a peer at capacity is
    /// refused (Kraken's `max_open_conn`, origins included), and a complete download
    /// still accepts connections (it seeds).
    pub symmetric_connections: bool,
    /// Idle/expired connection closing and the blacklist (Kraken); None: connections live
    /// as long as the scheduler keeps them.
    pub conn_lifecycle: Option<ConnLifecycle>,
    /// Ask for parents again this often while below `max_parents` (Kraken announces).
    pub reannounce_interval_ns: Option<TimeNs>,
    /// The host announces one task per interval, round robin over its downloads that are
    /// below `max_parents` (Kraken's agent: one timer per process, `announcequeue`), so each
    /// of n such downloads asks every n intervals (`TaskDownload::on_host_announcing`).
    #[serde(default)]
    pub reannounce_round_robin: bool,
    /// Ask for new parents when fewer than this many parents can still give pieces...
    pub min_useful_parents: usize,
    /// ...or when nothing arrived for this long although pieces are missing.
    pub stall_timeout_ns: TimeNs,
    /// Never ask for new parents more often than this.
    pub reschedule_backoff_ns: TimeNs,
    /// Give up on P2P and ask for back-to-source after this many reschedules in a row
    /// without a new piece.
    pub max_reschedules: u32,
    /// A piece in flight longer than this (per MiB, at least `piece_timeout_min_ns`) is
    /// abandoned and its parent blamed.
    pub piece_timeout_per_mib_ns: TimeNs,
    pub piece_timeout_min_ns: TimeNs,
    /// Duplicate requests are allowed once this few pieces are missing (endgame).
    pub endgame_pieces: u32,
    /// Finished pieces per progress report to the scheduler; 0: never report pieces.
    pub report_batch_pieces: u32,
    /// Piece uploads a host serves at once, across tasks; others wait in line...
    pub upload_slots: u32,
    /// ...at most this long: then the request is refused as busy and the child asks
    /// another parent for the piece.
    pub upload_slot_wait_ns: TimeNs,
    /// A download of at most this many bytes skips the scheduler and reads the origin at
    /// once (`TaskDownload::skips_scheduler`): it neither registers nor serves. 0: never.
    #[serde(default)]
    pub direct_source_max_bytes: u64,
    /// Piece bytes per second a normal (not seed) host sends, all uploads together: the
    /// data plane's `upload_rate` when `[dataplane]` sets none, the host's upload in the
    /// simulator. None: the link alone limits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_limit_bytes_per_s: Option<u64>,
    /// ...and receives, all downloads together (`download_rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_limit_bytes_per_s: Option<u64>,
}

impl PeerConfig {
    pub fn preset(policy: Policy) -> PeerConfig {
        match policy {
            // Dragonfly Rust client: concurrent_piece_count 8, 4 candidate parents, a piece
            // report per piece, reschedule only when the parents run dry, at most 5 rounds.
            Policy::Dragonfly => PeerConfig {
                policy,
                piece_sizing: PieceSizing::Dragonfly,
                piece_selection: PieceSelection::InOrderIdleWeighted,
                strict_stripes: false,
                off_stripe_below_uploads: 0,
                max_in_flight_total: 8,
                max_in_flight_per_parent: 8,
                max_in_flight_per_seed_parent: 8,
                max_in_flight_origin: 2,
                max_parents: 4,
                merge_parents: false,
                symmetric_connections: false,
                conn_lifecycle: None,
                reannounce_interval_ns: None,
                reannounce_round_robin: false,
                min_useful_parents: 1,
                stall_timeout_ns: 30 * NS_PER_S,
                reschedule_backoff_ns: 0,
                max_reschedules: 5,
                piece_timeout_per_mib_ns: 0,
                piece_timeout_min_ns: 360 * NS_PER_S,
                endgame_pieces: 0,
                report_batch_pieces: 1,
                upload_slots: 128,
                upload_slot_wait_ns: 10 * NS_PER_S,
                direct_source_max_bytes: DRAGONFLY_DIRECT_SOURCE_MAX_BYTES,
                egress_limit_bytes_per_s: None,
                ingress_limit_bytes_per_s: None,
            },
            // Kraken agent: 4 MB pieces, 10 connections per blob, 3 requests per agent and
            // 5 per origin, rarest first, endgame at 3, announce every 3 s while not
            // saturated, timeout max(4 s, 4 s per MB). No piece reports (trackers get none).
            // Connections: preemption tick 30 s closing conns idle for conn_tti 30 s or older
            // than conn_ttl 1 h, blacklist 30 s after every close or refused dial
            // (`scheduler/config.go`, `connstate/config.go` defaults).
            Policy::Kraken => PeerConfig {
                policy,
                piece_sizing: PieceSizing::Fixed { piece_bytes: 4_000_000 },
                piece_selection: PieceSelection::RarestFirst,
                strict_stripes: false,
                off_stripe_below_uploads: 0,
                max_in_flight_total: 10 * 5,
                max_in_flight_per_parent: 3,
                max_in_flight_per_seed_parent: 5,
                max_in_flight_origin: 2,
                max_parents: 10,
                merge_parents: true,
                symmetric_connections: true,
                conn_lifecycle: Some(ConnLifecycle {
                    preemption_interval_ns: 30 * NS_PER_S,
                    conn_tti_ns: 30 * NS_PER_S,
                    conn_ttl_ns: 3600 * NS_PER_S,
                    blacklist_ns: 30 * NS_PER_S,
                }),
                reannounce_interval_ns: Some(3 * NS_PER_S),
                reannounce_round_robin: true,
                min_useful_parents: 0,
                stall_timeout_ns: 30 * NS_PER_S,
                reschedule_backoff_ns: 3 * NS_PER_S,
                max_reschedules: u32::MAX,
                piece_timeout_per_mib_ns: 4 * NS_PER_S,
                piece_timeout_min_ns: 4 * NS_PER_S,
                endgame_pieces: 3,
                report_batch_pieces: 0,
                upload_slots: u32::MAX,
                upload_slot_wait_ns: 10 * NS_PER_S,
                direct_source_max_bytes: 0,
                egress_limit_bytes_per_s: Some(KRAKEN_AGENT_EGRESS_BYTES_PER_S),
                ingress_limit_bytes_per_s: Some(KRAKEN_AGENT_INGRESS_BYTES_PER_S),
            },
            // Ours: pieces scaled to the blob (about 384 per blob in whole 512 KiB, 512 KiB to
            // 4 MiB: short pipelines for small layers, few requests for large ones; 1 MiB
            // steps rounded a 134 MB layer up to 64 pieces, and 128 or 256 per blob left
            // every tree a few piece times to fill at each layer start: tensorflow p2p
            // makespan / bound 1.10-1.16 at 128, 1.08-1.12 at 256, 1.05-1.09 at 384 with
            // the borrowing limit below), rarest first within the stripes each parent
            // serves, and from a parent still downloading nothing else unless its host has
            // upload to spare, one piece in flight per parent so a piece crosses each hop at
            // the edge's full share instead of a third of it (a parent per stripe, 8
            // stripes: up to 16 parents after reschedules), progress reported in batches
            // (the scheduler needs "has data", not every piece), quick reschedule when the
            // parents stop being useful.
            Policy::Default => PeerConfig {
                policy,
                piece_sizing: PieceSizing::Scaled { min_bytes: MIB / 2, max_bytes: 4 * MIB, target_pieces: 384 },
                piece_selection: PieceSelection::RarestFirst,
                strict_stripes: true,
                // A host with fewer uploads running than this lends pieces outside its home
                // stripe. Its home-stripe children (8, one piece each) are each held to a
                // share of their own download, so those flows alone often leave the host's
                // link with room; up to 12 flows lets other children use it. With 384 pieces
                // per blob, 4 / 8 / 12 / 16 / 32 gave tensorflow-200 1.101 / 1.084 / 1.083 /
                // 1.085 / 1.095 and tensorflow-500 1.095 / 1.093 / 1.090 / 1.092 / 1.105.
                off_stripe_below_uploads: 12,
                max_in_flight_total: 32,
                max_in_flight_per_parent: 1,
                max_in_flight_per_seed_parent: 1,
                max_in_flight_origin: 2,
                max_parents: 16,
                merge_parents: false,
                symmetric_connections: false,
                conn_lifecycle: None,
                reannounce_interval_ns: None,
                reannounce_round_robin: false,
                min_useful_parents: 2,
                stall_timeout_ns: 200 * NS_PER_MS,
                reschedule_backoff_ns: 100 * NS_PER_MS,
                max_reschedules: 50,
                piece_timeout_per_mib_ns: 2 * NS_PER_S,
                piece_timeout_min_ns: 4 * NS_PER_S,
                endgame_pieces: 4,
                report_batch_pieces: 8,
                upload_slots: 32,
                upload_slot_wait_ns: 10 * NS_PER_S,
                direct_source_max_bytes: 0,
                egress_limit_bytes_per_s: None,
                ingress_limit_bytes_per_s: None,
            },
        }
    }

    /// The configuration a `[peer]` table describes: the preset of the policy it names
    /// (`policy`, else `default_policy`) with its other keys laid over it, then checked. The
    /// daemon (`peerd.toml`) and the simulator (a scenario's `[peer]`) both read their
    /// tables with this. `order`: the table's keys as written.
    pub fn from_table(
        table: &toml::Table,
        order: &[String],
        default_policy: Policy,
    ) -> Result<PeerConfig, OverlayError> {
        let policy = table_policy(table, default_policy)?;
        let optional =
            ["conn_lifecycle", "reannounce_interval_ns", "egress_limit_bytes_per_s", "ingress_limit_bytes_per_s"];
        let cfg = overlay(&PeerConfig::preset(policy), table, order, "[peer]", &optional)?;
        cfg.validate().map_err(|(key, message)| OverlayError::new(key, message))?;
        Ok(cfg)
    }

    /// Values no download can work with. Err: (field, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, message: String| Err((key.to_string(), message));
        match self.piece_sizing {
            PieceSizing::Fixed { piece_bytes } if !(MIN_PIECE_BYTES..=MAX_PIECE_BYTES).contains(&piece_bytes) => {
                return fail(
                    "piece_sizing",
                    format!("piece_bytes = {piece_bytes}: must be between {MIN_PIECE_BYTES} and {MAX_PIECE_BYTES}"),
                );
            }
            PieceSizing::Scaled { min_bytes, max_bytes, target_pieces } => {
                if min_bytes < MIN_PIECE_BYTES || max_bytes > MAX_PIECE_BYTES || min_bytes > max_bytes {
                    return fail(
                        "piece_sizing",
                        format!(
                            "min_bytes = {min_bytes}, max_bytes = {max_bytes}: need {MIN_PIECE_BYTES} <= min_bytes <= max_bytes <= {MAX_PIECE_BYTES}"
                        ),
                    );
                }
                if target_pieces == 0 {
                    return fail("piece_sizing", "target_pieces = 0: must be at least 1".into());
                }
            }
            _ => {}
        }
        for (key, value) in [
            ("max_in_flight_total", self.max_in_flight_total),
            ("max_in_flight_per_parent", self.max_in_flight_per_parent),
            ("max_in_flight_per_seed_parent", self.max_in_flight_per_seed_parent),
            ("max_in_flight_origin", self.max_in_flight_origin),
            ("upload_slots", self.upload_slots),
        ] {
            if value == 0 {
                return fail(key, format!("{key} = 0: must be at least 1, or nothing is ever fetched"));
            }
        }
        if self.max_parents == 0 {
            return fail("max_parents", "max_parents = 0: must be at least 1".into());
        }
        if self.upload_slot_wait_ns < NS_PER_MS {
            return fail("upload_slot_wait_ns", "must be at least 1 ms (1000000)".into());
        }
        for (key, limit) in [
            ("egress_limit_bytes_per_s", self.egress_limit_bytes_per_s),
            ("ingress_limit_bytes_per_s", self.ingress_limit_bytes_per_s),
        ] {
            if limit.is_some_and(|l| l < 1_000_000) {
                return fail(
                    key,
                    format!("{key} = {}: at least 1000000 (1 MB/s), or leave it out for no limit", limit.unwrap_or(0)),
                );
            }
        }
        if self.piece_timeout_min_ns < NS_PER_MS {
            return fail("piece_timeout_min_ns", "must be at least 1 ms (1000000)".into());
        }
        if let Some(l) = &self.conn_lifecycle {
            if l.preemption_interval_ns < NS_PER_MS {
                return fail("conn_lifecycle", "preemption_interval_ns must be at least 1 ms (1000000)".into());
            }
        }
        if self.reannounce_interval_ns.is_some_and(|t| t < NS_PER_MS) {
            return fail("reannounce_interval_ns", "must be at least 1 ms (1000000)".into());
        }
        Ok(())
    }

    pub fn piece_timeout_ns(&self, piece_bytes: u64) -> TimeNs {
        (self.piece_timeout_per_mib_ns.saturating_mul(piece_bytes) / MIB).max(self.piece_timeout_min_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The peer-side baseline constants `sched/README.md` gives a source for ("The baseline
    /// presets"); a change here changes what `sim compare-policies` compares against.
    #[test]
    fn presets_pin_their_sourced_constants() {
        let d = PeerConfig::preset(Policy::Dragonfly);
        assert_eq!(d.piece_sizing, PieceSizing::Dragonfly);
        assert_eq!(d.piece_selection, PieceSelection::InOrderIdleWeighted);
        assert_eq!((idle_upload_weight(0), idle_upload_weight(3), idle_upload_weight(u32::MAX)), (1.0, 0.1, 1.0));
        assert_eq!((d.max_in_flight_total, d.max_parents, d.max_reschedules), (8, 4, 5));
        assert_eq!(d.stall_timeout_ns, 30 * NS_PER_S);
        assert_eq!(d.piece_timeout_min_ns, 360 * NS_PER_S);
        assert_eq!(d.direct_source_max_bytes, 4 * MIB);
        assert_eq!((d.egress_limit_bytes_per_s, d.ingress_limit_bytes_per_s), (None, None));
        let k = PeerConfig::preset(Policy::Kraken);
        assert_eq!((k.egress_limit_bytes_per_s, k.ingress_limit_bytes_per_s), (Some(200_000_000), Some(300_000_000)));
        assert_eq!(k.direct_source_max_bytes, 0);
        assert_eq!(k.piece_sizing, PieceSizing::Fixed { piece_bytes: 4_000_000 });
        assert_eq!(k.piece_selection, PieceSelection::RarestFirst);
        assert_eq!((k.max_parents, k.max_in_flight_per_parent, k.max_in_flight_per_seed_parent), (10, 3, 5));
        assert_eq!(k.endgame_pieces, 3);
        assert_eq!((k.piece_timeout_per_mib_ns, k.piece_timeout_min_ns), (4 * NS_PER_S, 4 * NS_PER_S));
        assert_eq!((k.reannounce_interval_ns, k.reannounce_round_robin), (Some(3 * NS_PER_S), true));
        let life = k.conn_lifecycle.expect("kraken closes idle and old connections");
        assert_eq!((life.preemption_interval_ns, life.conn_tti_ns), (30 * NS_PER_S, 30 * NS_PER_S));
        assert_eq!((life.conn_ttl_ns, life.blacklist_ns), (3600 * NS_PER_S, 30 * NS_PER_S));
    }

    #[test]
    fn rate_limits_read_from_a_table_and_refuse_nonsense() {
        let table: toml::Table = toml::from_str("egress_limit_bytes_per_s = 125000000").unwrap();
        let c = PeerConfig::from_table(&table, &["egress_limit_bytes_per_s".into()], Policy::Default).unwrap();
        assert_eq!(c.egress_limit_bytes_per_s, Some(125_000_000));
        let table: toml::Table = toml::from_str("ingress_limit_bytes_per_s = 10").unwrap();
        let e = PeerConfig::from_table(&table, &["ingress_limit_bytes_per_s".into()], Policy::Kraken).unwrap_err();
        assert!(e.to_string().contains("ingress_limit_bytes_per_s") && e.to_string().contains("1 MB/s"), "{e}");
    }

    /// `resource/piece.rs` of the Rust client: next power of two of length / 500 in
    /// [4 MiB, 64 MiB].
    #[test]
    fn dragonfly_piece_sizes_match_the_rust_client() {
        let s = PieceSizing::Dragonfly;
        assert_eq!(s.piece_bytes(0), 4 * MIB);
        assert_eq!(s.piece_bytes(100 * MIB), 4 * MIB);
        assert_eq!(s.piece_bytes(2000 * MIB), 4 * MIB);
        assert_eq!(s.piece_bytes(2001 * MIB), 8 * MIB);
        assert_eq!(s.piece_bytes(1 << 30), 4 * MIB);
        assert_eq!(s.piece_bytes(3 << 30), 8 * MIB);
        assert_eq!(s.piece_bytes(10 << 30), 32 * MIB);
        assert_eq!(s.piece_bytes(100 << 30), 64 * MIB);
        assert_eq!(s.piece_bytes(u64::MAX), 64 * MIB);
        assert_eq!(s.largest_piece_bytes(), 64 * MIB);
    }

    #[test]
    fn dragonfly_go_piece_sizes_match_the_reference() {
        let s = PieceSizing::DragonflyGo;
        assert_eq!(s.piece_bytes(100 * MIB), 4 * MIB);
        assert_eq!(s.piece_bytes(300 * MIB), 5 * MIB);
        assert_eq!(s.piece_bytes(1024 * MIB), 12 * MIB);
        assert_eq!(s.piece_bytes(10 * 1024 * MIB), 15 * MIB);
    }

    #[test]
    fn scaled_piece_sizes_are_whole_minimums_within_bounds() {
        let s = PieceSizing::Scaled { min_bytes: MIB, max_bytes: 4 * MIB, target_pieces: 128 };
        assert_eq!(s.piece_bytes(0), MIB);
        assert_eq!(s.piece_bytes(2_000_000), MIB);
        assert_eq!(s.piece_bytes(300_000_000), 3 * MIB);
        assert_eq!(s.piece_bytes(400 * MIB), 4 * MIB);
        assert_eq!(s.piece_bytes(100 << 30), 4 * MIB);
    }
}
