//! Rendezvous (highest random weight) hashing: a task always lands on the same member
//! (seed peer or scheduler replica), and removing a member moves only that member's tasks.

/// 64-bit mix (SplitMix64 finaliser): fast, stable across platforms and releases.
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// FNV-1a over bytes: turns a wire id (task id string) into a ring key.
pub fn key_of(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The member with the highest score for `key`; ties go to the lower member id.
pub fn pick<T: Copy + Ord>(key: u64, members: impl IntoIterator<Item = (T, u64)>) -> Option<T> {
    members
        .into_iter()
        .map(|(member, member_key)| (mix64(key ^ mix64(member_key)), member))
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(_, m)| m)
}

/// The `n` members with the highest scores for `key`, best first (`pick` is the first).
pub fn pick_n<T: Copy + Ord>(key: u64, members: impl IntoIterator<Item = (T, u64)>, n: usize) -> Vec<T> {
    let mut scored: Vec<(u64, T)> =
        members.into_iter().map(|(member, member_key)| (mix64(key ^ mix64(member_key)), member)).collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(n).map(|(_, m)| m).collect()
}

/// The scheduler replica in charge of a task, out of `replicas` (numbered 0..replicas, as
/// the peers list them): rendezvous over the replica numbers, so every peer of a task meets
/// at one replica and a replica list that loses one member moves only that member's tasks.
/// The daemon and the simulator both route with this. None when there is no replica.
pub fn replica_for(task_key: u64, replicas: usize) -> Option<usize> {
    pick(task_key, (0..replicas).map(|r| (r, r as u64)))
}

/// Failover: the replica in charge of a task among those that answer (`up[r]`), by the
/// same rendezvous as `replica_for`. A task of a replica that stops answering goes to its
/// second choice, and only those tasks move; when it answers again they come back. With
/// none answering, the task's first choice over all (something must be tried). The daemon
/// routes with this, and the simulator's replica failure follows it.
pub fn replica_among(task_key: u64, up: &[bool]) -> Option<usize> {
    let live = (0..up.len()).filter(|r| up[*r]).map(|r| (r, r as u64));
    pick(task_key, live).or_else(|| replica_for(task_key, up.len()))
}

#[cfg(test)]
mod tests {

    #[test]
    fn failover_moves_only_the_tasks_of_the_replica_that_stopped_answering() {
        let mut moved = [0usize; 3];
        for key in 0..3000u64 {
            let key = mix64(key);
            let home = replica_for(key, 3).unwrap();
            assert_eq!(replica_among(key, &[true; 3]), Some(home));
            for down in 0..3 {
                let mut up = [true; 3];
                up[down] = false;
                let now = replica_among(key, &up).unwrap();
                if home == down {
                    // Its second choice on the full ring.
                    assert_eq!(now, pick_n(key, (0..3usize).map(|r| (r, r as u64)), 2)[1]);
                    moved[now] += 1;
                } else {
                    assert_eq!(now, home, "a task of a live replica moved");
                }
            }
            assert_eq!(replica_among(key, &[false; 3]), Some(home), "none up: the first choice");
        }
        // The failed replica's tasks spread over the others, not onto one.
        assert!(moved.iter().all(|m| *m > 600), "{moved:?}");
        assert_eq!(replica_among(1, &[]), None);
    }

    #[test]
    fn pick_n_lists_the_ring_best_first_and_starts_with_pick() {
        for key in 0..200u64 {
            let members = (0..5u32).map(|m| (m, u64::from(m)));
            let ring = pick_n(key, members.clone(), 5);
            assert_eq!(ring.len(), 5);
            assert_eq!(Some(ring[0]), pick(key, members.clone()));
            assert_eq!(pick_n(key, members, 2), ring[..2].to_vec());
        }
    }

    use super::*;

    #[test]
    fn replica_routing_is_rendezvous_over_replica_numbers() {
        assert_eq!(replica_for(7, 0), None);
        assert_eq!(replica_for(7, 1), Some(0));
        let mut counts = [0u32; 3];
        for key in 0..3000u64 {
            let r = replica_for(mix64(key), 3).unwrap();
            counts[r] += 1;
            // Dropping the last replica moves only its tasks.
            if r != 2 {
                assert_eq!(replica_for(mix64(key), 2), Some(r));
            }
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "uneven spread {counts:?}");
    }

    #[test]
    fn same_key_same_member_and_spread() {
        let members: Vec<(u32, u64)> = (0..3).map(|m| (m, u64::from(m))).collect();
        let mut counts = [0u32; 3];
        for key in 0..3000u64 {
            let a = pick(key, members.clone()).unwrap();
            assert_eq!(Some(a), pick(key, members.clone()));
            counts[a as usize] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "uneven spread {counts:?}");
        }
    }

    #[test]
    fn removing_a_member_moves_only_its_keys() {
        let all: Vec<(u32, u64)> = (0..4).map(|m| (m, u64::from(m))).collect();
        let without_2: Vec<(u32, u64)> = all.iter().copied().filter(|m| m.0 != 2).collect();
        for key in 0..2000u64 {
            let before = pick(key, all.clone()).unwrap();
            let after = pick(key, without_2.clone()).unwrap();
            if before != 2 {
                assert_eq!(before, after);
            }
        }
    }
}
