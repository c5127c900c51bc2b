//! Scalar building blocks written so that loops over them vectorise; the
//! kernels compile their loops twice, once for AVX2 + FMA (chosen at run time).

/// `exp(x)` to about 2 ulp, branch-free so that loops over it vectorise
/// (Cephes' polynomial on `x - n ln 2`, scaled by `2^n` built from bits).
#[inline(always)]
pub(crate) fn exp_approx<const FMA: bool>(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer.
    let x = x.clamp(-87.3, 88.3);
    let t = madd::<FMA>(x, std::f32::consts::LOG2_E, MAGIC);
    let n = t - MAGIC;
    let n_int = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = madd::<FMA>(n, 2.121_944_4e-4, madd::<FMA>(n, -0.693_359_4, x));
    let mut p = 1.987_569_1e-4;
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5.0e-1] {
        p = madd::<FMA>(p, r, c);
    }
    let e = madd::<FMA>(p, r * r, r) + 1.0;
    e * f32::from_bits(((n_int + 127) << 23) as u32)
}

/// `a * b + c`, fused where the CPU has FMA.
#[inline(always)]
pub(crate) fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}


#[cfg(test)]
mod tests {
    use super::exp_approx;

    #[test]
    fn exp_approx_is_within_two_ulp() {
        for i in -8700..=880 {
            let x = i as f32 * 0.01;
            let want = x.exp();
            for got in [exp_approx::<false>(x), exp_approx::<true>(x)] {
                assert!(((got - want) / want).abs() < 2.5e-7, "exp({x}) = {want}, approximated {got}");
            }
        }
    }

}
