//! Attention `softmax(q k^T * scale) v` that never holds more than a tile of
//! scores: queries go in register blocks, keys in tiles, and each tile updates
//! a running maximum, normaliser and output (online softmax, as in
//! flash-attention), all in f32.
//!
//! Keys and values are first transposed to channel-major rows so that every
//! inner loop runs over keys, eight at a time, which the compiler turns into
//! AVX2 + FMA code (chosen at run time) without hand-written intrinsics.

use super::vector::{exp_approx, madd};
use super::SendPtr;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor, D};
use rayon::prelude::*;

/// Queries computed together; their accumulators live in registers.
const QUERY_BLOCK: usize = 4;
/// Keys per softmax tile: a tile of scores for a query block stays in L1.
const KEY_TILE: usize = 256;
/// Queries per parallel work item.
const QUERIES_PER_ITEM: usize = 64;
const LANES: usize = 8;

/// One head's operands, keys and values transposed to `d` rows of `keys_padded`.
struct Head<'a> {
    q: &'a [f32],
    k_t: &'a [f32],
    v_t: &'a [f32],
    out: *mut f32,
}

/// Sizes shared by all heads.
#[derive(Clone, Copy)]
struct Dims {
    queries: usize,
    keys: usize,
    keys_padded: usize,
    d: usize,
    scale: f32,
}

/// Attends queries `[q0, q1)` of one head.
#[inline(always)]
fn attend<const FMA: bool>(dims: Dims, head: &Head, q0: usize, q1: usize) {
    let Dims { keys, keys_padded, d, scale, .. } = dims;
    // The block's scaled queries channel-major (`d` rows of QUERY_BLOCK), so
    // that each channel's queries are one short row next to that channel's keys.
    let mut q_t = vec![0f32; d * QUERY_BLOCK];
    let mut acc = vec![0f32; QUERY_BLOCK * d];
    let mut scores = [[0f32; KEY_TILE]; QUERY_BLOCK];
    for b0 in (q0..q1).step_by(QUERY_BLOCK) {
        let rows = QUERY_BLOCK.min(q1 - b0);
        // Missing rows of the last block are zero queries whose results are dropped.
        q_t.fill(0.0);
        for (r, src) in head.q[b0 * d..(b0 + rows) * d].chunks_exact(d).enumerate() {
            for (c, &b) in src.iter().enumerate() {
                q_t[c * QUERY_BLOCK + r] = b * scale;
            }
        }
        acc.fill(0.0);
        let mut max = [f32::NEG_INFINITY; QUERY_BLOCK];
        let mut sum = [0f32; QUERY_BLOCK];
        for t0 in (0..keys_padded).step_by(KEY_TILE) {
            let tile = KEY_TILE.min(keys_padded - t0);
            for j in (0..tile).step_by(LANES) {
                let block = block_scores::<FMA>(&q_t, &head.k_t[t0 + j..], keys_padded);
                for (row, s) in scores.iter_mut().zip(block) {
                    row[j..j + LANES].copy_from_slice(&s);
                }
            }
            let valid = tile.min(keys - t0);
            for r in 0..QUERY_BLOCK {
                let row = &mut scores[r][..tile];
                // Padding keys past the end score -inf, so they weigh (next to) nothing.
                row[valid..].fill(f32::NEG_INFINITY);
                let mut lane_max = [f32::NEG_INFINITY; LANES];
                for chunk in row.chunks_exact(LANES) {
                    for l in 0..LANES {
                        lane_max[l] = lane_max[l].max(chunk[l]);
                    }
                }
                let tile_max = lane_max.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let new_max = max[r].max(tile_max);
                let rescale = exp_approx::<FMA>(max[r] - new_max);
                max[r] = new_max;
                let mut lane_sum = [0f32; LANES];
                for chunk in row.chunks_exact_mut(LANES) {
                    for l in 0..LANES {
                        chunk[l] = exp_approx::<FMA>(chunk[l] - new_max);
                        lane_sum[l] += chunk[l];
                    }
                }
                let padded: f32 = row[valid..].iter().sum();
                row[valid..].fill(0.0);
                sum[r] = sum[r] * rescale + (lane_sum.iter().sum::<f32>() - padded);
                for a in &mut acc[r * d..(r + 1) * d] {
                    *a *= rescale;
                }
            }
            // acc[r][c] += sum_j p[r][j] v[j][c], over the tile.
            for c in 0..d {
                let sums = weighted_sums::<FMA>(&scores, &head.v_t[c * keys_padded + t0..][..tile]);
                for (r, s) in sums.into_iter().enumerate() {
                    acc[r * d + c] += s;
                }
            }
        }
        for r in 0..rows {
            let inv = 1.0 / sum[r];
            for c in 0..d {
                // SAFETY: the work item owning queries q0..q1 of this head alone writes these rows.
                unsafe { *head.out.add((b0 + r) * d + c) = acc[r * d + c] * inv };
            }
        }
    }
}

/// The block's scores against eight keys: `s[r][l] = sum_c q_t[c][r] k_t[c][l]`,
/// where row `c` of the keys starts at `k_t[c * stride]`.
#[inline(always)]
fn block_scores<const FMA: bool>(q_t: &[f32], k_t: &[f32], stride: usize) -> [[f32; LANES]; QUERY_BLOCK] {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: FMA is only set in code compiled for AVX2 + FMA (`attend_avx2`).
        return unsafe { x86::block_scores(q_t, k_t, stride) };
    }
    let mut s = [[0f32; LANES]; QUERY_BLOCK];
    for (c, q) in q_t.chunks_exact(QUERY_BLOCK).enumerate() {
        let k = &k_t[c * stride..][..LANES];
        for (row, &qr) in s.iter_mut().zip(q) {
            for l in 0..LANES {
                row[l] = madd::<FMA>(qr, k[l], row[l]);
            }
        }
    }
    s
}

/// `sum_j scores[r][j] v[j]` for every row of the block, over the tile's keys.
#[inline(always)]
fn weighted_sums<const FMA: bool>(scores: &[[f32; KEY_TILE]; QUERY_BLOCK], v: &[f32]) -> [f32; QUERY_BLOCK] {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: as in `block_scores`.
        return unsafe { x86::weighted_sums(scores, v) };
    }
    let mut lane_acc = [[0f32; LANES]; QUERY_BLOCK];
    for (j, vv) in v.chunks_exact(LANES).enumerate() {
        for (la, p) in lane_acc.iter_mut().zip(scores) {
            for l in 0..LANES {
                la[l] = madd::<FMA>(p[j * LANES + l], vv[l], la[l]);
            }
        }
    }
    lane_acc.map(|la| la.iter().sum())
}

/// The two inner products in AVX2: written out, because the compiler
/// vectorised the portable loops across the block's rows (four lanes and
/// shuffles) instead of across keys.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{KEY_TILE, LANES, QUERY_BLOCK};
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn block_scores(q_t: &[f32], k_t: &[f32], stride: usize) -> [[f32; LANES]; QUERY_BLOCK] {
        let mut s = [_mm256_setzero_ps(); QUERY_BLOCK];
        for (c, q) in q_t.chunks_exact(QUERY_BLOCK).enumerate() {
            let k = &k_t[c * stride..][..LANES];
            let kv = _mm256_loadu_ps(k.as_ptr());
            for (acc, qr) in s.iter_mut().zip(q) {
                *acc = _mm256_fmadd_ps(_mm256_broadcast_ss(qr), kv, *acc);
            }
        }
        let mut out = [[0f32; LANES]; QUERY_BLOCK];
        for (row, acc) in out.iter_mut().zip(s) {
            _mm256_storeu_ps(row.as_mut_ptr(), acc);
        }
        out
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weighted_sums(scores: &[[f32; KEY_TILE]; QUERY_BLOCK], v: &[f32]) -> [f32; QUERY_BLOCK] {
        let mut acc = [_mm256_setzero_ps(); QUERY_BLOCK];
        for j in (0..v.len()).step_by(LANES) {
            let vv = _mm256_loadu_ps(v[j..][..LANES].as_ptr());
            for (a, p) in acc.iter_mut().zip(scores) {
                *a = _mm256_fmadd_ps(_mm256_loadu_ps(p[j..][..LANES].as_ptr()), vv, *a);
            }
        }
        let mut sums = [0f32; QUERY_BLOCK];
        for (sum, a) in sums.iter_mut().zip(acc) {
            let half = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
            let pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
            *sum = _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)));
        }
        sums
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(dims: Dims, head: &Head, q0: usize, q1: usize) {
    attend::<true>(dims, head, q0, q1)
}

fn attend_dispatch(dims: Dims, head: &Head, q0: usize, q1: usize) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { attend_avx2(dims, head, q0, q1) };
    }
    attend::<false>(dims, head, q0, q1)
}

/// `(heads, keys, d)` -> `(heads, d, keys_padded)`, zero past `keys`.
fn transpose_padded(x: &[f32], heads: usize, keys: usize, keys_padded: usize, d: usize) -> Vec<f32> {
    let mut t = vec![0f32; heads * d * keys_padded];
    t.par_chunks_mut(d * keys_padded).zip(x.par_chunks(keys * d)).for_each(|(dst, src)| {
        for (j, row) in src.chunks_exact(d).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                dst[c * keys_padded + j] = v;
            }
        }
    });
    t
}

fn forward(q: &[f32], k: &[f32], v: &[f32], heads: usize, dims: Dims) -> Vec<f32> {
    let Dims { queries, keys, keys_padded, d, .. } = dims;
    let k_t = transpose_padded(k, heads, keys, keys_padded, d);
    let v_t = transpose_padded(v, heads, keys, keys_padded, d);
    let mut out = vec![0f32; heads * queries * d];
    let out_ptr = SendPtr(out.as_mut_ptr());
    let chunks = queries.div_ceil(QUERIES_PER_ITEM);
    (0..heads * chunks).into_par_iter().for_each(|item| {
        let (h, q0) = (item / chunks, (item % chunks) * QUERIES_PER_ITEM);
        let head = Head {
            q: &q[h * queries * d..(h + 1) * queries * d],
            k_t: &k_t[h * d * keys_padded..(h + 1) * d * keys_padded],
            v_t: &v_t[h * d * keys_padded..(h + 1) * d * keys_padded],
            // SAFETY: within the output buffer; rows are split between items.
            out: unsafe { out_ptr.get().add(h * queries * d) },
        };
        attend_dispatch(dims, &head, q0, (q0 + QUERIES_PER_ITEM).min(queries));
    });
    out
}

/// The attention op on (q, k, v).
pub(crate) struct AttentionOp {
    pub(crate) scale: f64,
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "fast-attention"
    }

    fn cpu_fwd(
        &self,
        sq: &CpuStorage,
        lq: &Layout,
        sk: &CpuStorage,
        lk: &Layout,
        sv: &CpuStorage,
        lv: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (&[heads, queries, d], &[hk, keys, dk], &[hv, kv, dv]) = (lq.dims(), lk.dims(), lv.dims()) else {
            candle_core::bail!("attention expects 3-d (heads, tokens, channels) q, k and v, got {:?}, {:?} and {:?}", lq.dims(), lk.dims(), lv.dims())
        };
        if (hk, dk) != (heads, d) || (hv, kv, dv) != (heads, keys, d) || keys == 0 || d == 0 {
            candle_core::bail!("attention needs q {:?}, k {:?} and v {:?} with the same heads and channels, and as many values as keys", lq.dims(), lk.dims(), lv.dims())
        }
        let q = super::f32_slice(sq, lq, "attention query")?;
        let k = super::f32_slice(sk, lk, "attention key")?;
        let v = super::f32_slice(sv, lv, "attention value")?;
        let dims = Dims { queries, keys, keys_padded: keys.next_multiple_of(LANES), d, scale: self.scale as f32 };
        Ok((CpuStorage::F32(forward(q, k, v, heads, dims)), Shape::from((heads, queries, d))))
    }

    /// Gradients by recomputing the probabilities: this materialises the score
    /// matrix, as the plain differentiable path would, but only in training.
    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        d_out: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let p = candle_nn::ops::softmax_last_dim(&(q.matmul(&k.t()?)? * self.scale)?)?;
        let dv = p.t()?.matmul(d_out)?;
        let dp = d_out.matmul(&v.t()?)?;
        let row_dot = (d_out * out)?.sum_keepdim(D::Minus1)?;
        let ds = (p * dp.broadcast_sub(&row_dot)?)?;
        let dq = (ds.matmul(k)? * self.scale)?;
        let dk = (ds.t()?.matmul(q)? * self.scale)?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{attention, tests::{assert_close, random}};
    use candle_core::{Var, D};

    #[test]
    fn forward_and_gradients_match_candle() -> candle_core::Result<()> {
        // (heads, queries, keys, channels): odd sizes, tile edges, cross-attention contexts.
        let cases = [(3, 7, 19, 5), (2, 64, 77, 2), (4, 33, 300, 12), (1, 5, 1030, 3), (2, 1, 8, 30), (1, 256, 257, 4)];
        for (i, &(h, nq, nk, d)) in cases.iter().enumerate() {
            let seed = i as u64 * 3;
            let q = Var::from_tensor(&(random(&[h, nq, d], seed)? * 2.0)?)?;
            let k = Var::from_tensor(&(random(&[h, nk, d], seed + 1)? * 2.0)?)?;
            let v = Var::from_tensor(&random(&[h, nk, d], seed + 2)?)?;
            let scale = (d as f64).powf(-0.5);
            let weights = candle_nn::ops::softmax(&(q.matmul(&k.t()?)? * scale)?, D::Minus1)?;
            let reference = weights.matmul(&v)?;
            let ours = attention(&q, &k, &v, scale)?;
            let case = format!("case {:?}", cases[i]);
            assert_close(&ours, &reference, 1e-5, &format!("{case} forward"))?;
            let probe = random(reference.dims(), 77)?;
            let g_ref = (reference * &probe)?.sum_all()?.backward()?;
            let g_ours = (ours * &probe)?.sum_all()?.backward()?;
            for (var, name) in [(&q, "query"), (&k, "key"), (&v, "value")] {
                let (Some(r), Some(o)) = (g_ref.get(var), g_ours.get(var)) else {
                    panic!("{case}: no {name} gradient")
                };
                assert_close(o, r, 1e-4, &format!("{case} {name} gradient"))?;
            }
        }
        Ok(())
    }
}
