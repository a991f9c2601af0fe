//! The benchmark cases of BENCHMARKS.md, each measuring hotswap and its baseline side by side
//! in alternating rounds, and adding its section and goals to the report.

pub(crate) mod browser_follows_save;
pub(crate) mod build_variants;
pub(crate) mod change_under_load;
pub(crate) mod crash_recovery;
pub(crate) mod dispatch;
pub(crate) mod memory_and_idle;
pub(crate) mod save_to_served;
pub(crate) mod slow_setup;
pub(crate) mod state_handoff;
pub(crate) mod swap_cost;

use std::path::PathBuf;

use crate::bench_workspace::BenchWorkspace;
use crate::report::{Goal, Section};

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Effort {
    /// Rounds of the save → served case (each round measures every path of every app once).
    pub(crate) save_rounds: usize,
    /// Saves with the default debounce, per app.
    pub(crate) debounce_saves: usize,
    /// Rounds of the big app's saves with rust-analyzer checking alongside.
    pub(crate) rust_analyzer_rounds: usize,
    /// Rounds of builds by profile and linker (each round builds every variant of every app once).
    pub(crate) build_variant_rounds: usize,
    pub(crate) dispatch_rounds: usize,
    pub(crate) dispatch_seconds: u64,
    pub(crate) load_rounds: usize,
    /// Pairs of swaps (hard link, copy) of the ~20 MiB library.
    pub(crate) swap_pairs: usize,
    pub(crate) memory_swaps: usize,
    pub(crate) idle_seconds: u64,
    /// Generations killed, to time crash → serving again.
    pub(crate) crashes: usize,
    /// Swaps with a 100 MiB state (and as many with a small one).
    pub(crate) state_swaps: usize,
}

impl Effort {
    pub(crate) const FULL: Effort = Effort {
        save_rounds: 9,
        debounce_saves: 5,
        rust_analyzer_rounds: 5,
        build_variant_rounds: 5,
        dispatch_rounds: 5,
        dispatch_seconds: 5,
        load_rounds: 3,
        swap_pairs: 40,
        memory_swaps: 1000,
        idle_seconds: 60,
        crashes: 30,
        state_swaps: 10,
    };

    /// A few minutes instead of ~20: to check the command works, not to quote.
    pub(crate) const QUICK: Effort = Effort {
        save_rounds: 2,
        debounce_saves: 2,
        rust_analyzer_rounds: 2,
        build_variant_rounds: 1,
        dispatch_rounds: 1,
        dispatch_seconds: 2,
        load_rounds: 1,
        swap_pairs: 5,
        memory_swaps: 100,
        idle_seconds: 5,
        crashes: 5,
        state_swaps: 2,
    };
}

/// What every case shares.
#[derive(Debug)]
pub(crate) struct BenchContext {
    pub(crate) effort: Effort,
    pub(crate) workspace: BenchWorkspace,
    /// `target/hotswap-bench`: logs, library copies, generations of the engine workers.
    pub(crate) bench_dir: PathBuf,
    pub(crate) hotswap_binary: PathBuf,
    next_edit: u64,
    pub(crate) sections: Vec<Section>,
    pub(crate) goals: Vec<Goal>,
}

impl BenchContext {
    pub(crate) fn new(
        effort: Effort,
        workspace: BenchWorkspace,
        bench_dir: PathBuf,
        hotswap_binary: PathBuf,
    ) -> Self {
        // Edit numbers start from the clock, so that no two runs write the same source text (a
        // build of an old text could otherwise be skipped as unchanged).
        let next_edit = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_secs() % 100_000 * 1000);
        Self {
            effort,
            workspace,
            bench_dir,
            hotswap_binary,
            next_edit,
            sections: Vec::new(),
            goals: Vec::new(),
        }
    }

    /// A number for the next edit, never used before in this run.
    pub(crate) fn next_edit_number(&mut self) -> u64 {
        self.next_edit += 1;
        self.next_edit
    }

    pub(crate) fn log_path(&self, name: &str) -> PathBuf {
        self.bench_dir.join("logs").join(name)
    }
}

/// Progress for the person waiting, on stderr (the report goes to stdout).
pub(crate) fn progress(message: impl std::fmt::Display) {
    eprintln!("hotswap-bench: {message}");
}

/// The order of `items` in round `round`: rotated by one each round, so that no case always
/// runs first (on a warm or a cold cache) or right after the same neighbour.
pub(crate) fn rotated<T: Clone>(items: &[T], round: usize) -> Vec<T> {
    let mut order = items.to_vec();
    if !order.is_empty() {
        let shift = round % order.len();
        order.rotate_left(shift);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_rotate_the_order() {
        assert_eq!(rotated(&[1, 2, 3], 0), vec![1, 2, 3]);
        assert_eq!(rotated(&[1, 2, 3], 1), vec![2, 3, 1]);
        assert_eq!(rotated(&[1, 2, 3], 5), vec![3, 1, 2]);
        assert_eq!(rotated::<u8>(&[], 3), Vec::<u8>::new());
    }
}
