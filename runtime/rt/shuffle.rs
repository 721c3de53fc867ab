//! Seeded scheduling: the generator that permutes each round of ready units when a runtime
//! was built with [`Builder::shuffle_seed`](crate::Builder::shuffle_seed).
//!
//! # State
//!
//! - `SHUFFLE` (thread-local): the generator of the runtime running on this thread, `None`
//!   without a seed (FIFO). Set for the whole of `Builder::run` ([`enter`]) and cleared
//!   when it returns or unwinds, like the thread's current runtime (`state.rs`); there is at
//!   most one runtime per thread, so one slot is enough.
//! - The generator is splitmix64 (Steele, Lea and Flood, 2014): one add, two multiplies and
//!   three shifts per number, a full period of 2^64, every seed as good as any other (0
//!   included). Not cryptographic, and it needs not be: it only has to be a fixed, cheap
//!   function of the seed, so that a seed replays the same permutations.
//!
//! # Invariants
//!
//! - Without a seed a round is never touched: the nursery calls [`permute`] only for a
//!   round of two units or more, and then `permute` reads one thread-local and returns
//!   (the cost of FIFO is that compare and, for bigger rounds, that read).
//! - With a seed, the sequence of permutations is a function of the seed and of the sizes
//!   of the rounds asked for, in order. On the mock clock the sizes are a function of the
//!   program and the permutations before, so a seed replays a run exactly.

#![forbid(unsafe_code)]

use std::cell::Cell;

thread_local! {
    static SHUFFLE: Cell<Option<u64>> = const { Cell::new(None) };
}

/// The next number of the splitmix64 sequence whose state is `state`.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Permutes `round` (the indices of the units about to be polled, in FIFO order) with the
/// current runtime's generator; leaves it alone when the runtime has no seed. Out of
/// line, so that the nursery's poll loop stays as it was without a seed.
#[inline(never)]
pub(crate) fn permute(round: &mut [usize]) {
    let Some(mut state) = SHUFFLE.try_with(Cell::get).ok().flatten() else {
        return;
    };
    // Fisher-Yates, from the back. `% (i + 1)` has a bias of at most 2^-54 for a round
    // of 256 (the poll budget): far below anything a schedule could show.
    for i in (1..round.len()).rev() {
        let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
        round.swap(i, j);
    }
    let _ = SHUFFLE.try_with(|s| s.set(Some(state)));
}

/// Installs the generator for `seed` (`None`: FIFO) until the guard is dropped.
pub(crate) fn enter(seed: Option<u64>) -> ShuffleGuard {
    SHUFFLE.with(|s| s.set(seed));
    ShuffleGuard
}

/// Clears the generator when `run` ends, also by unwinding.
pub(crate) struct ShuffleGuard;

impl Drop for ShuffleGuard {
    fn drop(&mut self) {
        let _ = SHUFFLE.try_with(|s| s.set(None));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_without_a_seed() {
        let _g = enter(None);
        let mut round = [0, 1, 2, 3];
        permute(&mut round);
        assert_eq!(round, [0, 1, 2, 3]);
    }

    #[test]
    fn a_seed_replays_its_permutations() {
        let rounds = |seed| {
            let _g = enter(Some(seed));
            (0..4)
                .map(|_| {
                    let mut round: Vec<usize> = (0..8).collect();
                    permute(&mut round);
                    round
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(rounds(7), rounds(7));
        assert_ne!(rounds(7), rounds(8));
        let mut sorted = rounds(7)[0].clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..8).collect::<Vec<_>>(), "a permutation");
    }

    #[test]
    fn the_guard_restores_fifo() {
        drop(enter(Some(1)));
        let mut round = [0, 1, 2];
        permute(&mut round);
        assert_eq!(round, [0, 1, 2]);
    }
}
