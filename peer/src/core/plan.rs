//! The download plan of one task on one host: which piece from which parent, how many in
//! flight, timeouts, when to ask for new parents, when to go back to source. Sans-IO: the
//! driver feeds events in and carries the returned actions out.

use super::availability::Availability;
use super::config::{idle_upload_weight, PeerConfig, PieceSelection};
use rand::seq::SliceRandom;
use rand::Rng;
use sched::core::bitset::word_bits;
use sched::core::{ParentRef, PeerId, PieceReport, PieceSet, Stripe, TimeNs};
use smallvec::SmallVec;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Parent(PeerId),
    Origin,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PeerAction {
    /// Start fetching `piece` (its length: `TaskDownload::piece_len`).
    Fetch { piece: u32, from: Source },
    /// Stop a transfer that timed out; its source is blamed.
    Cancel { piece: u32, from: Source },
    /// Progress for the scheduler.
    Report(Vec<PieceReport>),
    /// Tell the scheduler a parent failed us (it blocks the parent).
    ParentFailed { parent: PeerId },
    /// Ask the scheduler for new parents.
    Reschedule { blocked: Vec<PeerId> },
    /// P2P did not work out: ask the scheduler for the origin (`max_reschedules` rounds
    /// without a new piece). Only its `BackToSource` answer (`on_back_to_source`) sends
    /// the download there; parents instead mean no, and P2P goes on.
    AskBackToSource,
    /// A download that wanted part of the task (`is_partial` at its registration) now
    /// wants all of it: tell the scheduler (`Scheduler::peer_wants_all`), which gives it
    /// parents for the stripes it went without (and for everything, when the origin was
    /// serving its ranges).
    WantsAll,
    /// Every piece of the task is here.
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    P2p,
    BackToSource,
    Done,
    /// The scheduler gave up on the download (`on_scheduling_failed`): nothing more is
    /// fetched from anywhere.
    Refused,
}

/// The stripes a parent serves this child (a parent may feed it in several stripes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stripes {
    mask: u64,
    count: u32,
    /// Bit j set iff stripe j % count is in `mask`, for j in 0..128: any 64 consecutive
    /// pieces' membership is one shift of it (`word_mask`).
    pattern: u128,
}

impl Stripes {
    fn new(mask: u64, count: u32) -> Stripes {
        let pattern = (0..128u32).filter(|j| mask >> (j % count) & 1 == 1).fold(0u128, |p, j| p | 1 << j);
        Stripes { mask, count, pattern }
    }
    fn of(stripe: Option<Stripe>) -> Option<Stripes> {
        stripe
            .filter(|s| s.count > 0 && s.count <= 64 && s.index < s.count)
            .map(|s| Stripes::new(1 << s.index, s.count))
    }
    #[cfg(test)]
    fn contains(self, piece: u32) -> bool {
        self.mask >> (piece % self.count) & 1 == 1
    }
    /// The pieces of word `wi` of a piece set (pieces wi*64 .. wi*64+63) in these stripes:
    /// bit b is piece wi*64 + b, in stripe (r + b) % count with r = wi*64 % count < 64.
    fn word_mask(self, wi: usize) -> u64 {
        let r = (wi as u64 * 64 % u64::from(self.count)) as u32;
        (self.pattern >> r) as u64
    }
    /// Union; a parent with no stripe (or a different stripe count) serves everything.
    fn merge(a: Option<Stripes>, b: Option<Stripes>) -> Option<Stripes> {
        match (a, b) {
            (Some(x), Some(y)) if x.count == y.count => Some(Stripes::new(x.mask | y.mask, x.count)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct ParentView {
    peer: PeerId,
    stripes: Option<Stripes>,
    has: PieceSet,
    in_flight: u32,
    /// Dragonfly's parent score: EWMA (alpha 1/2) of piece costs; lower is better.
    cost_ewma_ns: f64,
    is_seed: bool,
    /// When the connection opened (Kraken's `conn.CreatedAt`).
    opened_ns: TimeNs,
    /// Latest of: opened, last needed piece received from it, last piece sent to it
    /// (Kraken's `lastProgress` in the preemption tick).
    last_progress_ns: TimeNs,
    /// Piece uploads the parent's host had in progress when it last said
    /// (`on_parent_uploads`); `u32::MAX` until it does.
    uploads_active: u32,
    /// Stall checks in a row at which the parent held nothing this download needs and had
    /// gained no piece since the check before (`block_idle_parents`).
    idle_stalls: u32,
    /// Pieces the parent held at the last stall check.
    has_at_stall: u32,
}

/// One word of a parent's pieces that this download still needs (`pick_rarest`).
#[derive(Debug, Clone)]
struct Cell {
    peer: PeerId,
    word: usize,
    /// Needed pieces the parent holds, and those of them in the parent's stripes.
    any: u64,
    in_stripes: u64,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    from: Source,
    /// When it times out (start plus `piece_timeout_ns` of its length).
    deadline_ns: TimeNs,
    /// Every byte has arrived (`on_piece_received`); the piece is being verified and
    /// stored. It no longer holds its parent's slot, and it cannot time out.
    received: bool,
}

#[derive(Debug, Clone)]
pub struct TaskDownload {
    cfg: PeerConfig,
    content_bytes: u64,
    piece_bytes: u64,
    have: PieceSet,
    /// Pieces this download must get (all of them, or a lazy reader's ranges so far).
    wanted: PieceSet,
    /// Wanted, not here, not in flight.
    needed: PieceSet,
    /// Pieces someone is waiting on right now (lazy range reads): fetched first.
    urgent: PieceSet,
    /// Wants only part of the task (created without `want_all`) and has not said otherwise.
    partial: bool,
    /// `want_all` came after the download started partial: the next `poll` says `WantsAll`.
    wants_all_due: bool,
    /// No scheduler answers (`on_scheduler_lost`): the origin serves everything from then on.
    scheduler_lost: bool,
    /// Downloads of this host taking turns to announce (`on_host_announcing`), at least 1.
    host_announcing: u32,
    in_flight: BTreeMap<u32, Vec<InFlight>>,
    /// Transfers in `in_flight`, kept so the fill loop need not count them.
    in_flight_total: u32,
    /// No transfer in `in_flight` times out before this (a lower bound: transfers that
    /// ended leave it as it was), so most polls skip the timeout scan.
    expiry_floor: TimeNs,
    parents: Vec<ParentView>,
    /// `parents`' ids, in the same order: a parent is looked up at every piece it gains,
    /// and a scan of these (kept inside the download up to 16) stays in a cache line or
    /// two where one of the views does not.
    parent_ids: SmallVec<[PeerId; 16]>,
    /// How many parents hold each piece this download does not hold yet.
    availability: Availability,
    phase: Phase,
    pending_reports: Vec<PieceReport>,
    origin_in_flight: u32,
    last_piece_ns: TimeNs,
    last_reschedule_ns: Option<TimeNs>,
    awaiting_parents: bool,
    /// Reschedules since the last new piece.
    reschedules: u32,
    /// An `AskBackToSource` is unanswered.
    asked_origin: bool,
    failed_parents: Vec<PeerId>,
    finished_sent: bool,
    /// Parents that joined or left since the driver last asked (`take_parent_changes`).
    parent_changes: Vec<(PeerId, bool)>,
    /// `conn_lifecycle`: peers this download will not dial until the given time.
    blacklist: BTreeMap<PeerId, TimeNs>,
    /// `conn_lifecycle`: the next preemption tick (a multiple of the interval: one
    /// ticker per agent process, started with it at time 0).
    next_preemption_ns: TimeNs,
    /// Transfers of closed connections still to be cancelled (at the next `poll`).
    pending_cancels: Vec<(u32, Source)>,
    /// `pick_rarest`'s working lists, kept between calls so a call allocates nothing.
    scratch: RarestScratch,
}

#[derive(Debug, Clone, Default)]
struct RarestScratch {
    order: Vec<usize>,
    cells: Vec<Cell>,
}

impl TaskDownload {
    /// A download of `content_bytes`; `want_all` false starts a lazy reader that fetches
    /// only what `want` asks for.
    pub fn new(cfg: PeerConfig, content_bytes: u64, want_all: bool, now: TimeNs) -> TaskDownload {
        let piece_bytes = cfg.piece_sizing.piece_bytes(content_bytes).max(1);
        let count = content_bytes.div_ceil(piece_bytes) as u32;
        let wanted = if want_all { PieceSet::full(count) } else { PieceSet::new(count) };
        let availability = Availability::new(count, cfg.max_parents);
        TaskDownload {
            cfg,
            content_bytes,
            piece_bytes,
            have: PieceSet::new(count),
            needed: wanted.clone(),
            wanted,
            urgent: PieceSet::new(count),
            partial: !want_all,
            wants_all_due: false,
            scheduler_lost: false,
            host_announcing: 1,
            in_flight: BTreeMap::new(),
            in_flight_total: 0,
            expiry_floor: TimeNs::MAX,
            parents: Vec::new(),
            parent_ids: SmallVec::new(),
            availability,
            phase: Phase::P2p,
            pending_reports: Vec::new(),
            origin_in_flight: 0,
            last_piece_ns: now,
            last_reschedule_ns: None,
            awaiting_parents: true,
            reschedules: 0,
            asked_origin: false,
            failed_parents: Vec::new(),
            finished_sent: false,
            parent_changes: Vec::new(),
            blacklist: BTreeMap::new(),
            next_preemption_ns: 0,
            pending_cancels: Vec::new(),
            scratch: RarestScratch::default(),
        }
    }

    /// A download this small skips the scheduler (`PeerConfig::direct_source_max_bytes`,
    /// Dragonfly's rule for files of at most 4 MiB): the driver neither registers it nor
    /// reports its pieces, and it reads the origin at once (`on_scheduler_lost`).
    pub fn skips_scheduler(&self) -> bool {
        self.content_bytes <= self.cfg.direct_source_max_bytes
    }

    /// Whether this download takes a turn in its host's announce round robin: not done and
    /// below `max_parents` (Kraken skips saturated torrents).
    pub fn wants_announce(&self) -> bool {
        self.phase == Phase::P2p && !self.needed.is_empty() && self.parents.len() < self.cfg.max_parents
    }

    /// How many downloads of this host `wants_announce` (this one included): with
    /// `reannounce_round_robin` each announces once per that many intervals.
    pub fn on_host_announcing(&mut self, downloads: u32) {
        self.host_announcing = downloads.max(1);
    }

    /// The time between two announces of this download, if it announces.
    fn announce_interval_ns(&self) -> Option<TimeNs> {
        let rounds = if self.cfg.reannounce_round_robin { TimeNs::from(self.host_announcing) } else { 1 };
        self.cfg.reannounce_interval_ns.map(|i| i.saturating_mul(rounds))
    }

    pub fn piece_count(&self) -> u32 {
        self.have.len()
    }
    pub fn piece_bytes(&self) -> u64 {
        self.piece_bytes
    }
    pub fn piece_len(&self, piece: u32) -> u64 {
        let start = u64::from(piece) * self.piece_bytes;
        self.piece_bytes.min(self.content_bytes - start)
    }
    pub fn pieces_covering(&self, offset: u64, len: u64) -> std::ops::Range<u32> {
        if len == 0 || self.content_bytes == 0 {
            return 0..0;
        }
        let first = (offset / self.piece_bytes) as u32;
        let last = ((offset + len - 1).min(self.content_bytes - 1) / self.piece_bytes) as u32;
        first..last + 1
    }
    pub fn have(&self) -> &PieceSet {
        &self.have
    }
    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }
    pub fn has_parent(&self, peer: PeerId) -> bool {
        self.parent_ids.contains(&peer)
    }

    fn parent_index(&self, peer: PeerId) -> Option<usize> {
        self.parent_ids.iter().position(|p| *p == peer)
    }

    fn parent_mut(&mut self, peer: PeerId) -> Option<&mut ParentView> {
        self.parent_index(peer).map(|i| &mut self.parents[i])
    }
    pub fn parent_ids(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.parents.iter().map(|p| p.peer)
    }
    pub fn in_flight_count(&self) -> usize {
        debug_assert_eq!(self.in_flight_total as usize, self.in_flight.values().map(Vec::len).sum::<usize>());
        self.in_flight_total as usize
    }
    pub fn is_back_to_source(&self) -> bool {
        self.phase == Phase::BackToSource
    }

    /// Parents added (true) or dropped (false) since the last call, for a driver that
    /// routes "parent has piece" notices.
    pub fn take_parent_changes(&mut self) -> Vec<(PeerId, bool)> {
        std::mem::take(&mut self.parent_changes)
    }

    // ---- inputs ----

    /// The scheduler's parents, each with the pieces it holds now.
    pub fn on_parents(&mut self, now: TimeNs, parents: Vec<(ParentRef, bool, PieceSet)>) {
        self.awaiting_parents = false;
        if std::mem::take(&mut self.asked_origin) {
            // The scheduler said no to the origin (the task is at its back-to-source
            // limit) and sent parents: P2P gets a whole new set of rounds.
            self.reschedules = 0;
        }
        if self.cfg.merge_parents && self.phase == Phase::Done {
            // Kraken: a complete torrent opens no new connections.
            return;
        }
        if !self.cfg.merge_parents {
            let keep: Vec<PeerId> = parents.iter().map(|(p, _, _)| p.peer).collect();
            let gone: Vec<PeerId> = self.parents.iter().map(|p| p.peer).filter(|p| !keep.contains(p)).collect();
            for g in gone {
                self.remove_parent(g);
            }
        }
        // One entry per (parent, stripe): the first entry of a parent sets its stripes,
        // later ones add to them.
        let mut seen: Vec<PeerId> = Vec::new();
        for (parent, is_seed, has) in parents {
            let id = parent.peer;
            let stripes = Stripes::of(parent.stripe);
            if let Some(existing) = self.parent_mut(parent.peer) {
                existing.stripes =
                    if seen.contains(&parent.peer) { Stripes::merge(existing.stripes, stripes) } else { stripes };
            } else if !self.is_blacklisted(id, now) {
                self.add_parent(now, parent, is_seed, has);
            }
            seen.push(id);
        }
    }

    /// A connection opened by the other side (symmetric connections only). Returns false
    /// when refused: no room (Kraken's `AddPending`: pending and active connections share
    /// `max_open_conn`; a complete download still accepts, it seeds), or already connected.
    /// The blacklist is not consulted: Kraken checks it only before dialling.
    pub fn on_incoming(&mut self, now: TimeNs, parent: ParentRef, has: PieceSet) -> bool {
        if !self.cfg.symmetric_connections || self.parents.len() >= self.cfg.max_parents || self.has_parent(parent.peer)
        {
            return false;
        }
        self.add_parent(now, parent, false, has)
    }

    /// The peer this download dialled (a parent from `on_parents`) refused the connection:
    /// drop it and, with `conn_lifecycle`, blacklist it (Kraken's failed outgoing handshake).
    pub fn on_dial_refused(&mut self, now: TimeNs, peer: PeerId) {
        self.close_conn(now, peer);
    }

    /// The other side closed the connection (symmetric connections): drop the peer, stop
    /// its transfers (cancelled at the next `poll`) and, with `conn_lifecycle`, blacklist it
    /// (Kraken's `connClosedEvent` runs on both ends). A no-op if not connected.
    pub fn on_conn_closed(&mut self, now: TimeNs, peer: PeerId) {
        if self.has_parent(peer) {
            self.close_conn(now, peer);
        }
    }

    /// This download sent `peer` a piece (it keeps the connection from looking idle).
    pub fn on_piece_sent(&mut self, now: TimeNs, peer: PeerId) {
        if let Some(p) = self.parent_mut(peer) {
            p.last_progress_ns = p.last_progress_ns.max(now);
        }
    }

    /// With `conn_lifecycle`: `peer` is blacklisted for this download at `now`.
    pub fn is_blacklisted(&self, peer: PeerId, now: TimeNs) -> bool {
        self.blacklist.get(&peer).is_some_and(|until| *until > now)
    }

    pub fn on_parent_has(&mut self, parent: PeerId, piece: u32) {
        let Some(i) = self.parent_index(parent) else {
            return;
        };
        if self.parents[i].has.insert(piece) {
            self.bump_availability(piece, 1);
        }
    }

    /// The parent's host reports how many piece uploads it has in progress (the daemon
    /// reads it from the parent's piece-map replies; the simulator from its upload slots).
    pub fn on_parent_uploads(&mut self, parent: PeerId, active: u32) {
        if let Some(p) = self.parent_mut(parent) {
            p.uploads_active = active;
        }
    }

    /// The parent is gone (left, failed, or closed the connection).
    pub fn on_parent_gone(&mut self, parent: PeerId) {
        self.remove_parent(parent);
    }

    /// The scheduler sent this download to the origin (an order, or its yes to
    /// `AskBackToSource`).
    pub fn on_back_to_source(&mut self, _now: TimeNs) {
        self.awaiting_parents = false;
        self.asked_origin = false;
        if self.phase == Phase::P2p {
            self.phase = Phase::BackToSource;
        }
    }

    /// No scheduler answers this download: none is configured, or it stayed unreachable
    /// through the driver's reconnect attempts. The download goes on from the origin: the
    /// one way there that is not the scheduler's decision, since nobody is left to ask.
    pub fn on_scheduler_lost(&mut self, now: TimeNs) {
        self.scheduler_lost = true;
        self.on_back_to_source(now);
    }

    /// The scheduler gave up on this download (`Decision::Failed`). It fails a peer only
    /// when it will not send it to the origin either (the task is at its back-to-source
    /// limit, or the policy allows none), so nothing more is fetched: the driver ends the
    /// download with an error and its client may try again later.
    pub fn on_scheduling_failed(&mut self, _now: TimeNs) {
        self.awaiting_parents = false;
        self.asked_origin = false;
        if matches!(self.phase, Phase::P2p | Phase::BackToSource) {
            self.phase = Phase::Refused;
            // Transfers still running are stopped (the next `poll` says so); their
            // bookkeeping stays, as nothing is planned any more.
            for (piece, flights) in &self.in_flight {
                self.pending_cancels.extend(flights.iter().map(|f| (*piece, f.from)));
            }
        }
    }

    /// The scheduler gave up on this download (`on_scheduling_failed`).
    pub fn is_refused(&self) -> bool {
        self.phase == Phase::Refused
    }

    /// A lazy reader needs these pieces now.
    pub fn want(&mut self, pieces: std::ops::Range<u32>) {
        for p in pieces {
            if self.wanted.insert(p) && !self.have.contains(p) && !self.in_flight.contains_key(&p) {
                self.needed.insert(p);
            }
            if !self.have.contains(p) {
                self.urgent.insert(p);
            }
        }
    }

    /// Fetch the rest too, keeping the pieces readers wait on urgent: a lazy download that
    /// a whole-content reader (or background prefetch) joins.
    pub fn want_rest(&mut self) {
        for p in 0..self.piece_count() {
            if self.wanted.insert(p) && !self.have.contains(p) && !self.in_flight.contains_key(&p) {
                self.needed.insert(p);
            }
        }
        self.no_longer_partial();
    }

    /// Nothing wanted is missing: every wanted piece is here (a lazy reader's ranges were
    /// served, or the download is complete), no transfer is running.
    pub fn wants_nothing_more(&self) -> bool {
        self.needed.is_empty() && self.in_flight.is_empty()
    }

    /// Fetch the rest too (background prefetch).
    pub fn want_all(&mut self) {
        self.want(0..self.piece_count());
        self.urgent = PieceSet::new(self.piece_count());
        self.no_longer_partial();
    }

    /// A partial download now wants the whole task: the next `poll` says `WantsAll`.
    fn no_longer_partial(&mut self) {
        if std::mem::take(&mut self.partial) {
            self.wants_all_due = true;
            if self.phase == Phase::BackToSource && !self.scheduler_lost {
                // The origin was granted for the ranges read; the rest comes through P2P
                // (`Scheduler::peer_wants_all` places it): one whole copy from the origin
                // per lazy reader that once stalled was issue 23's registry storm.
                // Transfers from the origin already running finish.
                self.phase = Phase::P2p;
                self.awaiting_parents = true;
                self.asked_origin = false;
                self.reschedules = 0;
            }
        }
    }

    /// Registered as wanting only part of the task (`RegisterPeer::partial`): true from
    /// `new` without `want_all` until `want_all` or `want_rest`.
    pub fn is_partial(&self) -> bool {
        self.partial
    }

    pub fn on_piece_done(&mut self, now: TimeNs, piece: u32, from: Source, cost_ns: u64) {
        self.finish_in_flight(piece, from);
        self.last_piece_ns = now;
        if let Source::Parent(peer) = from {
            if let Some(p) = self.parent_mut(peer) {
                p.cost_ewma_ns = (p.cost_ewma_ns + cost_ns as f64) / 2.0;
            }
        }
        if !self.have.insert(piece) {
            return; // a duplicate (endgame) arrived second
        }
        if let Source::Parent(peer) = from {
            // Kraken's `LastGoodPieceReceived`: a needed piece, not a duplicate.
            if let Some(p) = self.parent_mut(peer) {
                p.last_progress_ns = p.last_progress_ns.max(now);
            }
        }
        self.needed.remove(piece);
        self.urgent.remove(piece);
        self.wanted.insert(piece);
        // Rescheduling that brings progress is not failure: only rounds without a new
        // piece count toward giving up on P2P.
        self.reschedules = 0;
        // Other requests for the same piece (endgame duplicates) are now useless.
        self.pending_reports.push(PieceReport {
            piece,
            parent: match from {
                Source::Parent(p) => Some(p),
                Source::Origin => None,
            },
            cost_ns,
        });
    }

    /// The driver has every byte of a transfer from a parent and is verifying and storing
    /// it (`on_piece_done` or `on_piece_failed` follows). The parent's slot is free from
    /// here: its link carries the next piece while this one is hashed and written, which
    /// over a real network is what keeps one piece per parent from leaving the link idle
    /// for the time of a hash and a write per piece (measured: a fresh peer fetching 400 MB
    /// of 4 MiB pieces from complete parents on loopback went from 195–223 to 233–317 MB/s).
    /// A driver without that gap (the simulator's transfers end when the bytes land) need
    /// not call it.
    pub fn on_piece_received(&mut self, piece: u32, from: Source) {
        let Source::Parent(peer) = from else { return };
        let Some(f) = self.in_flight.get_mut(&piece).and_then(|v| v.iter_mut().find(|f| f.from == from)) else {
            return;
        };
        if f.received {
            return;
        }
        f.received = true;
        if let Some(p) = self.parent_mut(peer) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
    }

    pub fn on_piece_failed(&mut self, now: TimeNs, piece: u32, from: Source) {
        self.on_transfer_dropped(piece, from);
        if let Source::Parent(peer) = from {
            if !self.failed_parents.contains(&peer) {
                self.failed_parents.push(peer);
            }
            // The replica drops a parent whose piece timed out. Kraken itself keeps the
            // connection and resends the request elsewhere; with the lifecycle the drop is
            // a close like any other (both ends see it, the peer is blacklisted).
            if self.cfg.conn_lifecycle.is_some() && self.has_parent(peer) {
                self.close_conn(now, peer);
            } else {
                self.remove_parent(peer);
            }
        }
    }

    /// A parent failed outside any one piece transfer (its piece-map stream broke, or it
    /// refused the task): drop it, tell the scheduler, and ask for a replacement.
    pub fn on_parent_failed(&mut self, parent: PeerId) {
        if !self.has_parent(parent) {
            return;
        }
        if !self.failed_parents.contains(&parent) {
            self.failed_parents.push(parent);
        }
        self.remove_parent(parent);
    }

    /// The driver stopped a transfer that was not at fault (an endgame duplicate that
    /// lost the race): forget it without blaming its source.
    pub fn on_transfer_dropped(&mut self, piece: u32, from: Source) {
        self.finish_in_flight(piece, from);
        if self.wanted.contains(piece) && !self.have.contains(piece) && !self.in_flight.contains_key(&piece) {
            self.needed.insert(piece);
        }
    }

    /// Transfers still running for a piece this download already holds (endgame losers).
    pub fn redundant_transfers(&self, piece: u32) -> Vec<Source> {
        if !self.have.contains(piece) {
            return Vec::new();
        }
        self.in_flight.get(&piece).map(|v| v.iter().map(|f| f.from).collect()).unwrap_or_default()
    }

    /// When the driver must call `poll` again even if nothing else happens.
    pub fn next_deadline(&self) -> Option<TimeNs> {
        if matches!(self.phase, Phase::Done | Phase::Refused) {
            return None;
        }
        let mut next: Option<TimeNs> = None;
        let mut consider = |t: TimeNs| next = Some(next.map_or(t, |n: TimeNs| n.min(t)));
        if self.cfg.conn_lifecycle.is_some() && !self.parents.is_empty() {
            // Only an unfinished download ticks: a connection's idleness is the same seen
            // from either end (a piece received at one end was sent by the other), so the
            // unfinished end's check stands for both, and a finished one never wakes the
            // driver for nothing.
            consider(self.next_preemption_ns);
        }
        // The earliest piece timeout, or a time before it: `expire` finds the exact one
        // when it is reached (a wake-up for nothing at worst, after a piece timeout).
        if self.expiry_floor != TimeNs::MAX {
            consider(self.expiry_floor);
        }
        if self.phase == Phase::P2p && !self.needed.is_empty() && !self.awaiting_parents {
            if self.in_flight.is_empty() {
                // A stall is acted on only once the reschedule backoff allows it too; a
                // deadline before that would wake the driver over and over for nothing.
                let stall = self.last_piece_ns.saturating_add(self.cfg.stall_timeout_ns);
                let backoff = self.last_reschedule_ns.map_or(0, |t| t.saturating_add(self.cfg.reschedule_backoff_ns));
                consider(stall.max(backoff));
            }
            if let Some(interval) = self.announce_interval_ns() {
                if self.parents.len() < self.cfg.max_parents {
                    consider(self.last_reschedule_ns.unwrap_or(0).saturating_add(interval));
                }
            }
            if let Some(last) = self.last_reschedule_ns {
                if self.wants_new_parents() {
                    consider(last.saturating_add(self.cfg.reschedule_backoff_ns));
                }
            }
        }
        next
    }

    /// Decides what to do now.
    pub fn poll(&mut self, now: TimeNs, rng: &mut impl Rng, out: &mut Vec<PeerAction>) {
        for (piece, from) in self.pending_cancels.drain(..) {
            out.push(PeerAction::Cancel { piece, from });
        }
        if std::mem::take(&mut self.wants_all_due) {
            out.push(PeerAction::WantsAll);
        }
        if matches!(self.phase, Phase::Done | Phase::Refused) {
            return;
        }
        self.preempt(now);
        self.expire(now, out);
        // Transfers of connections the timeouts closed.
        for (piece, from) in self.pending_cancels.drain(..) {
            out.push(PeerAction::Cancel { piece, from });
        }
        match self.phase {
            Phase::BackToSource => self.fill_from_origin(now, out),
            Phase::P2p => {
                self.fill_from_parents(now, rng, out);
                self.maybe_reschedule(now, out);
            }
            Phase::Done | Phase::Refused => {}
        }
        let batch = self.cfg.report_batch_pieces as usize;
        let complete = self.have.is_full();
        if batch > 0 && !self.pending_reports.is_empty() && (self.pending_reports.len() >= batch || complete) {
            out.push(PeerAction::Report(std::mem::take(&mut self.pending_reports)));
        }
        if complete && !self.finished_sent {
            self.finished_sent = true;
            self.phase = Phase::Done;
            self.pending_reports.clear();
            out.push(PeerAction::Finished);
            if self.cfg.conn_lifecycle.is_some() {
                // Kraken's `Dispatcher.complete`: connections to complete peers are useless
                // now and are closed; the blacklist of the torrent is cleared.
                let complete: Vec<PeerId> = self.parents.iter().filter(|p| p.has.is_full()).map(|p| p.peer).collect();
                for peer in complete {
                    self.close_conn(now, peer);
                }
                self.blacklist.clear();
            }
        }
    }

    /// Kraken's preemption tick: close connections idle for longer than `conn_tti_ns`
    /// and those older than `conn_ttl_ns`.
    fn preempt(&mut self, now: TimeNs) {
        let Some(lc) = self.cfg.conn_lifecycle else {
            return;
        };
        if now < self.next_preemption_ns {
            return;
        }
        let interval = lc.preemption_interval_ns.max(1);
        self.next_preemption_ns = (now / interval + 1) * interval;
        let expired: Vec<PeerId> = self
            .parents
            .iter()
            .filter(|p| {
                now.saturating_sub(p.last_progress_ns) > lc.conn_tti_ns
                    || now.saturating_sub(p.opened_ns) > lc.conn_ttl_ns
            })
            .map(|p| p.peer)
            .collect();
        for peer in expired {
            self.close_conn(now, peer);
        }
    }

    /// Closes the connection to `peer`: its transfers are dropped (cancels queued for the
    /// driver), the peer leaves the plan, and with `conn_lifecycle` it is blacklisted
    /// unless it already is (Kraken's `State.Blacklist` keeps the first expiry).
    fn close_conn(&mut self, now: TimeNs, peer: PeerId) {
        let from = Source::Parent(peer);
        let pieces: Vec<u32> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.iter().any(|x| x.from == from && !x.received))
            .map(|(p, _)| *p)
            .collect();
        for piece in pieces {
            self.on_transfer_dropped(piece, from);
            self.pending_cancels.push((piece, from));
        }
        self.remove_parent(peer);
        if let Some(lc) = self.cfg.conn_lifecycle {
            if !self.is_blacklisted(peer, now) {
                self.blacklist.insert(peer, now.saturating_add(lc.blacklist_ns));
            }
        }
    }

    // ---- internals ----

    fn add_parent(&mut self, now: TimeNs, parent: ParentRef, is_seed: bool, has: PieceSet) -> bool {
        if self.parents.len() >= self.cfg.max_parents {
            return false;
        }
        for piece in has.iter() {
            self.bump_availability(piece, 1);
        }
        self.parent_changes.push((parent.peer, true));
        self.parent_ids.push(parent.peer);
        self.parents.push(ParentView {
            peer: parent.peer,
            stripes: Stripes::of(parent.stripe),
            has,
            in_flight: 0,
            cost_ewma_ns: 0.0,
            is_seed,
            opened_ns: now,
            last_progress_ns: now,
            uploads_active: u32::MAX,
            idle_stalls: 0,
            has_at_stall: u32::MAX,
        });
        true
    }

    fn remove_parent(&mut self, peer: PeerId) {
        let Some(i) = self.parent_index(peer) else {
            return;
        };
        let view = self.parents.remove(i);
        self.parent_ids.remove(i);
        for piece in view.has.iter() {
            self.bump_availability(piece, -1);
        }
        self.parent_changes.push((peer, false));
    }

    /// Counts a parent more (1) or less (-1) holding `piece`. A piece this download holds
    /// is skipped: it is held for good (nothing takes a piece out of `have`), and counts are
    /// only ever read through `needed`, which it has left, so its count is never read again.
    /// At 500 nodes 44 % of the notices are of pieces already here (tensorflow-500).
    fn bump_availability(&mut self, piece: u32, delta: i32) {
        if self.have.contains(piece) {
            return;
        }
        if delta > 0 {
            self.availability.add(piece);
        } else {
            self.availability.remove(piece);
        }
    }

    fn finish_in_flight(&mut self, piece: u32, from: Source) {
        if let Some(flights) = self.in_flight.get_mut(&piece) {
            if let Some(i) = flights.iter().position(|f| f.from == from) {
                let received = flights.remove(i).received;
                self.in_flight_total -= 1;
                match from {
                    Source::Origin => self.origin_in_flight -= 1,
                    Source::Parent(peer) if !received => {
                        if let Some(i) = self.parent_ids.iter().position(|p| *p == peer) {
                            let p = &mut self.parents[i];
                            p.in_flight = p.in_flight.saturating_sub(1);
                        }
                    }
                    Source::Parent(_) => {}
                }
            }
            if flights.is_empty() {
                self.in_flight.remove(&piece);
            }
        }
    }

    fn start(&mut self, now: TimeNs, piece: u32, from: Source, out: &mut Vec<PeerAction>) {
        self.needed.remove(piece);
        let deadline_ns = now.saturating_add(self.cfg.piece_timeout_ns(self.piece_len(piece)));
        self.in_flight.entry(piece).or_default().push(InFlight { from, deadline_ns, received: false });
        self.in_flight_total += 1;
        self.expiry_floor = self.expiry_floor.min(deadline_ns);
        match from {
            Source::Origin => self.origin_in_flight += 1,
            Source::Parent(peer) => {
                if let Some(p) = self.parent_mut(peer) {
                    p.in_flight += 1;
                }
            }
        }
        out.push(PeerAction::Fetch { piece, from });
    }

    fn expire(&mut self, now: TimeNs, out: &mut Vec<PeerAction>) {
        if now < self.expiry_floor {
            return;
        }
        let mut expired = Vec::new();
        let mut floor = TimeNs::MAX;
        for (piece, flights) in &self.in_flight {
            for f in flights.iter().filter(|f| !f.received) {
                if now >= f.deadline_ns {
                    expired.push((*piece, f.from));
                } else {
                    floor = floor.min(f.deadline_ns);
                }
            }
        }
        self.expiry_floor = floor;
        for (piece, from) in expired {
            out.push(PeerAction::Cancel { piece, from });
            if let Source::Parent(parent) = from {
                out.push(PeerAction::ParentFailed { parent });
            }
            self.on_piece_failed(now, piece, from);
        }
    }

    fn fill_from_origin(&mut self, now: TimeNs, out: &mut Vec<PeerAction>) {
        // One streamed read, in piece order: the next missing pieces.
        while self.origin_in_flight < self.cfg.max_in_flight_origin {
            let next = self.urgent_first_needed();
            let Some(piece) = next else { break };
            self.start(now, piece, Source::Origin, out);
        }
    }

    fn urgent_first_needed(&self) -> Option<u32> {
        let urgent = self.urgent.words().iter().zip(self.needed.words()).enumerate().find_map(|(i, (u, n))| {
            let w = u & n;
            (w != 0).then(|| i as u32 * 64 + w.trailing_zeros())
        });
        urgent.or_else(|| self.needed.iter().next())
    }

    fn fill_from_parents(&mut self, now: TimeNs, rng: &mut impl Rng, out: &mut Vec<PeerAction>) {
        let endgame = self.cfg.endgame_pieces > 0
            && self.wanted.is_full()
            && self.wanted.count() - self.have.count() <= self.cfg.endgame_pieces;
        while (self.in_flight_count() as u32) < self.cfg.max_in_flight_total {
            let choice = match self.cfg.piece_selection {
                PieceSelection::RarestFirst => self.pick_rarest(rng),
                PieceSelection::RandomFromBestParent => self.pick_random_from_best(rng),
                PieceSelection::InOrderIdleWeighted => self.pick_in_order_idle_weighted(rng),
            };
            match choice {
                Some((piece, parent)) => self.start(now, piece, Source::Parent(parent), out),
                None if endgame => match self.pick_endgame_duplicate() {
                    Some((piece, parent)) => self.start(now, piece, Source::Parent(parent), out),
                    None => break,
                },
                None => break,
            }
        }
    }

    /// With `strict_stripes`, a parent still downloading serves a child only its stripes:
    /// its upload belongs to its children in its home stripe. Each of those edges needs
    /// about upload / stripes, but each child's flow is also held to a share of that
    /// child's own download, so a host with fewer than `off_stripe_below_uploads` uploads
    /// in progress (the default: 12, its 8 home-stripe children and 4 more) usually has
    /// link to spare, and an off-stripe piece takes only what they leave idle (max-min
    /// sharing gives the newcomer an equal share of a link its other flows cannot fill).
    /// Without this a leaf caught up in some stripes waits while such parents idle:
    /// uneven trees, a parent whose children are ahead, a task's tail.
    /// A range reader (not every piece wanted) keeps to its stripes: borrowing there
    /// delayed lazy starts by 4% (tensorflow-50, p99 4.67 -> 4.86 s), the shares it took
    /// at spare parents being the ones other readers' urgent pieces then missed.
    fn has_upload_to_spare(&self, p: &ParentView) -> bool {
        p.uploads_active < self.cfg.off_stripe_below_uploads && self.wanted.is_full()
    }

    fn parent_has_room(&self, p: &ParentView) -> bool {
        let limit = if p.is_seed { self.cfg.max_in_flight_per_seed_parent } else { self.cfg.max_in_flight_per_parent };
        p.in_flight < limit
    }

    /// Rarest piece first; among the parents holding it, the least busy. Stripes are
    /// honoured; with `strict_stripes` a parent gives only its stripes unless it holds the
    /// whole task, otherwise other pieces are taken when nothing else can be fetched.
    ///
    /// Scan order: urgent pieces (a lazy reader waits on them), then any; within each,
    /// stripes honoured, then not; availability level ascending; parents least busy
    /// first; words from a random offset; bits ascending. The first hit wins. Most calls
    /// find nothing (every parent's pieces are here or in flight), so the (parent, word)
    /// cells that can yield a piece are gathered once and only they are scanned at each
    /// level.
    fn pick_rarest(&mut self, rng: &mut impl Rng) -> Option<(u32, PeerId)> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.order.clear();
        scratch.cells.clear();
        let got = self.pick_rarest_in(rng, &mut scratch.order, &mut scratch.cells);
        self.scratch = scratch;
        got
    }

    fn pick_rarest_in(
        &self,
        rng: &mut impl Rng,
        order: &mut Vec<usize>,
        cells: &mut Vec<Cell>,
    ) -> Option<(u32, PeerId)> {
        order.extend((0..self.parents.len()).filter(|i| self.parent_has_room(&self.parents[*i])));
        if order.is_empty() {
            return None;
        }
        let words = self.needed.words().len();
        // Drawn even when nothing can be picked, so the generator's sequence does not
        // depend on how the scan is done.
        let offset = if words > 0 { rng.random_range(0..words) } else { 0 };
        let needed = self.needed.words();
        let holds_needed = |p: &ParentView| p.has.words().iter().zip(needed).any(|(h, n)| h & n != 0);
        if !order.iter().any(|&pi| holds_needed(&self.parents[pi])) {
            return None;
        }
        order.sort_by(|a, b| {
            let (pa, pb) = (&self.parents[*a], &self.parents[*b]);
            pa.in_flight.cmp(&pb.in_flight).then(pa.cost_ewma_ns.total_cmp(&pb.cost_ewma_ns)).then(a.cmp(b))
        });
        // A stalled range reader's urgent pieces in stripes none of its parents serves:
        // under `strict_stripes` no parent would ever give them, and the reader asked for
        // new parents over and over while its parents held them (issue 23: lazy readers of
        // a 20-layer image with 64 range reads in flight never started; in the daemon a
        // container's read would hang). Once nothing is in flight, any parent holding one
        // gives it; before that the reader keeps to its stripes (`has_upload_to_spare`).
        let stalled_reader = !self.wanted.is_full() && self.in_flight_total == 0;
        let orphans = |wi: usize| -> u64 {
            if !stalled_reader {
                return 0;
            }
            let served = self.parents.iter().fold(0u64, |m, p| m | p.stripes.map_or(u64::MAX, |s| s.word_mask(wi)));
            self.urgent.words()[wi] & !served
        };
        for &pi in order.iter() {
            let p = &self.parents[pi];
            for k in 0..words {
                let wi = (offset + k) % words;
                let any = p.has.words()[wi] & needed[wi];
                if any != 0 {
                    let in_stripes = p.stripes.map_or(any, |s| any & s.word_mask(wi));
                    let any = if self.cfg.strict_stripes && !p.has.is_full() && !self.has_upload_to_spare(p) {
                        in_stripes | (any & orphans(wi))
                    } else {
                        any
                    };
                    cells.push(Cell { peer: p.peer, word: wi, any, in_stripes });
                }
            }
        }
        if cells.is_empty() {
            return None;
        }
        let urgent_pending = !self.urgent.is_empty();
        let urgent = self.urgent.words();
        for only_urgent in [true, false] {
            if only_urgent && !urgent_pending {
                continue;
            }
            for honour_stripes in [true, false] {
                if !honour_stripes && !self.parents.iter().any(|p| p.stripes.is_some()) {
                    break;
                }
                // The lowest level any cell reaches; the first cell (in scan order) there.
                let mut best: Option<(u32, u32, PeerId)> = None;
                for c in cells.iter() {
                    let mut w = if honour_stripes { c.in_stripes } else { c.any };
                    if only_urgent {
                        w &= urgent[c.word];
                    }
                    if w == 0 {
                        continue;
                    }
                    let Some((level, bits)) = self.availability.rarest_in_word(c.word, w) else { continue };
                    if best.is_none_or(|(b, _, _)| level < b) {
                        best = Some((level, c.word as u32 * 64 + bits.trailing_zeros(), c.peer));
                        if level == 1 {
                            break; // none lower
                        }
                    }
                }
                if let Some((_, piece, peer)) = best {
                    return Some((piece, peer));
                }
            }
        }
        None
    }

    /// Dragonfly's dispatcher: parents by cost EWMA (shuffled with probability 0.1), a
    /// random wanted piece from the first parent that has one.
    fn pick_random_from_best(&self, rng: &mut impl Rng) -> Option<(u32, PeerId)> {
        let mut order: Vec<usize> =
            (0..self.parents.len()).filter(|i| self.parent_has_room(&self.parents[*i])).collect();
        if rng.random_bool(0.1) {
            order.shuffle(rng);
        } else {
            order
                .sort_by(|a, b| self.parents[*a].cost_ewma_ns.total_cmp(&self.parents[*b].cost_ewma_ns).then(a.cmp(b)));
        }
        for pi in order {
            let p = &self.parents[pi];
            let candidates: Vec<u32> = p
                .has
                .words()
                .iter()
                .zip(self.needed.words())
                .enumerate()
                .flat_map(|(i, (h, n))| word_bits(i, h & n))
                .collect();
            if !candidates.is_empty() {
                let piece = candidates[rng.random_range(0..candidates.len())];
                return Some((piece, p.peer));
            }
        }
        None
    }

    /// The Rust client's collector and selector: the first needed piece (urgent ones
    /// first) that a parent with room holds, from one of those parents drawn with weight
    /// `idle_upload_weight` of its host's uploads.
    fn pick_in_order_idle_weighted(&self, rng: &mut impl Rng) -> Option<(u32, PeerId)> {
        let open: Vec<&ParentView> = self.parents.iter().filter(|p| self.parent_has_room(p)).collect();
        if open.is_empty() {
            return None;
        }
        let needed = self.needed.words();
        let first_held = |mask: &dyn Fn(usize) -> u64| {
            (0..needed.len()).find_map(|wi| {
                let held = open.iter().fold(0u64, |acc, p| acc | p.has.words().get(wi).copied().unwrap_or(0));
                let w = held & needed[wi] & mask(wi);
                (w != 0).then(|| wi as u32 * 64 + w.trailing_zeros())
            })
        };
        let urgent = self.urgent.words();
        let piece = if self.urgent.is_empty() { None } else { first_held(&|wi| urgent[wi]) }
            .or_else(|| first_held(&|_| u64::MAX))?;
        let holders: Vec<&ParentView> = open.into_iter().filter(|p| p.has.contains(piece)).collect();
        let total: f64 = holders.iter().map(|p| idle_upload_weight(p.uploads_active)).sum();
        let mut draw = rng.random_range(0.0..total);
        for p in &holders {
            draw -= idle_upload_weight(p.uploads_active);
            if draw < 0.0 {
                return Some((piece, p.peer));
            }
        }
        holders.last().map(|p| (piece, p.peer))
    }

    /// Endgame: a missing piece already in flight, from another parent that has it.
    fn pick_endgame_duplicate(&self) -> Option<(u32, PeerId)> {
        for (piece, flights) in &self.in_flight {
            // Two sources already, or the bytes are in and being stored: no duplicate.
            if flights.len() >= 2 || flights.iter().any(|f| f.received) {
                continue;
            }
            for p in &self.parents {
                if self.parent_has_room(p)
                    && p.has.contains(*piece)
                    && !flights.iter().any(|f| f.from == Source::Parent(p.peer))
                {
                    return Some((*piece, p.peer));
                }
            }
        }
        None
    }

    /// Parents that can still give something: they hold a needed piece, or are still
    /// downloading themselves.
    fn useful_parents(&self) -> usize {
        self.parents.iter().filter(|p| !p.has.is_full() || self.needed_from(p)).count()
    }

    fn needed_from(&self, p: &ParentView) -> bool {
        p.has.words().iter().zip(self.needed.words()).any(|(h, n)| h & n != 0)
    }

    fn wants_new_parents(&self) -> bool {
        !self.awaiting_parents
            && self.phase == Phase::P2p
            && !self.needed.is_empty()
            && self.useful_parents() < self.cfg.min_useful_parents
    }

    /// At a stall: parents that have held nothing this download needs, and gained no piece,
    /// for `IDLE_STALLS_TO_BLOCK` stall checks in a row go on the blocked list the next
    /// `Reschedule` carries, so the scheduler places the download elsewhere. Such a parent
    /// is a download that wants only part of the task (a lazy reader's range) and has it:
    /// without this a download that wants everything stayed under it, rescheduled
    /// `max_reschedules` times to the same parents and then asked for the origin (a lazy
    /// rollout of 8 layers sent the registry 3.9 copies). Kraken's symmetric connections
    /// have their own idle rule (`conn_lifecycle`).
    fn block_idle_parents(&mut self) {
        if self.cfg.symmetric_connections {
            return;
        }
        for i in 0..self.parents.len() {
            // A seed fetches the whole task: idle now is not useless for good. (Two children
            // blocking it count it as lost at the scheduler, which then sends peers to the
            // origin: a 1 GiB fan-out of 8 read 2.4 registry copies when the seed's piece
            // map reached its children late.) A seed that fails pieces is still blocked.
            if self.parents[i].is_seed {
                continue;
            }
            let useless = !self.needed_from(&self.parents[i]);
            let p = &mut self.parents[i];
            let count = p.has.count();
            p.idle_stalls = if useless && count == p.has_at_stall { p.idle_stalls + 1 } else { 0 };
            p.has_at_stall = count;
            if p.idle_stalls >= IDLE_STALLS_TO_BLOCK && !self.failed_parents.contains(&p.peer) {
                self.failed_parents.push(p.peer);
            }
        }
    }

    fn maybe_reschedule(&mut self, now: TimeNs, out: &mut Vec<PeerAction>) {
        if self.awaiting_parents || self.needed.is_empty() {
            return;
        }
        let since_last = self.last_reschedule_ns.map_or(TimeNs::MAX, |t| now.saturating_sub(t));
        if since_last < self.cfg.reschedule_backoff_ns {
            return;
        }
        let stalled = self.in_flight.is_empty() && now.saturating_sub(self.last_piece_ns) >= self.cfg.stall_timeout_ns;
        let announce_due =
            self.announce_interval_ns().is_some_and(|i| self.parents.len() < self.cfg.max_parents && since_last >= i);
        if !(self.wants_new_parents() || stalled || announce_due) {
            return;
        }
        if stalled {
            self.block_idle_parents();
        }
        if self.reschedules >= self.cfg.max_reschedules {
            self.awaiting_parents = true;
            self.asked_origin = true;
            self.last_reschedule_ns = Some(now);
            out.push(PeerAction::AskBackToSource);
            return;
        }
        self.reschedules += 1;
        self.last_reschedule_ns = Some(now);
        self.awaiting_parents = true;
        if stalled {
            // Restart the stall clock so one stall asks once.
            self.last_piece_ns = now;
        }
        out.push(PeerAction::Reschedule { blocked: std::mem::take(&mut self.failed_parents) });
    }
}

/// Stall checks (`stall_timeout_ns` apart, 200 ms by default) a parent must be idle and
/// useless for before it is blocked: about a second, so a parent that is itself waiting
/// for its next piece is not dropped from a healthy tree.
const IDLE_STALLS_TO_BLOCK: u32 = 5;

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
