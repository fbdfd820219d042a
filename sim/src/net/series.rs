//! Per-node egress series in integer bytes per time bucket.
//!
//! Between model events a node's total upload rate is constant, so the series integrates
//! that one rate across bucket boundaries instead of touching flows. Bytes are kept as a
//! cumulative curve `credited (exact integers of finished flows) + in-flight (float)`;
//! each closed bucket gets the difference of the floored curve at its two ends, so float
//! error never accumulates into the integers and a finished flow's residue lands in the
//! bucket where it finished.

use super::TimeNs;

#[derive(Clone)]
pub(super) struct EgressSeries {
    bucket_ns: u64,
    closed: Vec<u64>,
    closed_sum_bytes: u64,
    integrated_ns: TimeNs,
    pub rate_bytes_per_ns: f64,
    inflight_bytes: f64,
    credited_bytes: u64,
}

impl EgressSeries {
    /// A series whose bucket containing `now_ns` starts with everything sent so far.
    pub fn new(
        bucket_ns: u64,
        now_ns: TimeNs,
        credited_bytes: u64,
        inflight_bytes: f64,
        rate_bytes_per_ns: f64,
    ) -> Self {
        assert!(bucket_ns > 0, "egress bucket must be > 0 ns");
        EgressSeries {
            bucket_ns,
            closed: vec![0; (now_ns / bucket_ns) as usize],
            closed_sum_bytes: 0,
            integrated_ns: now_ns,
            rate_bytes_per_ns,
            inflight_bytes,
            credited_bytes,
        }
    }

    fn cumulative_bytes(&self) -> u64 {
        self.credited_bytes + self.inflight_bytes.max(0.0).floor() as u64
    }

    /// Integrates the current rate up to `t_ns`, closing every bucket that ends at or before it.
    pub fn advance_to(&mut self, t_ns: TimeNs) {
        debug_assert!(t_ns >= self.integrated_ns);
        loop {
            let end_ns = (self.closed.len() as u64 + 1) * self.bucket_ns;
            if end_ns > t_ns {
                break;
            }
            self.inflight_bytes += self.rate_bytes_per_ns * (end_ns - self.integrated_ns) as f64;
            self.integrated_ns = end_ns;
            let cum = self.cumulative_bytes();
            // A cancel drops the fraction of a byte it delivered, so the curve can dip below
            // what was already handed out; the excess is taken back in `snapshot`.
            self.closed.push(cum.saturating_sub(self.closed_sum_bytes));
            self.closed_sum_bytes = self.closed_sum_bytes.max(cum);
        }
        self.inflight_bytes += self.rate_bytes_per_ns * (t_ns - self.integrated_ns) as f64;
        self.integrated_ns = t_ns;
    }

    /// A flow of this node ended (after `advance_to(now)`): its float progress leaves the
    /// in-flight part and `credited_bytes` (what `bytes_sent` counts) joins the exact part.
    pub fn flow_ended(&mut self, rate_bytes_per_ns: f64, delivered_bytes_f: f64, credited_bytes: u64, node_idle: bool) {
        self.credited_bytes += credited_bytes;
        if node_idle {
            // Nothing in flight: drop accumulated float drift.
            self.inflight_bytes = 0.0;
            self.rate_bytes_per_ns = 0.0;
        } else {
            self.inflight_bytes -= delivered_bytes_f;
            self.rate_bytes_per_ns = (self.rate_bytes_per_ns - rate_bytes_per_ns).max(0.0);
        }
    }

    /// Closed buckets plus the open one; sums to the bytes credited so far plus the whole
    /// bytes in flight (exactly `bytes_sent` when no flow of the node is in flight).
    pub fn snapshot(&self) -> Vec<u64> {
        let mut out = self.closed.clone();
        let target = self.cumulative_bytes();
        if target >= self.closed_sum_bytes {
            out.push(target - self.closed_sum_bytes);
        } else {
            out.push(0);
            let mut excess = self.closed_sum_bytes - target;
            for b in out.iter_mut().rev() {
                let take = excess.min(*b);
                *b -= take;
                excess -= take;
                if excess == 0 {
                    break;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_rate_fills_buckets_and_residue_goes_to_completion_bucket() {
        // 1 byte/ns for 250 ns over 100 ns buckets, flow of 251 bytes (1 byte of residue).
        let mut s = EgressSeries::new(100, 0, 0, 0.0, 1.0);
        s.advance_to(250);
        s.flow_ended(1.0, 250.0, 251, true);
        s.advance_to(420);
        assert_eq!(s.snapshot(), vec![100, 100, 51, 0, 0]);
    }

    #[test]
    fn dip_from_cancel_is_taken_back_from_the_tail() {
        // Two flows at 0.509 byte/ns: bucket 0 closes at 101 bytes (floor of 101.8), then
        // both are cancelled having delivered 50.9 bytes, credited as 50 each.
        let mut s = EgressSeries::new(100, 0, 0, 0.0, 1.018);
        s.advance_to(100);
        assert_eq!(s.snapshot()[0], 101);
        s.flow_ended(0.509, 50.9, 50, false);
        s.flow_ended(0.509, 50.9, 50, true);
        let snap = s.snapshot();
        assert_eq!(snap.iter().sum::<u64>(), 100);
        assert_eq!(snap, vec![100, 0]);
    }
}
