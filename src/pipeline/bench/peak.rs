//! The machine's peak single-precision throughput, measured with a loop of
//! independent fused multiply-adds in the widest vectors the matrix kernels
//! use (`gemm` picks AVX-512 where the CPU has it, else AVX2 + FMA). The
//! side-by-side harness reads every case's GFLOP/s against it, so that a
//! ratio to PyTorch comes with how far either side is from the ceiling.

use std::time::Instant;

/// Multiply-adds each thread runs per accumulator: about 40 ms on a 3 GHz core.
const ROUNDS: u64 = 20_000_000;

/// GFLOP/s of `threads` threads, each running the FMA loop on its own (a
/// multiply-add counts two operations); `None` where the CPU has no FMA.
pub fn fma_peak_gflops(threads: usize) -> Option<f64> {
    let threads = threads.max(1);
    fma_loop(1)?; // warm-up: clocks and the code's first run
    let start = Instant::now();
    let flops: u64 = std::thread::scope(|s| {
        let runs: Vec<_> = (0..threads).map(|_| s.spawn(|| fma_loop(ROUNDS))).collect();
        runs.into_iter().map(|run| run.join().expect("the FMA loop does not panic").unwrap_or(0)).sum()
    });
    Some(flops as f64 / start.elapsed().as_secs_f64() / 1e9)
}

/// Runs the loop for `rounds` and returns the operations it did.
fn fma_loop(rounds: u64) -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked above.
            return Some(unsafe { x86::fma_avx512(rounds) });
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA, checked above.
            return Some(unsafe { x86::fma_avx2(rounds) });
        }
    }
    let _ = rounds;
    None
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::hint::black_box;

    /// Independent accumulators: enough to cover an FMA's latency (4 cycles)
    /// times the two FMA pipes of current x86 cores, with room to spare.
    const CHAINS: usize = 12;

    macro_rules! fma_chains {
        ($set1:ident, $fmadd:ident, $add:ident, $store:ident, $lanes:expr, $rounds:expr) => {{
            let (a, b) = ($set1(black_box(0.999_999)), $set1(black_box(1e-7)));
            let mut acc = [$set1(1.0); CHAINS];
            for _ in 0..$rounds {
                for x in acc.iter_mut() {
                    *x = $fmadd(*x, a, b);
                }
            }
            let mut sum = acc[0];
            for x in &acc[1..] {
                sum = $add(sum, *x);
            }
            let mut out = [0f32; $lanes];
            $store(out.as_mut_ptr(), sum);
            black_box(out);
            $rounds * (CHAINS * $lanes * 2) as u64
        }};
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma_avx512(rounds: u64) -> u64 {
        fma_chains!(_mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_storeu_ps, 16, rounds)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_avx2(rounds: u64) -> u64 {
        fma_chains!(_mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_storeu_ps, 8, rounds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fma_loop_counts_two_operations_per_lane_and_accumulator() {
        let Some(ops) = fma_loop(3) else { return }; // no FMA on this CPU: nothing to count
        let lanes = if cfg!(target_arch = "x86_64") && is_x86_feature_detected!("avx512f") { 16 } else { 8 };
        assert_eq!(ops, 3 * 12 * lanes * 2);
    }
}
